/**
 * CPU cost of the protocol code alone: four replica cores and many client cores in one process,
 * messages handed over synchronously (no sockets, no event loop). Prints microseconds per
 * operation spent in each role, which is what the process benchmark's CPU figures are made of
 * minus the kernel and the event loop. BENCH_OPS (default 50000), BENCH_OUTSTANDING (256);
 * BENCH_BATCH_REPLIES=0 gives every client id REPLYs of its own instead of one client process's
 * REPLY-BATCHes; BENCH_REPLICA_OPTIONS overrides ReplicaOptions (JSON); BENCH_SIGNATURES=0 runs
 * without request signatures (clients sign and replicas check by default, as in production).
 */
import { ClientCore, ClientGroup, FIRST_CLIENT_ID, Replica } from '../src';
import { authFor, requestSignerFor, requestVerifierFor } from '../test/support/keys';
import { NullService, nullOp } from '../test/support/null-service';

const N = 4;
const OPS = Number(process.env.BENCH_OPS ?? 50_000);
const OUT = Number(process.env.BENCH_OUTSTANDING ?? 256);
const BATCH_REPLIES = process.env.BENCH_BATCH_REPLIES !== '0';
const SIGNED = process.env.BENCH_SIGNATURES !== '0';
/** Overrides of ReplicaOptions, as JSON: BENCH_REPLICA_OPTIONS='{"costlyInvariants":false}'. */
const REPLICA_OPTIONS = JSON.parse(process.env.BENCH_REPLICA_OPTIONS ?? '{}') as Record<
  string,
  number | boolean
>;

function run(ops: number): { wall: number; replicaUs: number[]; clientUs: number; done: number } {
  const replicas = Array.from(
    { length: N },
    (_, id) =>
      new Replica(
        {
          ...(SIGNED ? { requestSignatures: requestVerifierFor(OUT) } : {}),
          ...REPLICA_OPTIONS,
          n: N,
          id,
        },
        new NullService(),
        authFor(id, N, OUT),
      ),
  );
  const signer = requestSignerFor();
  const clients = Array.from(
    { length: OUT },
    (_, i) =>
      new ClientCore(
        {
          n: N,
          id: FIRST_CLIENT_ID + i,
          initialTimestamp: 0,
          replyTo: BATCH_REPLIES ? FIRST_CLIENT_ID : undefined,
          signer: SIGNED ? signer : undefined,
        },
        authFor(FIRST_CLIENT_ID + i, N, OUT),
      ),
  );
  const group = new ClientGroup(N, clients);
  const spent = new Array<number>(N).fill(0);
  let clientMs = 0;
  const queue: { from: number; to: number; bytes: Uint8Array }[] = [];
  const op = nullOp(0, 0);
  let done = 0;
  let started = 0;
  const t0 = performance.now();
  let lastTick = t0;
  const start = (c: ClientCore): void => {
    if (started >= ops) return;
    started++;
    const s = performance.now();
    const out = c.start(op, false, s);
    clientMs += performance.now() - s;
    for (const m of out.sends)
      for (const to of m.to) queue.push({ from: c.id, to, bytes: m.bytes });
  };
  for (const c of clients) start(c);
  let head = 0;
  while (done < ops) {
    if (head === queue.length) {
      // Nothing in flight: let the clocks run (batching left-overs, retransmissions).
      const now = performance.now();
      for (let i = 0; i < N; i++)
        for (const a of replicas[i]!.tick(now))
          if (a.kind === 'send') for (const to of a.to) queue.push({ from: i, to, bytes: a.bytes });
      if (head === queue.length) throw new Error('stalled');
      continue;
    }
    const m = queue[head++]!;
    if (head > 4096) {
      queue.splice(0, head);
      head = 0;
    }
    const now = performance.now();
    if (now - lastTick > 10) {
      lastTick = now;
      for (let i = 0; i < N; i++) {
        const s = performance.now();
        const acts = replicas[i]!.tick(now);
        spent[i]! += performance.now() - s;
        for (const a of acts)
          if (a.kind === 'send') for (const to of a.to) queue.push({ from: i, to, bytes: a.bytes });
      }
    }
    if (m.to < N) {
      const s = performance.now();
      const acts = replicas[m.to]!.handleMessage(m.from, m.bytes, s);
      spent[m.to]! += performance.now() - s;
      for (const a of acts)
        if (a.kind === 'send')
          for (const to of a.to) queue.push({ from: m.to, to, bytes: a.bytes });
    } else {
      const s = performance.now();
      const outs = group.handleMessage(m.bytes, s);
      clientMs += performance.now() - s;
      for (const { core: c, out } of outs) {
        for (const x of out.sends)
          for (const to of x.to) queue.push({ from: c.id, to, bytes: x.bytes });
        if (out.result) {
          done++;
          start(c);
        }
      }
    }
  }
  const wall = performance.now() - t0;
  return {
    wall,
    replicaUs: spent.map((x) => (x * 1000) / done),
    clientUs: (clientMs * 1000) / done,
    done,
  };
}

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
run(Math.min(OPS, 20_000)); // warm-up (JIT)
const rounds = Array.from({ length: ROUNDS }, () => run(OPS));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const primary = median(rounds.map((r) => r.replicaUs[0]!));
const backup = median(rounds.map((r) => (r.replicaUs[1]! + r.replicaUs[2]! + r.replicaUs[3]!) / 3));
const client = median(rounds.map((r) => r.clientUs));
const total = primary + 3 * backup + client;
console.log(
  `core in process, ${OPS} ops x ${ROUNDS} rounds, ${OUT} clients, median us/op: primary ${primary.toFixed(1)}, backup ${backup.toFixed(1)}, client ${client.toFixed(1)}; total ${total.toFixed(1)} (${Math.round(1e6 / total)} ops/s on one core)`,
);
console.log(
  JSON.stringify({
    corePrimaryUsPerOp: primary,
    coreBackupUsPerOp: backup,
    coreClientUsPerOp: client,
    coreTotalUsPerOp: total,
  }),
);
