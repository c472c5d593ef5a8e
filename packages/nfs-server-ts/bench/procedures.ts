/**
 * What the procedure layer costs per call: a mix of NFSv3 and NFSv2 calls through
 * `executeNfsCall` over the memory backend (decode, checks, backend, attributes, encode), with
 * permission checks on as BFS replicas run them. Prints the median ns per call of each case over
 * interleaved rounds, the bytes each call leaves for the collector, and the process's peak
 * memory; asserts nothing about speed.
 *
 * With PROC_BENCH_BASELINE set to another checkout's packages/nfs-server-ts/src, both builds run
 * in this one process, case by case and round by round in alternating order, so load on the host
 * falls on both alike; each case then shows both builds and the median of the per-round ratios.
 * The build loaded second runs faster (an A/A run of two copies of one tree: 0.8-0.95), so run
 * it both ways, each checkout's bench with the other as baseline, and take the geometric mean.
 * The peak memory of a paired run is of both builds together: compare peaks by running each
 * checkout's bench on its own.
 *
 * Run: npm run bench:procedures -w nfs-server-ts  (PROC_BENCH_ROUNDS, PROC_BENCH_CALLS to resize;
 * PROC_BENCH_ONLY=text keeps the cases whose label contains it).
 */
import * as path from 'node:path';
import { getHeapStatistics } from 'node:v8';
import type { FileSystem } from '../src/filesystem';
import { Nfs2Proc } from '../src/nfs2';
import { Nfs3Proc, type NfsCallContext } from '../src/nfs3';
import { writeSattr3 } from '../src/nfs3-xdr';
import { NFS_PROGRAM } from '../src/programs';
import { XdrWriter } from '../src/xdr';

/** Rounds per case; each case's figure is the median of its rounds. */
const ROUNDS = Number(process.env.PROC_BENCH_ROUNDS ?? 7);
/** Calls per round. */
const CALLS = Number(process.env.PROC_BENCH_CALLS ?? 20000);
/** Calls per allocation probe: few enough that a scavenge seldom falls inside one. */
const PROBE_CALLS = 50;
/** Probes per case; the median drops the few that a scavenge or a recompilation disturbed. */
const PROBES = 25;
/** Entries in the directory READDIR and READDIRPLUS list. */
const DIR_ENTRIES = 20;

/** The parts of one build of the sources that the bench drives. */
interface Build {
  executeNfsCall: typeof import('../src/procedures').executeNfsCall;
  MemoryFileSystem: typeof import('../src/memfs').MemoryFileSystem;
  encodeV2Handle: typeof import('../src/nfs2').encodeV2Handle;
}

function load(src: string): Build {
  const { executeNfsCall } = require(path.join(src, 'procedures'));
  const { MemoryFileSystem } = require(path.join(src, 'memfs'));
  const { encodeV2Handle } = require(path.join(src, 'nfs2'));
  return { executeNfsCall, MemoryFileSystem, encodeV2Handle };
}

const ctx: NfsCallContext = {
  cred: { uid: 1000, gid: 1000, gids: [] },
  time: { seconds: 1, nseconds: 0 },
  checkPermissions: true,
};

type Call = [version: number, procedure: number, args: Uint8Array];
type Case = [label: string, calls: Call[]];

/** A backend of one build with the bench's tree in it, and the calls over its handles. */
function setUp(b: Build): { fs: FileSystem; cases: Case[] } {
  const fs = new b.MemoryFileSystem();
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
  const v3 = (proc: number, f: (w: XdrWriter) => void): Call => [3, proc, args(f)];
  const v2 = (proc: number, f: (w: XdrWriter) => void): Call => [2, proc, args(f)];
  const v2file = b.encodeV2Handle(file);
  const cases: Case[] = [
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
    ['v2 GETATTR', [v2(Nfs2Proc.GETATTR, (w) => w.fixed(v2file))]],
    ['v2 LOOKUP', [v2(Nfs2Proc.LOOKUP, (w) => w.fixed(b.encodeV2Handle(dir)).string('f'))]],
    ['v2 READ 4 KiB', [v2(Nfs2Proc.READ, (w) => w.fixed(v2file).u32(0).u32(4096).u32(0))]],
  ];
  const only = process.env.PROC_BENCH_ONLY ?? '';
  return { fs, cases: cases.filter(([label]) => label.includes(only)) };
}

