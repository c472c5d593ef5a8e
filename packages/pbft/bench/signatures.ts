/**
 * The cost of request signatures in the common case (docs/pbft.md, "Defenses"): fresh clusters
 * with signatures on and off, interleaved (on, off, on, off, ...), each measured for 0/0
 * throughput with many outstanding requests and for sequential read-write 0/0 latency. The
 * host is shared, so only the ratio of the medians within one run means anything.
 *
 * Environment: BENCH_SIGNATURE_ROUNDS (pairs of clusters, default 3).
 */
import { Client, FIRST_CLIENT_ID, TcpTransport } from '../src';
import { authFor, connectionKeysFor, requestSignerFor } from '../test/support/keys';
import { nullOp } from '../test/support/null-service';
import { startNullReplicas } from '../test/support/processes';
import { keepOutstandingFor, latency, pct, r3 } from './measure';

const N = 4;
const ROUNDS = Math.max(1, Number(process.env.BENCH_SIGNATURE_ROUNDS ?? 3));
/** Warm-up of each fresh cluster before its window (throughput ramps up over 4-5 s). */
const WARMUP_SECONDS = 5;

interface Figures {
  opsPerSec: number;
  rwP50Ms: number;
  cpuUsPerOpPrimary: number;
  cpuUsPerOpBackup: number;
  cpuUsPerOpClient: number;
}

function cpuUs(stats: string[]): number[] {
  return stats.map((s) => {
    const c = (JSON.parse(s) as { cpu: { user: number; system: number } }).cpu;
    return c.user + c.system;
  });
}

async function measureOnce(
  signed: boolean,
  outstanding: number,
  seconds: number,
  ops: number,
): Promise<Figures> {
  const clients = outstanding + 1;
  const cluster = await startNullReplicas(N, clients, () => ({ requestSignatures: signed }));
  const peers = new Map([...cluster.ports].map(([id, port]) => [id, { host: '127.0.0.1', port }]));
  const signer = signed ? requestSignerFor() : undefined;
  const open = async (ids: number[]) =>
    new Client({
      n: N,
      transport: await TcpTransport.open({ ids, connectionKeys: connectionKeysFor(ids), peers }),
      auth: (id) => authFor(id, N, clients),
      signer,
    });
  try {
    const ids = Array.from({ length: outstanding }, (_, i) => FIRST_CLIENT_ID + 1 + i);
    const many = await open(ids);
    const op = nullOp(0, 0);
    const load = (s: number): Promise<number> =>
      keepOutstandingFor(ids.length, () => many.invoke(op), s);
    await load(WARMUP_SECONDS);
    const before = cpuUs(await cluster.snapshot());
    const clientBefore = process.cpuUsage();
    const t0 = performance.now();
    const done = await load(seconds);
    const secs = (performance.now() - t0) / 1000;
    const client = process.cpuUsage(clientBefore);
    const after = cpuUs(await cluster.snapshot());
    await many.close();
    const perOp = after.map((a, i) => (a - before[i]!) / done);
    const one = await open([FIRST_CLIENT_ID]);
    const rw = await latency(() => one.invoke(op), ops);
    await one.close();
    return {
      opsPerSec: Math.round(done / secs),
      rwP50Ms: rw.p50,
      cpuUsPerOpPrimary: r3(perOp[0]!),
      cpuUsPerOpBackup: r3((perOp[1]! + perOp[2]! + perOp[3]!) / 3),
      cpuUsPerOpClient: r3((client.user + client.system) / done),
    };
  } finally {
    await cluster.stop();
  }
}

/** Interleaved rounds, signatures on then off; medians of each figure and their ratios. */
export async function signatureSection(
  outstanding: number,
  seconds: number,
  ops: number,
): Promise<Record<string, number>> {
  const runs: Record<'on' | 'off', Figures[]> = { on: [], off: [] };
  for (let r = 0; r < ROUNDS; r++)
    for (const setting of ['on', 'off'] as const) {
      const f = await measureOnce(setting === 'on', outstanding, seconds, ops);
      runs[setting].push(f);
      console.log(
        `signatures ${setting} (round ${r + 1}/${ROUNDS}): ${f.opsPerSec} ops/s, sequential read-write 0/0 p50 ${f.rwP50Ms} ms, CPU per op primary ${f.cpuUsPerOpPrimary} us, backups ${f.cpuUsPerOpBackup} us, client process ${f.cpuUsPerOpClient} us`,
      );
    }
  const out: Record<string, number> = {};
  for (const k of Object.keys(runs.on[0]!) as (keyof Figures)[]) {
    const on = pct(
      runs.on.map((f) => f[k]),
      50,
    );
    const off = pct(
      runs.off.map((f) => f[k]),
      50,
    );
    const key = k.charAt(0).toUpperCase() + k.slice(1);
    out[`signaturesOn${key}`] = on;
    out[`signaturesOff${key}`] = off;
    out[`signaturesOnVsOff${key}`] = r3(on / off);
  }
  console.log(
    `request signatures, medians of ${ROUNDS} interleaved rounds: throughput ${out.signaturesOnOpsPerSec} ops/s on, ${out.signaturesOffOpsPerSec} off (${out.signaturesOnVsOffOpsPerSec}x); read-write p50 ${out.signaturesOnRwP50Ms} ms on, ${out.signaturesOffRwP50Ms} off (${out.signaturesOnVsOffRwP50Ms}x); primary CPU per op ${out.signaturesOnCpuUsPerOpPrimary} us on, ${out.signaturesOffCpuUsPerOpPrimary} off; backups ${out.signaturesOnCpuUsPerOpBackup} us on, ${out.signaturesOffCpuUsPerOpBackup} off; client ${out.signaturesOnCpuUsPerOpClient} us on, ${out.signaturesOffCpuUsPerOpClient} off`,
  );
  return out;
}
