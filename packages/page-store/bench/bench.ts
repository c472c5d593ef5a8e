// Page-store benchmark: `npm run bench -w @bfs/page-store`. Prints figures, then one JSON line.
// Environment: BENCH_GIB (populated GiB, default 1), BENCH_REPEATS (default 15).
import { createHash, hash as oneShot, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { PageStore, PersistentPageStore } from '../src';

const PAGE = 4096;
const GIB = 2 ** 30;
const populatedGiB = Number(process.env.BENCH_GIB ?? 1);
const repeats = Number(process.env.BENCH_REPEATS ?? 15);

function ms(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** CPU milliseconds (user + system) of this process since `start`: robust to a loaded machine. */
function cpuMs(start: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(start);
  return (d.user + d.system) / 1000;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function fmt(x: number, digits = 2): string {
  return x.toFixed(digits);
}

/** xorshift, so runs are repeatable. */
let seed = 0x9e3779b9;
function rand(n: number): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) % n;
}

// A real gc() so that resident-memory figures count live data, not garbage.
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;
function gc(): void {
  collect();
  collect();
}

/** Bytes this process has handed to write(2) and friends (LevelDB's log and tables included). */
function writtenBytes(): number {
  const m = /wchar:\s*(\d+)/.exec(readFileSync('/proc/self/io', 'utf8'));
  return m ? Number(m[1]) : NaN;
}

function hashChoice(): Record<string, number> {
  console.log('hash of one 4 KiB page plus an 18-byte header (node:crypto / OpenSSL):');
  const page = randomBytes(PAGE);
  const header = randomBytes(18);
  const n = 50000;
  const candidates: [string, () => void][] = [
    ['sha256 createHash', () => createHash('sha256').update(header).update(page).digest()],
    [
      'sha256 one-shot crypto.hash',
      () => oneShot('sha256', Buffer.concat([header, page]), 'buffer'),
    ],
    ['sha512-256', () => createHash('sha512-256').update(header).update(page).digest()],
    ['blake2b512', () => createHash('blake2b512').update(header).update(page).digest()],
    ['blake2s256', () => createHash('blake2s256').update(header).update(page).digest()],
  ];
  const out: Record<string, number> = {};
  for (const [name, f] of candidates) {
    for (let i = 0; i < 2000; i++) f();
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) f();
    const elapsed = ms(t);
    const mbps = (n * PAGE) / 2 ** 20 / (elapsed / 1000);
    out[name] = Math.round(mbps);
    console.log(`  ${name.padEnd(30)} ${fmt((elapsed * 1000) / n)} us/page  ${fmt(mbps, 0)} MiB/s`);
  }
  return out;
}

function populate(store: PageStore, pages: number): void {
  const buf = new Uint8Array(PAGE);
  const view = new DataView(buf.buffer);
  for (let p = 0; p < pages; p++) {
    buf.fill(p & 0xff);
    view.setUint32(0, p);
    store.write(p * PAGE, buf);
  }
}

function dirtyPages(store: PageStore, pages: number, count: number, fill: number): void {
  const chosen = new Set<number>();
  while (chosen.size < count) chosen.add(rand(pages));
  const small = new Uint8Array(64).fill(fill);
  for (const p of chosen) store.write(p * PAGE + 128, small);
}

