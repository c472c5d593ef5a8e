/**
 * PBFT micro-benchmark (OSDI 1999 section 6.2) on loopback TCP, n = 4 replica processes with the
 * null service, against the same service unreplicated over the same transport; then throughput
 * with batching and many outstanding requests, CPU per operation, and the MAC hot path
 * (node:crypto vs WebCrypto). Prints figures, then one JSON line last.
 *
 * Beside them, the message-pattern floor (floor.ts): the same patterns between bare processes
 * with no crypto and no protocol, which bounds the ratios any implementation can reach here.
 *
 * Last, the view change: kill -9 the primary under a sequential read-write load and time the
 * first request started after the kill, from the kill to its completion (median over BENCH_CRASH_RUNS fresh clusters, default 5),
 * and once more under the throughput phase's load (BENCH_OUTSTANDING client ids).
 *
 * Then the attacks (attacks.ts): throughput and p50/p99 of 0/0 operations with no fault and under
 * each attack of `ATTACKS`, each on a fresh cluster, median of three windows (and of
 * BENCH_ATTACK_RUNS runs).
 *
 * Environment: BENCH_OPS (sequential ops per latency case, default 2000), BENCH_SECONDS
 * (one throughput run, default 5), BENCH_THROUGHPUT_RUNS (median of, default 3),
 * BENCH_OUTSTANDING (concurrent client ids, default 256), BENCH_CRASH_RUNS (default 5),
 * BENCH_ONLY (comma-separated sections to run: mac, latency, floor, throughput, crash, attacks,
 * signatures; default all), BENCH_ATTACKS (comma-separated attack names, default all; the
 * fault-free run always), BENCH_ATTACK_SECONDS (one window, default 5), BENCH_ATTACK_RUNS
 * (fresh clusters per attack, interleaved, median of; default 3),
 * BENCH_ATTACK_SIGNATURES (off: the attacks with request signatures off, as before they existed),
 * BENCH_SIGNATURE_ROUNDS (signatures.ts), BENCH_REQUESTS_TO_ALL (off: read-write requests to the
 * primary alone, as PBFT's clients send them).
 *
 * Clients sign their requests and replicas check them (the default), but where said otherwise.
 */
import { createHmac } from 'node:crypto';
import {
  FIRST_CLIENT_ID,
  HmacKey,
  JS_HMAC_MAX_BYTES,
  MAC_BYTES,
  MacAuthenticator,
  MsgType,
  Client,
  TcpTransport,
  decodeFrame,
  webcrypto,
} from '../src';
import { authFor, connectionKeysFor, requestSignerFor } from '../test/support/keys';
import { nullOp } from '../test/support/null-service';
import { messagePatternFloor } from './floor';
import {
  CASES,
  REQUESTS_TO_ALL,
  WARMUP_CALLS,
  caseLabel,
  keepOutstanding,
  keepOutstandingFor,
  latency,
  pct,
  r3,
} from './measure';
import { startProcesses } from '../test/support/processes';
import { attackSection } from './attacks';
import { signatureSection } from './signatures';

