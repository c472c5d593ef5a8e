/**
 * Throughput of the BFS file system over the in-memory page store, single-threaded, no NFS or
 * replication on top: creates, lookups, readdir, sequential 64 KiB writes and reads, removes.
 * Prints one line per figure. Run: npm run bench -w @bfs/bfs  (BFS_BENCH_FILES to resize).
 */
import { PageStore } from '@bfs/page-store';
import type { CallContext } from 'nfs-server-ts';
import { BfsFileSystem, fsck, mkfs } from '../src';

const FILES = Number(process.env.BFS_BENCH_FILES ?? 20000);
const WRITE_MB = 64;
const CHUNK = 64 * 1024;

function ctx(i: number): CallContext {
  return {
    cred: { uid: 1000, gid: 1000, gids: [] },
    time: { seconds: 1_700_000_000 + i, nseconds: 0 },
  };
}

function measure(label: string, ops: number, unit: string, fn: () => void): void {
  const t0 = process.hrtime.bigint();
  fn();
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(
    `${label.padEnd(34)} ${(ops / s).toFixed(0).padStart(10)} ${unit}/s  (${s.toFixed(3)} s)`,
  );
}

const state = new PageStore({ size: 2 ** 30 });
mkfs(state, { inodes: FILES + 1024 });
const fs = new BfsFileSystem(state);
const dir = fs.mkdir(fs.root(), 'bench', {}, ctx(0));
const handles: Uint8Array[] = [];

console.log(
  `bfs file system bench: ${FILES} files in one directory, ${WRITE_MB} MiB sequential I/O`,
);
measure('create', FILES, 'ops', () => {
  for (let i = 0; i < FILES; i++)
    handles.push(fs.create(dir, `f${i}`, { mode: 'guarded', attributes: {} }, ctx(i)));
});
measure('lookup', FILES, 'ops', () => {
  for (let i = 0; i < FILES; i++) fs.lookup(dir, `f${(i * 7919) % FILES}`);
});
measure('getattr', FILES, 'ops', () => {
  for (const h of handles) fs.getattr(h);
});
measure('readdir (batches of 512 entries)', FILES, 'entries', () => {
  let cookie = 0;
  for (;;) {
    const r = fs.readdir(dir, cookie, new Uint8Array(8), 512);
    if (r.eof) break;
    cookie = r.entries[r.entries.length - 1].cookie;
  }
});
const big = fs.create(fs.root(), 'big', { mode: 'guarded', attributes: {} }, ctx(0));
const chunk = new Uint8Array(CHUNK).fill(0x5a);
const chunks = (WRITE_MB * 2 ** 20) / CHUNK;
measure('write 64 KiB', (chunks * CHUNK) / 2 ** 20, 'MiB', () => {
  for (let i = 0; i < chunks; i++) fs.write(big, i * CHUNK, chunk, 'unstable', ctx(i));
});
measure('read 64 KiB', (chunks * CHUNK) / 2 ** 20, 'MiB', () => {
  for (let i = 0; i < chunks; i++) fs.read(big, i * CHUNK, CHUNK);
});
measure('checkpoint (page-store digest)', 1, 'ops', () => state.checkpoint(1));
measure('fsck', 1, 'ops', () => {
  const r = fsck(state);
  if (r.errors.length) throw new Error(r.errors.join('\n'));
});
measure('remove', FILES, 'ops', () => {
  for (let i = 0; i < FILES; i++) fs.remove(dir, `f${i}`, ctx(i));
});