async function levelFigures(): Promise<{
  batchBytes: number;
  diskBytes: number;
  modifiedBytes: number;
  dirty: number;
  persistMs: number;
  restartMs: number;
  restartBytes: number;
}> {
  const dir = mkdtempSync(join(tmpdir(), 'page-store-bench-'));
  try {
    const pages = 16384; // 64 MiB populated
    const store = await PersistentPageStore.open(dir, { size: pages * PAGE }); // fsync per batch
    populate(store.state, pages);
    store.state.checkpoint(1);
    await store.persist(1);
    const dirty = 100;
    const rounds = 20;
    const before = writtenBytes();
    let batch = 0;
    const persistTimes: number[] = [];
    for (let r = 0; r < rounds; r++) {
      dirtyPages(store.state, pages, dirty, r);
      store.state.checkpoint(2 + r);
      const t = process.hrtime.bigint();
      batch += (await store.persist(2 + r)).bytesWritten;
      persistTimes.push(ms(t));
      store.state.discardBelow(2 + r);
    }
    await store.close();
    const diskBytes = (writtenBytes() - before) / rounds;
    const t = process.hrtime.bigint();
    const reopened = await PersistentPageStore.open(dir, { size: pages * PAGE });
    const restartMs = ms(t);
    await reopened.close();
    // Each dirty page got one 64-byte write.
    return {
      batchBytes: batch / rounds,
      diskBytes,
      modifiedBytes: dirty * 64,
      dirty,
      persistMs: median(persistTimes),
      restartMs,
      restartBytes: pages * PAGE,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  console.log(
    `page-store benchmark (node ${process.version}, ${populatedGiB} GiB populated, ${PAGE}-byte pages)`,
  );
  const hashes = hashChoice();

  const pages = Math.round((populatedGiB * GIB) / PAGE);
  gc();
  const rssBefore = process.memoryUsage().rss;
  const store = new PageStore({ size: 64 * GIB });
  let t = process.hrtime.bigint();
  populate(store, pages);
  const populateMs = ms(t);
  t = process.hrtime.bigint();
  store.checkpoint(1);
  const firstCheckpointMs = ms(t);
  gc();
  const rssPerGiB = (process.memoryUsage().rss - rssBefore) / populatedGiB;
  console.log(
    `\npopulate ${populatedGiB} GiB (${pages} pages) in a 64 GiB logical state: ${fmt(populateMs, 0)} ms`,
  );
  console.log(`first checkpoint (every page dirty): ${fmt(firstCheckpointMs, 0)} ms`);
  console.log(`resident memory per populated GiB: ${fmt(rssPerGiB / 2 ** 20, 0)} MiB`);

  const fullTimes: number[] = [];
  const fullCpu: number[] = [];
  for (let i = 0; i < 3; i++) {
    t = process.hrtime.bigint();
    const c = process.cpuUsage();
    store.digestFromScratch();
    fullTimes.push(ms(t));
    fullCpu.push(cpuMs(c));
  }
  const fullDigestMs = median(fullTimes);
  const fullDigestCpuMs = median(fullCpu);
  console.log(
    `digest of the whole state from scratch: ${fmt(fullDigestMs, 0)} ms (CPU ${fmt(fullDigestCpuMs, 0)} ms)`,
  );

  let seq = 2;
  const byDirty: Record<string, number> = {};
  const cpuByDirty: Record<string, number> = {};
  console.log('\nincremental checkpoint time by modified pages (median wall, median CPU):');
  for (const dirty of [1, 10, 100, 1000, 10000]) {
    const times: number[] = [];
    const cpu: number[] = [];
    const reps = dirty >= 10000 ? Math.max(3, Math.floor(repeats / 3)) : repeats;
    for (let r = 0; r < reps; r++) {
      dirtyPages(store, pages, dirty, r);
      t = process.hrtime.bigint();
      const c = process.cpuUsage();
      store.checkpoint(seq);
      times.push(ms(t));
      cpu.push(cpuMs(c));
      store.discardBelow(seq);
      seq++;
    }
    byDirty[dirty] = median(times);
    cpuByDirty[dirty] = median(cpu);
    console.log(
      `  ${String(dirty).padStart(6)} pages: ${fmt(byDirty[dirty], 3).padStart(9)} ms  ` +
        `(${fmt((byDirty[dirty] * 1000) / dirty, 1)} us/page)   CPU ${fmt(cpuByDirty[dirty], 3)} ms`,
    );
  }
  const incrementalCheckpointMs = byDirty[100];
  console.log(
    `\n100 modified pages: incremental ${fmt(incrementalCheckpointMs, 3)} ms vs from scratch ` +
      `${fmt(fullDigestMs, 0)} ms: ratio ${fmt(fullDigestMs / incrementalCheckpointMs, 0)} ` +
      `(CPU time ratio ${fmt(fullDigestCpuMs / cpuByDirty[100], 0)})`,
  );

  // Write throughput: 4 KiB and 512-byte writes to pages whose first write after the checkpoint
  // copies the page (copy-on-write active: an older checkpoint is kept).
  const writeFigures: Record<string, number> = {};
  for (const size of [PAGE, 512]) {
    const data = new Uint8Array(size).fill(7);
    const count = 16384;
    // Several checkpoint intervals, the stable one trailing by one, so that the copies of discarded
    // checkpoints get reused (steady state): the last three intervals are timed.
    let elapsed = 0;
    const rounds = 6;
    const warm = 3;
    for (let r = 0; r < rounds; r++) {
      store.checkpoint(seq);
      store.discardBelow(seq - 1);
      seq++;
      t = process.hrtime.bigint();
      for (let i = 0; i < count; i++)
        store.write(rand(pages) * PAGE + (size === PAGE ? 0 : 1024), data);
      const e = ms(t);
      if (r === 0)
        console.log(
          `  first interval (fresh memory for every copy): ${fmt((e * 1000) / count, 2)} us/write`,
        );
      if (r >= warm) elapsed += e;
    }
    const total = count * (rounds - warm);
    writeFigures[size] = (total * size) / 2 ** 20 / (elapsed / 1000);
    console.log(
      `write throughput, ${size}-byte writes to random pages, copy-on-write active: ` +
        `${fmt(writeFigures[size], 0)} MiB/s (${fmt((elapsed * 1000) / total, 2)} us/write)`,
    );
  }
  t = process.hrtime.bigint();
  const cp = store.checkpoint(seq);
  console.log(`  checkpoint after those writes (${cp.dirtyPages} pages): ${fmt(ms(t), 0)} ms`);
  const readCount = 200000;
  t = process.hrtime.bigint();
  for (let i = 0; i < readCount; i++) store.read(rand(pages) * PAGE, 512);
  console.log(`read, 512 bytes at random: ${fmt((ms(t) * 1000) / readCount, 2)} us/read`);

  const lvl = await levelFigures();
  console.log(
    `\nLevelDB per checkpoint with ${lvl.dirty} pages modified by 64-byte writes (${lvl.modifiedBytes} bytes modified, ` +
      `${lvl.dirty * PAGE} bytes of dirty pages): batch ${fmt(lvl.batchBytes, 0)} bytes, ` +
      `bytes written by the process (LevelDB log, tables, compactions) ${fmt(lvl.diskBytes, 0)}`,
  );
  console.log(
    `  persist() of such a checkpoint, fsync included (median): ${fmt(lvl.persistMs, 2)} ms`,
  );
  console.log(
    `restart (open, load, re-hash, verify) of ${lvl.restartBytes / 2 ** 20} MiB persisted: ${fmt(lvl.restartMs, 0)} ms`,
  );

  const json = {
    incrementalCheckpointMs,
    fullDigestMs,
    ratio: fullDigestMs / incrementalCheckpointMs,
    incrementalCheckpointCpuMs: cpuByDirty[100],
    fullDigestCpuMs,
    checkpointCpuMsByDirtyPages: cpuByDirty,
    dirtyPages: 100,
    stateBytes: pages * PAGE,
    pageSize: PAGE,
    checkpointMsByDirtyPages: byDirty,
    firstCheckpointMs,
    writeMiBps4k: writeFigures[PAGE],
    writeMiBps512: writeFigures[512],
    rssBytesPerGiB: rssPerGiB,
    levelBatchBytesPerCheckpoint: lvl.batchBytes,
    levelDiskBytesPerCheckpoint: lvl.diskBytes,
    modifiedBytesPerCheckpoint: lvl.modifiedBytes,
    persistMs: lvl.persistMs,
    restartMs64MiB: lvl.restartMs,
    hashMiBps: hashes,
  };
  console.log(JSON.stringify(json));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