const OPS = Number(process.env.BENCH_OPS ?? 2000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const OUTSTANDING = Number(process.env.BENCH_OUTSTANDING ?? 256);
const CLIENT_IDS = Math.max(OUTSTANDING, 1);
const N = 4;
const CRASH_RUNS = Number(process.env.BENCH_CRASH_RUNS ?? 5);
const THROUGHPUT_RUNS = Math.max(1, Number(process.env.BENCH_THROUGHPUT_RUNS ?? 3));
const THROUGHPUT_WARMUP_SECONDS = 5;
const SECTIONS = [
  'mac',
  'latency',
  'floor',
  'throughput',
  'crash',
  'attacks',
  'signatures',
] as const;
const ATTACK_SECONDS = Number(process.env.BENCH_ATTACK_SECONDS ?? 5);
const ATTACK_NAMES = (process.env.BENCH_ATTACKS ?? '')
  .split(',')
  .map((x) => x.trim())
  .filter(Boolean);
const ONLY = new Set<string>(
  (process.env.BENCH_ONLY ?? SECTIONS.join(',')).split(',').map((x) => x.trim()),
);
for (const x of ONLY)
  if (!(SECTIONS as readonly string[]).includes(x))
    throw new Error(`BENCH_ONLY: unknown section ${x} (sections: ${SECTIONS.join(', ')})`);
/** Overrides of ReplicaOptions for experiments, as JSON: BENCH_REPLICA_OPTIONS='{"maxOutstandingPrePrepares":4}'. */
const REPLICA_OPTIONS = JSON.parse(process.env.BENCH_REPLICA_OPTIONS ?? '{}') as Record<
  string,
  number | boolean
>;

async function macBench(): Promise<Record<string, number>> {
  const key = Buffer.alloc(32, 1);
  const prepared = new HmacKey(key);
  const out: Record<string, number> = {};
  const perTag = (iters: number, f: () => void): number => {
    for (let i = 0; i < iters / 10; i++) f(); // warm-up
    const t = performance.now();
    for (let i = 0; i < iters; i++) f();
    return r3(((performance.now() - t) * 1000) / iters);
  };
  for (const size of [32, 100, 1024]) {
    const data = Buffer.alloc(size, 2);
    const iters = 50_000;
    // What the hot path runs: a session key prepared once, then one tag per message.
    out[`hmacKeyTag${size}Us`] = perTag(iters, () => void prepared.tag(data));
    out[`createHmac${size}Us`] = perTag(
      iters,
      () => void createHmac('sha256', key).update(data).digest(),
    );
    // Promise-based HMACs, for comparison: @peculiar/webcrypto and Node's own WebCrypto.
    for (const [name, subtle] of [
      ['webcryptoHmac', webcrypto.subtle],
      ['nodeWebcryptoHmac', globalThis.crypto.subtle],
    ] as const) {
      const k = await subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, [
        'sign',
      ]);
      const t = performance.now();
      for (let i = 0; i < iters / 10; i++) await subtle.sign('HMAC', k, data);
      out[`${name}${size}Us`] = r3(((performance.now() - t) * 1000) / (iters / 10));
    }
  }
  return out;
}

/** Unreplicated client: one request, one MAC, one reply, over the same TCP transport. */
async function unreplicated(): Promise<Record<string, number>> {
  const cluster = await startProcesses(1, () => ({
    id: 0,
    n: N,
    service: 'null',
    mode: 'unreplicated',
    clients: 1,
  }));
  const id = FIRST_CLIENT_ID;
  const auth: MacAuthenticator = authFor(id, N, 1);
  const t = await TcpTransport.open({
    ids: [id],
    connectionKeys: connectionKeysFor([id]),
    peers: new Map([[0, { host: '127.0.0.1', port: cluster.ports.get(0)! }]]),
  });
  let ts = 0;
  let waiter: ((b: Uint8Array) => void) | undefined;
  t.onMessage((_f, b) => {
    const f = decodeFrame(b);
    if (
      f.body.type === MsgType.Reply &&
      f.body.timestamp === ts &&
      auth.verifyFrame(0, f.signed, f.macs)
    )
      waiter?.(f.body.result);
  });
  const call = (op: Uint8Array): Promise<Uint8Array> =>
    new Promise((resolve) => {
      waiter = resolve;
      ts++;
      t.send(
        0,
        auth.sealTo(
          { type: MsgType.Request, clientId: id, timestamp: ts, readOnly: false, replier: 0, op },
          0,
        ),
      );
    });
  const res: Record<string, number> = {};
  // Warm every path first, as the replicated run does: the case measured first otherwise pays
  // for the JIT (0/0 read 0.11-0.12 ms measured first, 0.05-0.07 ms after the warm-up).
  for (const [, a, r] of CASES) await latency(() => call(nullOp(a, r)), WARMUP_CALLS);
  for (const [name, a, r] of CASES) {
    const op = nullOp(a, r);
    const l = await latency(() => call(op), OPS);
    res[`unrep${name}P50Ms`] = l.p50;
    res[`unrep${name}P99Ms`] = l.p99;
  }
  await t.close();
  await cluster.stop();
  return res;
}

