import { SimOptions, Simulator, SimResult } from '../../src/testing';
import { KvReference, KvService, KEYS, addOp, readOp } from './kv';

/** Small checkpoint interval and log window and a short view-change timeout: runs reach them. */
export const SMALL_LOG = { checkpointInterval: 4, logWindow: 8, viewChangeTimeoutMs: 300 };

/** The Byzantine and attack sweeps' network: 3% loss and duplication, delays up to 20 ms. */
export const LOSSY: Partial<SimOptions> = {
  loss: 0.03,
  duplicate: 0.03,
  maxDelayMs: 20,
  replicaOptions: SMALL_LOG,
  maxTimeMs: 60_000,
};

/** A simulator run over the counter service; `overrides` adjust faults and sizes. */
export function runKvSim(seed: number, overrides: Partial<SimOptions> = {}): SimResult {
  const readShare = overrides.makeOp ? 0 : 0.25;
  return new Simulator({
    seed,
    f: 1,
    clients: 3,
    opsPerClient: 20,
    makeService: (_replica, restored) => new KvService(restored),
    reference: new KvReference(),
    makeOp: (rand) => {
      const key = Math.floor(rand() * KEYS);
      if (rand() < readShare) return { op: readOp(key), readOnly: true };
      // One write in ten is large enough to travel separately from its pre-prepare.
      const padding = rand() < 0.1 ? 2000 : 0;
      return { op: addOp(key, 1 + Math.floor(rand() * 100), padding), readOnly: false };
    },
    ...overrides,
  }).run();
}
