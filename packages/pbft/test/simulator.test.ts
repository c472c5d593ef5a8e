import { strict as assert } from 'node:assert';
import { SimOptions, SimResult } from '../src/testing';
import { runKvSim } from './support/sim';

/** Seeds per scenario; the whole file stays within about two minutes on two cores. */
const SEEDS = Number(process.env.PBFT_SIM_SEEDS ?? 100);

function sweep(
  name: string,
  base: number,
  opts: Partial<SimOptions>,
  check?: (results: SimResult[]) => void,
): void {
  it(`${name} (${SEEDS} seeds)`, function () {
    this.timeout(120_000);
    const failures: SimResult[] = [];
    const results: SimResult[] = [];
    let committed = 0;
    let lies = 0;
    for (let s = 0; s < SEEDS; s++) {
      const r = runKvSim(base + s, opts);
      results.push(r);
      committed += r.committedSeq;
      lies += r.lies;
      if (!r.ok) failures.push(r);
    }
    assert.deepEqual(
      failures.map((f) => f.error),
      [],
      `failing seeds replay with runKvSim(seed, opts): ${failures.map((f) => f.seed).join(', ')}`,
    );
    assert.ok(committed > 0);
    if (opts.byzantine) assert.ok(lies > 0, 'the Byzantine replicas did lie');
    check?.(results);
  });
}

function replicaStat(results: SimResult[], name: string): number {
  return results.reduce((a, r) => a + r.replicaStats.reduce((b, st) => b + (st[name] ?? 0), 0), 0);
}

describe('pbft simulator: safety and liveness over many seeds', () => {
  const small = { checkpointInterval: 4, logWindow: 8 };
  sweep('f = 1, reliable network with reordering', 1000, { replicaOptions: small });
  sweep('f = 1, one silent replica', 2000, { silent: [3], replicaOptions: small });
  sweep('f = 1, silent primary-successor and message loss 5%, duplication 5%', 3000, {
    silent: [1],
    loss: 0.05,
    duplicate: 0.05,
    replicaOptions: small,
  });
  sweep('f = 1, loss 10%, duplication 10%, delays up to 30 ms', 4000, {
    loss: 0.1,
    duplicate: 0.1,
    maxDelayMs: 30,
    replicaOptions: small,
  });
  sweep('f = 1, random partitions that heal', 5000, { partitions: true, replicaOptions: small });
  sweep('f = 1, a Byzantine backup lying in replies, prepares, commits and checkpoints', 8000, {
    byzantine: [2],
    loss: 0.02,
    replicaOptions: small,
  });
  sweep('f = 2, one Byzantine and one silent replica, 5% loss', 9000, {
    f: 2,
    byzantine: [3],
    silent: [5],
    loss: 0.05,
    replicaOptions: small,
  });
  sweep(
    'f = 1, six client ids in two processes with batched replies (REPLY-BATCH), a Byzantine backup lying in them, 5% loss and duplication',
    10000,
    {
      clients: 6,
      opsPerClient: 12,
      idsPerClientProcess: 3,
      byzantine: [2],
      loss: 0.05,
      duplicate: 0.05,
      replicaOptions: small,
    },
    (results) => assert.ok(replicaStat(results, 'replyBatchSent') > 0, 'replies were batched'),
  );
  sweep('f = 2, two silent replicas and 5% loss', 6000, {
    f: 2,
    silent: [5, 6],
    loss: 0.05,
    replicaOptions: small,
  });
  sweep('f = 2, loss, duplication and partitions, no tentative execution', 7000, {
    f: 2,
    loss: 0.05,
    duplicate: 0.05,
    partitions: true,
    replicaOptions: { ...small, tentative: false },
  });
});

describe('pbft simulator: determinism', () => {
  it('replays a seed to the same trace', () => {
    const a = runKvSim(42, { loss: 0.1, duplicate: 0.1 });
    const b = runKvSim(42, { loss: 0.1, duplicate: 0.1 });
    assert.deepEqual(a, b);
    assert.ok(a.ok, a.error);
  });
});