interface ProcessStats {
  cpu: { user: number; system: number };
  io?: { writes: number; reads: number };
  replica?: Record<string, number>;
}

function cpuMs(stats: string[]): number[] {
  return stats.map((s) => {
    const c = (JSON.parse(s) as ProcessStats).cpu;
    return (c.user + c.system) / 1000;
  });
}

/** Per operation, from two snapshots: system-time share, socket writes and reads, batch size. */
function perOpDetail(before: string[], after: string[], ops: number): string {
  return after
    .map((s, i) => {
      const a = JSON.parse(s) as ProcessStats;
      const b = JSON.parse(before[i]!) as ProcessStats;
      const user = a.cpu.user - b.cpu.user;
      const sys = a.cpu.system - b.cpu.system;
      const w = ((a.io?.writes ?? 0) - (b.io?.writes ?? 0)) / ops;
      const r = ((a.io?.reads ?? 0) - (b.io?.reads ?? 0)) / ops;
      const pp = (a.replica?.prePrepareSent ?? 0) - (b.replica?.prePrepareSent ?? 0);
      const batch = pp > 0 ? `, ${r3(ops / pp)} ops per batch` : '';
      const rb = (a.replica?.replyBatchSent ?? 0) - (b.replica?.replyBatchSent ?? 0);
      const replies = rb > 0 ? `, ${r3(ops / rb)} replies per REPLY-BATCH` : '';
      return `  replica ${i}: user ${r3(user / ops)} us, system ${r3(sys / ops)} us, writes ${r3(w)}, reads ${r3(r)} per op${batch}${replies}`;
    })
    .join('\n');
}

async function replicated(): Promise<Record<string, number>> {
  const cluster = await startProcesses(N, (id) => ({
    id,
    n: N,
    service: 'null',
    mode: 'replica',
    clients: CLIENT_IDS,
    replicaOptions: REPLICA_OPTIONS,
  }));
  const peers = new Map([...cluster.ports].map(([id, port]) => [id, { host: '127.0.0.1', port }]));
  try {
    return {
      ...(ONLY.has('latency') ? await sequentialLatency(cluster, peers) : {}),
      ...(ONLY.has('throughput') ? await throughput(cluster, peers) : {}),
    };
  } finally {
    await cluster.stop();
  }
}

type Cluster = Awaited<ReturnType<typeof startProcesses>>;
type Peers = Map<number, { host: string; port: number }>;

