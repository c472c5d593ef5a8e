/**
 * What binding handles to exports costs a replica: the NFSv3 procedure layer over the BFS file
 * system as the replicas run it (through ExportedFileSystem: a MAC checked per handle in, one
 * made per handle out) against the bare file system, in interleaved rounds, permission checks on
 * in both. Prints the median time per call of each case.
 * Run: npm run bench:exports -w @bfs/bfs  (EXPORT_BENCH_ROUNDS, EXPORT_BENCH_CALLS to resize).
 */
import { PageStore } from '@bfs/page-store';
import {
  ExportedFileSystem,
  type FileHandle,
  type FileSystem,
  NFS_PROGRAM,
  Nfs3Proc,
  type NfsCallContext,
  XdrWriter,
  executeNfsCall,
} from 'nfs-server-ts';
import { BfsFileSystem, mkfs } from '../src';

const ROUNDS = Number(process.env.EXPORT_BENCH_ROUNDS ?? 7);
const CALLS = Number(process.env.EXPORT_BENCH_CALLS ?? 10000);

const state = new PageStore({ size: 2 ** 28 });
mkfs(state, {});
const bare = new BfsFileSystem(state);
const exported = new ExportedFileSystem(
  bare,
  [
    { path: '/', readOnly: false },
    { path: '/pub', readOnly: true },
  ],
  new Uint8Array(32).fill(1),
);
const owner = { cred: { uid: 1000, gid: 1000, gids: [] }, time: { seconds: 1, nseconds: 0 } };
const dir = bare.mkdir(bare.root(), 'd', { mode: 0o777 }, owner);
const file = bare.create(dir, 'f', { mode: 'guarded', attributes: { mode: 0o666 } }, owner);
for (let i = 0; i < 100; i++)
  bare.create(dir, `e${i}`, { mode: 'guarded', attributes: { mode: 0o644 } }, owner);
bare.write(file, 0, new Uint8Array(4096).fill(1), 'file_sync', owner);
const wrap = (fh: FileHandle) => exported.wrap(fh, 0);

const data = new Uint8Array(4096).fill(2);
type Args = (fh: (h: FileHandle) => FileHandle) => Uint8Array;
const args =
  (f: (w: XdrWriter, fh: (h: FileHandle) => FileHandle) => void): Args =>
  (fh) => {
    const w = new XdrWriter();
    f(w, fh);
    return w.bytes();
  };
const CASES: [string, number, Args][] = [
  ['GETATTR', Nfs3Proc.GETATTR, args((w, h) => w.opaque(h(file)))],
  ['LOOKUP', Nfs3Proc.LOOKUP, args((w, h) => w.opaque(h(dir)).string('f'))],
  ['READ 4 KiB', Nfs3Proc.READ, args((w, h) => w.opaque(h(file)).u64(0).u32(4096))],
  [
    'WRITE 4 KiB',
    Nfs3Proc.WRITE,
    args((w, h) => w.opaque(h(file)).u64(0).u32(4096).u32(2).opaque(data)),
  ],
  [
    'READDIRPLUS 100 entries',
    Nfs3Proc.READDIRPLUS,
    args((w, h) => w.opaque(h(dir)).u64(0).fixed(new Uint8Array(8)).u32(65536).u32(65536)),
  ],
];

function perCallNs(fs: FileSystem, proc: number, a: Uint8Array): number {
  const ctx: NfsCallContext = {
    cred: { uid: 2000, gid: 2000, gids: [3000] },
    time: { seconds: 2, nseconds: 0 },
    checkPermissions: true,
  };
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < CALLS; i++) executeNfsCall(fs, NFS_PROGRAM, 3, proc, a, ctx);
  return Number(process.hrtime.bigint() - t0) / CALLS;
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

console.log(`export binding: ${ROUNDS} interleaved rounds of ${CALLS} calls, median ns/call`);
console.log(`${'call'.padEnd(26)} ${'bare'.padStart(8)} ${'exported'.padStart(9)}  difference`);
for (const [label, proc, make] of CASES) {
  const plain = make((h) => h);
  const bound = make(wrap);
  perCallNs(bare, proc, plain); // warm the JIT for both paths
  perCallNs(exported, proc, bound);
  const off: number[] = [];
  const on: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    off.push(perCallNs(bare, proc, plain));
    on.push(perCallNs(exported, proc, bound));
  }
  const [m0, m1] = [median(off), median(on)];
  const diff = `${m1 - m0 >= 0 ? '+' : ''}${(m1 - m0).toFixed(0)} ns (${((100 * (m1 - m0)) / m0).toFixed(1)}%)`;
  console.log(
    `${label.padEnd(26)} ${m0.toFixed(0).padStart(8)} ${m1.toFixed(0).padStart(9)}  ${diff}`,
  );
}