/** One build set up: what each measurement runs. */
interface Subject {
  build: Build;
  fs: FileSystem;
  cases: Case[];
}

function runCalls(s: Subject, calls: Call[], n: number): void {
  for (let i = 0; i < n; i++) {
    for (const [version, proc, a] of calls) {
      s.build.executeNfsCall(s.fs, NFS_PROGRAM, version, proc, a, ctx);
    }
  }
}

function perCallNs(s: Subject, calls: Call[]): number {
  const t0 = process.hrtime.bigint();
  runCalls(s, calls, CALLS);
  return Number(process.hrtime.bigint() - t0) / CALLS;
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

/** Bytes per call allocated on the V8 heap and outside it (typed arrays' backing stores). */
function allocatedPerCall(s: Subject, calls: Call[]): { heap: number; external: number } {
  const probe = (n: number) => {
    const heap: number[] = [];
    const external: number[] = [];
    for (let p = 0; p < PROBES; p++) {
      const before = getHeapStatistics();
      runCalls(s, calls, n);
      const after = getHeapStatistics();
      heap.push(after.used_heap_size - before.used_heap_size);
      external.push(after.external_memory - before.external_memory);
    }
    return { heap: median(heap), external: median(external) };
  };
  // A probe without calls measures what the probe itself allocates.
  const idle = probe(0);
  const busy = probe(PROBE_CALLS);
  return {
    heap: (busy.heap - idle.heap) / PROBE_CALLS,
    external: (busy.external - idle.external) / PROBE_CALLS,
  };
}

const baseline = process.env.PROC_BENCH_BASELINE;
const builds: [string, Build][] = [['this', load(path.join(__dirname, '../src'))]];
if (baseline) builds.unshift(['base', load(path.resolve(baseline))]);
const subjects: Subject[] = builds.map(([, build]) => ({ build, ...setUp(build) }));
const labels = subjects[0].cases.map(([label]) => label);

console.log(`procedure layer: ${ROUNDS} interleaved rounds of ${CALLS} calls`);
if (baseline) console.log(`base: ${baseline}`);
for (const s of subjects) for (const [, calls] of s.cases) perCallNs(s, calls); // warm the JIT
/** ns[subject][case][round] */
const ns = subjects.map(() => labels.map((): number[] => []));
let peakHeap = 0;
for (let r = 0; r < ROUNDS; r++) {
  labels.forEach((_, k) => {
    // Alternate which build goes first, so neither always runs on the other's garbage.
    const order = r % 2 === 0 ? subjects.keys() : [...subjects.keys()].reverse();
    for (const i of order) ns[i][k].push(perCallNs(subjects[i], subjects[i].cases[k][1]));
    peakHeap = Math.max(peakHeap, getHeapStatistics().total_heap_size);
  });
}
// Read before the probes, which allocate little but would count towards the peak.
const peakRss = process.resourceUsage().maxRSS * 1024;
const MiB = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
const pad = (x: number, n: number) => x.toFixed(0).padStart(n);
const head = builds.map(([name]) => `${`${name} ns`.padStart(8)} ${'heap B'.padStart(7)}`);
const ratio = baseline ? ` ${'this/base'.padStart(9)}` : '';
console.log(`${'case'.padEnd(34)} ${head.join(' ')}${ratio} ${'ext B'.padStart(6)}`);
labels.forEach((label, k) => {
  const probes = subjects.map((s) => allocatedPerCall(s, s.cases[k][1]));
  const cols = subjects.map((_, i) => `${pad(median(ns[i][k]), 8)} ${pad(probes[i].heap, 7)}`);
  if (baseline) {
    const ratios = ns[1][k].map((t, r) => t / ns[0][k][r]);
    cols.push(median(ratios).toFixed(2).padStart(9));
  }
  console.log(
    `${label.padEnd(34)} ${cols.join(' ')} ${pad(probes[probes.length - 1].external, 6)}`,
  );
});
console.log(`peak RSS ${MiB(peakRss)} MiB, peak V8 heap ${MiB(peakHeap)} MiB`);