/** One client id, one request at a time: p50 and p99 of each case, read-write and read-only. */
async function sequentialLatency(cluster: Cluster, peers: Peers): Promise<Record<string, number>> {
  const res: Record<string, number> = {};
  const one = new Client({
    n: N,
    transport: await TcpTransport.open({
      ids: [FIRST_CLIENT_ID],
      connectionKeys: connectionKeysFor([FIRST_CLIENT_ID]),
      peers,
    }),
    auth: (id) => authFor(id, N, CLIENT_IDS),
    signer: requestSignerFor(),
    requestsToAll: REQUESTS_TO_ALL,
  });
  // Warm every path (JIT, connections) in all four processes before measuring any.
  for (const [, a, r] of CASES) {
    await latency(() => one.invoke(nullOp(a, r)), WARMUP_CALLS);
    await latency(() => one.invoke(nullOp(a, r), { readOnly: true }), WARMUP_CALLS);
  }
  for (const [name, a, r] of CASES) {
    const op = nullOp(a, r);
    const seqBefore = name === '00' ? await cluster.snapshot() : [];
    const seqClient = process.cpuUsage();
    const rw = await latency(() => one.invoke(op), OPS);
    if (name === '00') {
      const c = process.cpuUsage(seqClient);
      const n = OPS + Math.min(WARMUP_CALLS, OPS); // latency() warms up first
      console.log(
        `sequential read-write 0/0 detail (CPU per op, warm-up included):\n${perOpDetail(seqBefore, await cluster.snapshot(), n)}`,
      );
      console.log(`  client: user ${r3(c.user / n)} us, system ${r3(c.system / n)} us per op`);
    }
    const ro = await latency(() => one.invoke(op, { readOnly: true }), OPS);
    res[`rw${name}P50Ms`] = rw.p50;
    res[`rw${name}P99Ms`] = rw.p99;
    res[`ro${name}P50Ms`] = ro.p50;
    res[`ro${name}P99Ms`] = ro.p99;
  }
  // A read right after a write, as a file system's clients make them (LOOKUP after CREATE,
  // GETATTR after COMMIT): the read waits at each replica until the write commits there.
  const op = nullOp(0, 0);
  const afterWrite: number[] = [];
  await latency(async () => {
    await one.invoke(op);
    const t = performance.now();
    await one.invoke(op, { readOnly: true });
    afterWrite.push(performance.now() - t);
  }, OPS);
  afterWrite.splice(0, Math.min(WARMUP_CALLS, OPS));
  res.roAfterRw00P50Ms = r3(pct(afterWrite, 50));
  res.roAfterRw00P99Ms = r3(pct(afterWrite, 99));
  res.latencyRetransmits = one.stats.retransmit ?? 0;
  await one.close();
  return res;
}

/**
 * Many client ids, each keeping one 0/0 request outstanding, for BENCH_SECONDS; repeated
 * THROUGHPUT_RUNS times on the same cluster and reported as the median run (this host's
 * throughput moves by a third from one minute to the next), with the CPU figures of that run.
 */
async function throughput(cluster: Cluster, peers: Peers): Promise<Record<string, number>> {
  const ids = Array.from({ length: OUTSTANDING }, (_, i) => FIRST_CLIENT_ID + 1 + i).filter(
    (i) => i < FIRST_CLIENT_ID + CLIENT_IDS,
  );
  const many = new Client({
    n: N,
    transport: await TcpTransport.open({ ids, connectionKeys: connectionKeysFor(ids), peers }),
    auth: (id) => authFor(id, N, CLIENT_IDS),
    signer: requestSignerFor(),
    requestsToAll: REQUESTS_TO_ALL,
  });
  const op = nullOp(0, 0);
  // Warm-up at full concurrency (connections, JIT, heap sizes, the clients' latency estimate):
  // with one round only, the first measured run was a third slower than the next ones.
  const load = (seconds: number): Promise<number> =>
    keepOutstandingFor(ids.length, () => many.invoke(op), seconds);
  await load(THROUGHPUT_WARMUP_SECONDS);
  const runs: { opsPerSec: number; detail: string; res: Record<string, number> }[] = [];
  for (let run = 0; run < THROUGHPUT_RUNS; run++) {
    const beforeStats = await cluster.snapshot();
    const before = cpuMs(beforeStats);
    const clientBefore = process.cpuUsage();
    const t0 = performance.now();
    const done = await load(SECONDS);
    const secs = (performance.now() - t0) / 1000;
    const clientCpu = process.cpuUsage(clientBefore);
    const afterStats = await cluster.snapshot();
    const after = cpuMs(afterStats);
    const opsPerSec = Math.round(done / secs);
    const perOp = after.map((a, i) => ((a - before[i]!) * 1000) / done);
    const detail =
      `${perOpDetail(beforeStats, afterStats, done)}\n` +
      `  client: user ${r3(clientCpu.user / done)} us, system ${r3(clientCpu.system / done)} us per op`;
    console.log(`throughput run ${run + 1}/${THROUGHPUT_RUNS}: ${opsPerSec} ops/s`);
    runs.push({
      opsPerSec,
      detail,
      res: {
        throughputOpsPerSec: opsPerSec,
        cpuUsPerOpPerReplicaMax: r3(Math.max(...perOp)),
        cpuUsPerOpPrimary: r3(perOp[0]!),
        cpuUsPerOpBackupMean: r3((perOp[1]! + perOp[2]! + perOp[3]!) / 3),
        // The client process shares the two cores with the replicas: its CPU counts too.
        cpuUsPerOpClient: r3((clientCpu.user + clientCpu.system) / done),
      },
    });
  }
  await many.close();
  const sorted = [...runs].sort((a, b) => a.opsPerSec - b.opsPerSec);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  console.log(`throughput detail (median run):\n${median.detail}`);
  return {
    ...median.res,
    throughputOutstanding: ids.length,
    throughputRuns: runs.length,
    throughputMinOpsPerSec: sorted[0]!.opsPerSec,
    throughputMaxOpsPerSec: sorted[sorted.length - 1]!.opsPerSec,
  };
}

