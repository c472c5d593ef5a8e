/**
 * A tiny in-memory CheckpointedState for tests (until @bfs/page-store's PageStore lands):
 * copy-on-write by page (writes replace page buffers, checkpoints share them), digest = SHA-256
 * over every non-zero page. Not incremental; fine for test-sized states.
 */
import { createHash } from 'node:crypto';
import type { CheckpointInfo, CheckpointedState } from '@bfs/page-store';

export class MemState implements CheckpointedState {
  private pages = new Map<number, Buffer>();
  private dirty = new Set<number>();
  private readonly kept = new Map<number, { pages: Map<number, Buffer>; digest: Buffer }>();

  constructor(
    readonly size: number,
    readonly pageSize = 4096,
  ) {}

  read(offset: number, length: number): Uint8Array {
    return this.readFrom(this.pages, offset, length);
  }

  private readFrom(pages: Map<number, Buffer>, offset: number, length: number): Uint8Array {
    this.check(offset, length);
    const out = Buffer.alloc(length);
    for (let done = 0; done < length;) {
      const at = offset + done;
      const p = Math.floor(at / this.pageSize);
      const off = at % this.pageSize;
      const k = Math.min(length - done, this.pageSize - off);
      const page = pages.get(p);
      if (page) page.copy(out, done, off, off + k);
      done += k;
    }
    return out;
  }

  write(offset: number, data: Uint8Array): void {
    this.check(offset, data.length);
    for (let done = 0; done < data.length;) {
      const at = offset + done;
      const p = Math.floor(at / this.pageSize);
      const off = at % this.pageSize;
      const k = Math.min(data.length - done, this.pageSize - off);
      const page = Buffer.alloc(this.pageSize);
      this.pages.get(p)?.copy(page);
      page.set(data.subarray(done, done + k), off);
      this.pages.set(p, page);
      this.dirty.add(p);
      done += k;
    }
  }

  modify(offset: number, length: number): void {
    this.check(offset, length);
    for (let p = Math.floor(offset / this.pageSize); p * this.pageSize < offset + length; p++)
      this.dirty.add(p);
  }

  checkpoint(seq: number): CheckpointInfo {
    const last = Math.max(-1, ...this.kept.keys());
    if (seq <= last) throw new RangeError(`checkpoint ${seq} not above ${last}`);
    const h = createHash('sha256');
    for (const p of [...this.pages.keys()].sort((a, b) => a - b)) {
      h.update(Buffer.from(String(p)));
      h.update(this.pages.get(p)!);
    }
    const digest = h.digest();
    this.kept.set(seq, { pages: new Map(this.pages), digest });
    const dirtyPages = this.dirty.size;
    this.dirty = new Set();
    return { seq, digest, dirtyPages };
  }

  checkpoints(): number[] {
    return [...this.kept.keys()].sort((a, b) => a - b);
  }

  digestAt(seq: number): Uint8Array | undefined {
    return this.kept.get(seq)?.digest;
  }

  readAt(seq: number, offset: number, length: number): Uint8Array {
    const k = this.kept.get(seq);
    if (!k) throw new RangeError(`checkpoint ${seq} not kept`);
    return this.readFrom(k.pages, offset, length);
  }

  rollback(seq: number): void {
    const k = this.kept.get(seq);
    if (!k) throw new RangeError(`checkpoint ${seq} not kept`);
    this.pages = new Map(k.pages);
    for (const s of this.kept.keys()) if (s > seq) this.kept.delete(s);
  }

  discardBelow(seq: number): void {
    for (const s of this.kept.keys()) if (s < seq) this.kept.delete(s);
  }

  private check(offset: number, length: number): void {
    if (offset < 0 || length < 0 || offset + length > this.size)
      throw new RangeError('out of range');
  }
}
