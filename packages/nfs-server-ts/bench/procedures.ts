/**
 * What the procedure layer costs per call: a mix of NFSv3 and NFSv2 calls through
 * `executeNfsCall` over the memory backend (decode, checks, backend, attributes, encode), with
 * permission checks on as BFS replicas run them. Prints the median ns per call of each case over
 * interleaved rounds; asserts nothing about speed.
 * Run: npm run bench:procedures -w nfs-server-ts  (PROC_BENCH_ROUNDS, PROC_BENCH_CALLS to resize).
 */
import { MemoryFileSystem } from '../src/memfs';
import { encodeV2Handle } from '../src/nfs2';
import { Nfs2Proc } from '../src/nfs2';
import { Nfs3Proc, type NfsCallContext } from '../src/nfs3';
import { writeSattr3 } from '../src/nfs3-xdr';
import { executeNfsCall } from '../src/procedures';
import { NFS_PROGRAM } from '../src/programs';
import { XdrWriter } from '../src/xdr';

/** Rounds per case; each case's figure is the median of its rounds. */
const ROUNDS = Number(process.env.PROC_BENCH_ROUNDS ?? 7);
/** Calls per round. */
const CALLS = Number(process.env.PROC_BENCH_CALLS ?? 20000);
/** Entries in the directory READDIR and READDIRPLUS list. */
const DIR_ENTRIES = 20;

const fs = new MemoryFileSystem();
const ctx: NfsCallContext = {
  cred: { uid: 1000, gid: 1000, gids: [] },
  time: { seconds: 1, nseconds: 0 },
  checkPermissions: true,
};
const dir = fs.mkdir(fs.root(), 'd', { mode: 0o755 }, ctx);
const file = fs.create(dir, 'f', { mode: 'guarded', attributes: { mode: 0o644 } }, ctx);
fs.write(file, 0, new Uint8Array(64 * 1024).fill(1), 'file_sync', ctx);
for (let i = 0; i < DIR_ENTRIES; i++) {
  fs.create(dir, `e${i}`, { mode: 'guarded', attributes: {} }, ctx);
}
const stale = Uint8Array.from(file).fill(0xee, file.length - 4);

const args = (f: (w: XdrWriter) => void) => {
  const w = new XdrWriter();
  f(w);
  return w.bytes();
};
const data = new Uint8Array(4096).fill(2);
type Call = [version: number, procedure: number, args: Uint8Array];
const v3 = (proc: number, f: (w: XdrWriter) => void): Call => [3, proc, args(f)];
const v2 = (proc: number, f: (w: XdrWriter) => void): Call => [2, proc, args(f)];

const CASES: [string, Call[]][] = [
  ['v3 NULL', [v3(Nfs3Proc.NULL, () => {})]],
  ['v3 GETATTR', [v3(Nfs3Proc.GETATTR, (w) => w.opaque(file))]],
  ['v3 GETATTR of a stale handle', [v3(Nfs3Proc.GETATTR, (w) => w.opaque(stale))]],
  ['v3 LOOKUP', [v3(Nfs3Proc.LOOKUP, (w) => w.opaque(dir).string('f'))]],
  ['v3 LOOKUP of a missing name', [v3(Nfs3Proc.LOOKUP, (w) => w.opaque(dir).string('nope'))]],
  ['v3 ACCESS', [v3(Nfs3Proc.ACCESS, (w) => w.opaque(file).u32(0x3f))]],
  ['v3 READ 4 KiB', [v3(Nfs3Proc.READ, (w) => w.opaque(file).u64(0).u32(4096))]],
  [
    'v3 WRITE 4 KiB',
    [v3(Nfs3Proc.WRITE, (w) => w.opaque(file).u64(0).u32(4096).u32(0).opaque(data))],
  ],
  [
    'v3 SETATTR (server mtime)',
    [
      v3(Nfs3Proc.SETATTR, (w) => {
        w.opaque(file);
        writeSattr3(w, { mtime: 'server' });
        w.bool(false);
      }),
    ],
  ],
  [
    'v3 CREATE + REMOVE',
    [
      v3(Nfs3Proc.CREATE, (w) => {
        w.opaque(dir).string('n').u32(1);
        writeSattr3(w, { mode: 0o644 });
      }),
      v3(Nfs3Proc.REMOVE, (w) => w.opaque(dir).string('n')),
    ],
  ],
  [
    `v3 READDIRPLUS of ${DIR_ENTRIES + 1}`,
    [
      v3(Nfs3Proc.READDIRPLUS, (w) =>
        w.opaque(dir).u64(0).fixed(new Uint8Array(8)).u32(8192).u32(32768),
      ),
    ],
  ],
  ['v3 FSINFO', [v3(Nfs3Proc.FSINFO, (w) => w.opaque(file))]],
  ['v2 GETATTR', [v2(Nfs2Proc.GETATTR, (w) => w.fixed(encodeV2Handle(file)))]],
  ['v2 LOOKUP', [v2(Nfs2Proc.LOOKUP, (w) => w.fixed(encodeV2Handle(dir)).string('f'))]],
  [
    'v2 READ 4 KiB',
    [v2(Nfs2Proc.READ, (w) => w.fixed(encodeV2Handle(file)).u32(0).u32(4096).u32(0))],
  ],
];

function perCallNs(calls: Call[]): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < CALLS; i++) {
    for (const [version, proc, a] of calls) executeNfsCall(fs, NFS_PROGRAM, version, proc, a, ctx);
  }
  return Number(process.hrtime.bigint() - t0) / CALLS;
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

console.log(`procedure layer: ${ROUNDS} interleaved rounds of ${CALLS} calls, median ns/call`);
for (const [, calls] of CASES) perCallNs(calls); // warm the JIT for every case first
const rounds = CASES.map((): number[] => []);
for (let r = 0; r < ROUNDS; r++) CASES.forEach(([, calls], k) => rounds[k].push(perCallNs(calls)));
CASES.forEach(([label], k) => console.log(`${label.padEnd(34)} ${median(rounds[k]).toFixed(0)}`));