/**
 * Time from SIGKILL of the primary (replica 0) to the first request completed afterwards: the
 * client's retransmission timeout, the backups' view-change timeout (VIEW_CHANGE_TIMEOUT_MS),
 * VIEW-CHANGE / NEW-VIEW and the re-run of the request in view 1.
 */
async function crashRecovery(): Promise<Record<string, number>> {
  const times: number[] = [];
  for (let run = 0; run < CRASH_RUNS; run++) times.push(await crashOnce(1, 200 + 100 * run));
  times.sort((a, b) => a - b);
  // Under load a VIEW-CHANGE carries a checkpoint interval of full batches (megabytes): before
  // MAX_VIEW_CHANGE_FRAME_BYTES it could not be sent and this never completed.
  const underLoad = await crashOnce(OUTSTANDING, 3000);
  return {
    crashToFirstNewViewOpMsP50: r3(times[Math.floor(times.length / 2)]!),
    crashToFirstNewViewOpMsMax: r3(times[times.length - 1]!),
    crashRuns: times.length,
    crashUnderLoadToFirstNewViewOpMs: r3(underLoad),
  };
}

/**
 * One fresh cluster, `outstanding` client ids each keeping a 0/0 read-write request going; the
 * primary is killed after `afterMs`. Returns the time from the kill to the first completion of a
 * request started after it.
 */
async function crashOnce(outstanding: number, afterMs: number): Promise<number> {
  const cluster = await startProcesses(N, (id) => ({
    id,
    n: N,
    service: 'null',
    mode: 'replica',
    clients: outstanding,
  }));
  const peers = new Map([...cluster.ports].map(([id, port]) => [id, { host: '127.0.0.1', port }]));
  const ids = Array.from({ length: outstanding }, (_, i) => FIRST_CLIENT_ID + i);
  const client = new Client({
    n: N,
    transport: await TcpTransport.open({ ids, connectionKeys: connectionKeysFor(ids), peers }),
    auth: (id) => authFor(id, N, outstanding),
    signer: requestSignerFor(),
  });
  try {
    const op = nullOp(0, 0);
    await latency(() => client.invoke(op), WARMUP_CALLS);
    let killedAt = 0;
    let firstAfter = 0;
    const load = keepOutstanding(
      outstanding,
      async () => {
        // Only a request started after the kill counts: one the dead primary had already
        // ordered may still complete without a view change.
        const started = performance.now();
        await client.invoke(op);
        if (killedAt > 0 && started >= killedAt && firstAfter === 0) firstAfter = performance.now();
      },
      () => firstAfter !== 0,
    );
    await new Promise((r) => setTimeout(r, afterMs));
    cluster.procs[0]!.kill('SIGKILL');
    killedAt = performance.now();
    await load;
    return firstAfter - killedAt;
  } finally {
    await client.close();
    // The killed primary cannot answer a STATS request: stop the others directly.
    for (const p of cluster.procs)
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  }
}

