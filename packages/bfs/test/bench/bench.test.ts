import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MemoryFileSystem, NfsServer } from 'nfs-server-ts';
import { PHASES, andrew, generateTree } from '../../src/bench/andrew';
import { compare } from '../../src/bench/compare';
import { micro } from '../../src/bench/micro';
import { barChart } from '../../src/bench/svg';
import { connect, parseNfsUrl } from '../../src/bench/target';

describe('bfs bench: Andrew-style and micro benchmarks over NFSv3', function () {
  this.timeout(120_000);
  let server: NfsServer;
  let memory: MemoryFileSystem;
  let url: string;
  before(async () => {
    memory = new MemoryFileSystem();
    server = new NfsServer({ fs: memory, export: { rootSquash: false } });
    const port = await server.listen({ port: 0, host: '127.0.0.1' });
    url = `nfs://127.0.0.1/?nfsport=${port}&mountport=${port}&version=3`;
  });
  after(() => server.close());

  it('mounts through a separate MOUNT port when the URL names one', async () => {
    // The same file system behind both ports: a memory file system's handles carry an fsid of
    // its own, so another instance's root handle is BADHANDLE here.
    const mountOnly = new NfsServer({ fs: memory });
    const mport = await mountOnly.listen({ port: 0, host: '127.0.0.1' });
    try {
      // MOUNT goes to mountport, NFS calls to nfsport: count the calls each server saw.
      const nport = parseNfsUrl(url).port;
      const before = server.rpc.stats.calls;
      const s = await connect(
        parseNfsUrl(`nfs://127.0.0.1/?nfsport=${nport}&mountport=${mport}&version=3`),
      );
      try {
        assert.equal(mountOnly.rpc.stats.calls, 1, 'the MNT call');
        await s.nfs.getattr(s.root);
        assert.equal(server.rpc.stats.calls, before + 1, 'the GETATTR call');
        assert.equal(mountOnly.rpc.stats.calls, 1);
      } finally {
        s.close();
      }
    } finally {
      await mountOnly.close();
    }
  });

  it('reads the ready line URL and refuses what it cannot benchmark', () => {
    assert.deepEqual(parseNfsUrl('nfs://10.0.0.5/exp?nfsport=2050&mountport=2050&version=3'), {
      host: '10.0.0.5',
      port: 2050,
      path: '/exp',
    });
    assert.throws(() => parseNfsUrl('http://x/'), /not an nfs/);
    assert.deepEqual(parseNfsUrl('nfs://x/e?nfsport=2049&mountport=20048'), {
      host: 'x',
      port: 2049,
      mountPort: 20048,
      path: '/e',
    });
    assert.throws(() => parseNfsUrl('nfs://x/?nfsport=70000'), /bad port/);
    assert.throws(() => parseNfsUrl('nfs://x/?version=2'), /only NFSv3/);
  });

  it('generates the same source tree every time: about 70 files and 200 KB, as the original', () => {
    const a = generateTree();
    const b = generateTree();
    assert.deepEqual(a, b);
    assert.equal(a.length, 70);
    const bytes = a.reduce((n, f) => n + f.data.length, 0);
    assert.ok(bytes > 150_000 && bytes < 260_000, `${bytes} bytes`);
  });

  it('times every phase and leaves the copied tree and the object files on the server', async () => {
    const r = await andrew(parseNfsUrl(url), { runs: 1, copies: 2, prefix: 'bench-test' });
    for (const p of PHASES) assert.ok(r.median[p] > 0, p);
    assert.ok(Math.abs(r.median.total - PHASES.reduce((a, p) => a + r.median[p], 0)) < 1e-9);
    const s = await connect(parseNfsUrl(url));
    try {
      const top = (await s.nfs.listAll(s.root)).find((e) => e.name.startsWith('bench-test'))!;
      const copy1 = await s.nfs.lookup((await s.nfs.lookup(s.root, top.name)).handle, 'copy1');
      const src = await s.nfs.lookup(copy1.handle, 'src');
      const names = (await s.nfs.listAll(src.handle)).map((e) => e.name);
      assert.ok(names.includes('file0.c') && names.includes('file0.o'), names.join(','));
    } finally {
      s.close();
    }
  });

  it('measures latency of each case and throughput with calls outstanding', async () => {
    const r = await micro(parseNfsUrl(url), { ops: 30, seconds: 0.3, outstanding: 8 });
    for (const c of ['getattr', 'setattr', 'write4k', 'read4k'] as const) {
      assert.ok(r.latencyMs[c].p50 > 0 && r.latencyMs[c].p99 >= r.latencyMs[c].p50, c);
    }
    assert.ok(r.throughput.getattr > 0 && r.throughput.setattr > 0);
  });

  it('draws one bar per system and phase, scaled to the largest', () => {
    const svg = barChart(
      't',
      ['a', 'b'],
      [
        { name: 'x', values: [1, 2] },
        { name: 'y<z', values: [3, 4] },
      ],
      's',
    );
    assert.equal(svg.match(/<rect x=/g)?.length, 4 + 2, 'four bars and two legend keys');
    assert.match(svg, /y&lt;z/);
    assert.match(svg, /^<svg[^>]*xmlns/);
  });

  it('compares BFS replicated, unreplicated and nfs-server-ts, and writes JSON and SVG', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-compare-'));
    try {
      const r = await compare({ runs: 1, copies: 1, microOps: 20, microSeconds: 0.2, outDir: out });
      assert.deepEqual(Object.keys(r.andrew).sort(), ['bfs', 'bfs-nr', 'memory']);
      assert.equal(r.ratioToUnreplicated['bfs-nr'], 1);
      assert.ok(r.andrew.bfs.median.total > 0);
      assert.deepEqual(
        JSON.parse(fs.readFileSync(r.files.json, 'utf8')).ratioToUnreplicated,
        r.ratioToUnreplicated,
      );
      assert.match(fs.readFileSync(r.files.svg, 'utf8'), /<svg/);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });
});

describe('scripts/andrew.sh: the same phases with real tools (mkdir, cp, ls -lR, cat, make + cc)', function () {
  this.timeout(120_000);
  it('runs on a directory, compiles every source and prints one JSON line of phase times', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-andrew-sh-'));
    try {
      const root = path.resolve(__dirname, '../../../..');
      const out = execFileSync('bash', [path.join(root, 'scripts/andrew.sh'), dir, '1'], {
        encoding: 'utf8',
      });
      const times = JSON.parse(out.trim().split('\n').pop()!);
      for (const p of [...PHASES, 'total']) assert.ok(times[p] > 0, p);
      const copy = fs.readdirSync(dir).map((d) => path.join(dir, d, 'copy1'))[0];
      const objects = fs.readdirSync(path.join(copy, 'src')).filter((f) => f.endsWith('.o'));
      assert.equal(objects.length, 14, 'one object per source in src/');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
