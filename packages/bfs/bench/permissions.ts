/**
 * What the permission checks cost a replica: the NFSv3 procedure layer over the BFS file system
 * (the code every replica runs for every call), with `checkPermissions` off and on, in
 * interleaved rounds, as a non-root caller that owns nothing (the checks' longest path: group
 * and other classes). Prints the median time per call of each case.
 * Run: npm run bench:permissions -w @bfs/bfs  (PERM_BENCH_ROUNDS, PERM_BENCH_CALLS to resize).
 */
import { PageStore } from '@bfs/page-store';
import {
  NFS_PROGRAM,
  Nfs3Proc,
  type NfsCallContext,
  XdrWriter,
  executeNfsCall,
  writeSattr3,
} from 'nfs-server-ts';
import { BfsFileSystem, mkfs } from '../src';

const ROUNDS = Number(process.env.PERM_BENCH_ROUNDS ?? 7);
const CALLS = Number(process.env.PERM_BENCH_CALLS ?? 20000);

const state = new PageStore({ size: 2 ** 28 });
mkfs(state, {});
const fs = new BfsFileSystem(state);
const owner = { cred: { uid: 1000, gid: 1000, gids: [] }, time: { seconds: 1, nseconds: 0 } };
const dir = fs.mkdir(fs.root(), 'd', { mode: 0o777 }, owner);
const file = fs.create(dir, 'f', { mode: 'guarded', attributes: { mode: 0o666 } }, owner);
fs.write(file, 0, new Uint8Array(4096).fill(1), 'file_sync', owner);

const args = (f: (w: XdrWriter) => void) => {
  const w = new XdrWriter();
  f(w);
  return w.bytes();
};
const data = new Uint8Array(4096).fill(2);
const CASES: [string, number, Uint8Array][] = [
  ['GETATTR (no check: control)', Nfs3Proc.GETATTR, args((w) => w.opaque(file))],
  ['LOOKUP', Nfs3Proc.LOOKUP, args((w) => w.opaque(dir).string('f'))],
  ['ACCESS', Nfs3Proc.ACCESS, args((w) => w.opaque(file).u32(0x3f))],
  ['READ 4 KiB', Nfs3Proc.READ, args((w) => w.opaque(file).u64(0).u32(4096))],
  ['WRITE 4 KiB', Nfs3Proc.WRITE, args((w) => w.opaque(file).u64(0).u32(4096).u32(2).opaque(data))],
  [
    'SETATTR (server mtime)',
    Nfs3Proc.SETATTR,
    args((w) => {
      w.opaque(file);
      writeSattr3(w, { mtime: 'server' });
      w.bool(false);
    }),
  ],
];

function perCallNs(proc: number, a: Uint8Array, check: boolean): number {
  const ctx: NfsCallContext = {
    cred: { uid: 2000, gid: 2000, gids: [3000, 3001, 3002, 3003] },
    time: { seconds: 2, nseconds: 0 },
    checkPermissions: check,
  };
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < CALLS; i++) executeNfsCall(fs, NFS_PROGRAM, 3, proc, a, ctx);
  return Number(process.hrtime.bigint() - t0) / CALLS;
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

console.log(`permission checks: ${ROUNDS} interleaved rounds of ${CALLS} calls, median ns/call`);
console.log(`${'call'.padEnd(30)} ${'off'.padStart(8)} ${'on'.padStart(8)}  difference`);
for (const [label, proc, a] of CASES) {
  perCallNs(proc, a, true); // warm the JIT for both paths
  perCallNs(proc, a, false);
  const off: number[] = [];
  const on: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    off.push(perCallNs(proc, a, false));
    on.push(perCallNs(proc, a, true));
  }
  const [m0, m1] = [median(off), median(on)];
  const diff = `${m1 - m0 >= 0 ? '+' : ''}${(m1 - m0).toFixed(0)} ns (${((100 * (m1 - m0)) / m0).toFixed(1)}%)`;
  console.log(
    `${label.padEnd(30)} ${m0.toFixed(0).padStart(8)} ${m1.toFixed(0).padStart(8)}  ${diff}`,
  );
}