async function main(): Promise<void> {
  console.log(
    `pbft bench: n = ${N}, loopback TCP, null service, ${OPS} sequential ops per latency case; sections: ${[...ONLY].join(', ')}`,
  );
  const mac = ONLY.has('mac') ? await macBench() : {};
  if (ONLY.has('mac'))
    console.log(
      `MAC (HMAC-SHA256 truncated to ${MAC_BYTES} B), us per tag (hmacKeyTag: ours, JS midstates up to ${JS_HMAC_MAX_BYTES} B):`,
      mac,
    );
  const unrep = ONLY.has('latency') ? await unreplicated() : {};
  const floor = ONLY.has('floor') ? await messagePatternFloor(OPS) : undefined;
  const rep = ONLY.has('latency') || ONLY.has('throughput') ? await replicated() : {};
  const crash = ONLY.has('crash') ? await crashRecovery() : {};
  const attacks = ONLY.has('attacks')
    ? await attackSection(OUTSTANDING, ATTACK_SECONDS, REPLICA_OPTIONS, ATTACK_NAMES)
    : {};
  const signatures = ONLY.has('signatures')
    ? await signatureSection(OUTSTANDING, SECONDS, Math.min(OPS, 1000))
    : {};
  let ratio = {};
  if (ONLY.has('latency')) {
    console.log('latency ms (p50 / p99)   read-write        read-only         unreplicated');
    for (const [k, a, r] of CASES)
      console.log(
        `  ${caseLabel(a, r)}                   ${rep[`rw${k}P50Ms`]} / ${rep[`rw${k}P99Ms`]}`.padEnd(
          44,
        ) +
          `${rep[`ro${k}P50Ms`]} / ${rep[`ro${k}P99Ms`]}`.padEnd(18) +
          `${unrep[`unrep${k}P50Ms`]} / ${unrep[`unrep${k}P99Ms`]}`,
      );
    console.log(
      `  0/0 read right after a write: ${rep.roAfterRw00P50Ms} / ${rep.roAfterRw00P99Ms}`,
    );
    const r = {
      rw00VsUnrep: r3(rep.rw00P50Ms! / unrep.unrep00P50Ms!),
      ro00VsUnrep: r3(rep.ro00P50Ms! / unrep.unrep00P50Ms!),
    };
    console.log(
      `0/0 ratios to unreplicated: read-write ${r.rw00VsUnrep}x (target 2.5x), read-only ${r.ro00VsUnrep}x (target 1.5x)`,
    );
    ratio = r;
  }
  if (floor)
    console.log(
      `message-pattern floor (no crypto, no protocol), p50 ms: ping-pong ${floor.floorPingPongP50Ms}, read ${floor.floorReadP50Ms}, read-write ${floor.floorReadWriteP50Ms}; ratios read-write ${floor.floorReadWriteVsPingPong}x, read ${floor.floorReadVsPingPong}x`,
    );
  if (ONLY.has('throughput')) {
    console.log(
      `throughput 0/0: ${rep.throughputOpsPerSec} ops/s, median of ${rep.throughputRuns} runs of ${SECONDS} s (${rep.throughputMinOpsPerSec}-${rep.throughputMaxOpsPerSec}) with ${rep.throughputOutstanding} outstanding (target 20000)`,
    );
    console.log(
      `CPU per op: primary ${rep.cpuUsPerOpPrimary} us, backups ${rep.cpuUsPerOpBackupMean} us, client process ${rep.cpuUsPerOpClient} us`,
    );
  }
  if (ONLY.has('crash'))
    console.log(
      `primary killed -> first request completed in the new view: median ${crash.crashToFirstNewViewOpMsP50} ms, max ${crash.crashToFirstNewViewOpMsMax} ms over ${crash.crashRuns} runs; under load (${OUTSTANDING} outstanding) ${crash.crashUnderLoadToFirstNewViewOpMs} ms`,
    );
  console.log(
    JSON.stringify({
      ...rep,
      ...unrep,
      ...ratio,
      ...floor,
      ...mac,
      ...crash,
      ...attacks,
      ...signatures,
    }),
  );
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
