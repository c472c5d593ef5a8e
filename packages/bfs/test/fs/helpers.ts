import { strict as assert } from 'node:assert';
import { PageStore } from '@bfs/page-store';
import { NfsError, NfsStatus, type CallContext, type NfsTime } from 'nfs-server-ts';
import { BfsFileSystem, fsck, mkfs, type MkfsOptions } from '../../src';

export const MiB = 2 ** 20;
export const GiB = 2 ** 30;

export function makeFs(
  size = 64 * MiB,
  opts: MkfsOptions = {},
): { fs: BfsFileSystem; state: PageStore } {
  const state = new PageStore({ size });
  mkfs(state, opts);
  return { fs: new BfsFileSystem(state), state };
}

export function ctx(seconds = 1000, nseconds = 0, uid = 1000, gid = 100): CallContext {
  return { cred: { uid, gid, gids: [gid] }, time: { seconds, nseconds } };
}

export function time(seconds: number, nseconds = 0): NfsTime {
  return { seconds, nseconds };
}

/** Asserts that `fn` throws NfsError with `status`. */
export function throwsNfs(fn: () => unknown, status: NfsStatus): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof NfsError, `expected NfsError, got ${String(e)}`);
    assert.equal(NfsStatus[e.status], NfsStatus[status]);
    return true;
  });
}

export function assertClean(state: PageStore): void {
  const r = fsck(state);
  assert.deepEqual(r.errors, []);
}

export function bytes(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'utf8'));
}
