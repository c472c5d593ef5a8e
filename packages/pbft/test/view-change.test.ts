import { strict as assert } from 'node:assert';
import { SimOptions, SimResult } from '../src/testing';
import { runKvSim } from './support/sim';

/** Seeds per view-change scenario (`PBFT_VC_SEEDS` overrides). */
const SEEDS = Number(process.env.PBFT_VC_SEEDS ?? 40);

/** `alsoSeen`: a replica counter that must be non-zero in some run (a path the sweep must take). */
function sweep(name: string, base: number, opts: Partial<SimOptions>, alsoSeen?: string): void {
  it(`${name} (${SEEDS} seeds)`, function () {
    this.timeout(120_000);
    const failures: SimResult[] = [];
    let viewChanges = 0;
    let seen = 0;
    for (let s = 0; s < SEEDS; s++) {
      const r = runKvSim(base + s, opts);
      viewChanges += r.replicaStats.reduce((a, st) => a + (st.newViewAccepted ?? 0), 0);
      if (alsoSeen) seen += r.replicaStats.reduce((a, st) => a + (st[alsoSeen] ?? 0), 0);
      if (!r.ok) failures.push(r);
    }
    if (alsoSeen) assert.ok(seen > 0, `some run counted ${alsoSeen}`);
    assert.deepEqual(
      failures.map((f) => f.error),
      [],
      `failing seeds replay with runKvSim(seed, opts): ${failures.map((f) => f.seed).join(', ')}`,
    );
    assert.ok(viewChanges > 0, 'some runs changed views');
  });
}

describe('pbft view changes: a primary silenced at a random time', () => {
  const small = { checkpointInterval: 4, logWindow: 8, viewChangeTimeoutMs: 300 };
  sweep('f = 1, primary crashes, reliable network', 11000, {
    crashes: [{ replica: 0, withinMs: 1500 }],
    replicaOptions: small,
    maxTimeMs: 60_000,
  });
  // Lost pre-prepares leave some replicas without the body of a re-proposed batch: they fetch it.
  sweep(
    'f = 1, primary crashes, 5% loss and duplication, delays up to 20 ms; re-proposed batches missed are fetched (BATCH-FETCH)',
    12000,
    {
      crashes: [{ replica: 0, withinMs: 1500 }],
      loss: 0.05,
      duplicate: 0.05,
      maxDelayMs: 20,
      replicaOptions: small,
      maxTimeMs: 60_000,
    },
    'batchBodyFilled',
  );
  // Null batches whenever the primary has been idle 50 ms, interleaved with everything else.
  sweep(
    'f = 1, primary crashes, 5% loss and duplication; idle checkpoints after 50 ms of quiet',
    14000,
    {
      crashes: [{ replica: 0, withinMs: 1500 }],
      loss: 0.05,
      duplicate: 0.05,
      maxDelayMs: 20,
      replicaOptions: { ...small, idleCheckpointMs: 50 },
      maxTimeMs: 60_000,
    },
    'idleNullBatch',
  );
  sweep('f = 2, primary and then the next primary crash, 5% loss', 13000, {
    f: 2,
    crashes: [
      { replica: 0, withinMs: 1500 },
      { replica: 1, withinMs: 4000 },
    ],
    loss: 0.05,
    replicaOptions: small,
    maxTimeMs: 60_000,
  });
});
