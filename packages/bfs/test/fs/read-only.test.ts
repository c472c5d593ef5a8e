import { strict as assert } from 'node:assert';
import type { PagedState } from '@bfs/page-store';
import { BfsFileSystem } from '../../src';
import { bytes, ctx, makeFs } from './helpers';

/** Passes reads through and counts every write or modify. */
class WriteCounter implements PagedState {
  writes = 0;
  constructor(private readonly inner: PagedState) {}
  get pageSize(): number {
    return this.inner.pageSize;
  }
  get size(): number {
    return this.inner.size;
  }
  read(offset: number, length: number): Uint8Array {
    return this.inner.read(offset, length);
  }
  write(offset: number, data: Uint8Array): void {
    this.writes++;
    this.inner.write(offset, data);
  }
  modify(offset: number, length: number): void {
    this.writes++;
    this.inner.modify(offset, length);
  }
}

describe('bfs file system: read-only calls', () => {
  it('GETATTR, LOOKUP, READ, READLINK, READDIR, FSSTAT and COMMIT never write a page', () => {
    const { fs: setup, state } = makeFs();
    const d = setup.mkdir(setup.root(), 'd', {}, ctx());
    const f = setup.create(d, 'f', { mode: 'guarded', attributes: {} }, ctx());
    setup.write(f, 0, bytes('data'), 'file_sync', ctx());
    const l = setup.symlink(d, 'l', 'f', {}, ctx());
    const counter = new WriteCounter(state);
    const fs = new BfsFileSystem(counter);
    fs.getattr(f);
    fs.lookup(d, 'f');
    fs.lookup(d, '..');
    assert.throws(() => fs.lookup(d, 'missing'));
    fs.read(f, 0, 100);
    fs.read(f, 1000, 100);
    fs.readlink(l);
    fs.readdir(d, 0, new Uint8Array(8), 100);
    fs.fsstat(f);
    fs.commit(f, 0, 0);
    fs.root();
    fs.limits();
    fs.writeVerifier();
    assert.equal(counter.writes, 0);
  });
});
