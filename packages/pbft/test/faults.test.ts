import { strict as assert } from 'node:assert';
import { FAULT_KINDS, type FaultCounts, type FaultKind, FaultLedger } from '../src';
import { type SimOptions } from '../src/testing';
import { runKvSim } from './support/sim';

/** Sums kind over what `observers` saw from `target`. */
function seen(of: FaultCounts[][], observers: number[], target: number, kind: FaultKind): number {
  return observers.reduce((a, o) => a + (of[o]?.[target]?.[kind] ?? 0), 0);
}

const small: Partial<SimOptions> = {
  replicaOptions: { checkpointInterval: 4, logWindow: 8, viewChangeTimeoutMs: 300 },
  maxTimeMs: 60_000,
};

describe('fault attribution in the cores (FaultLedger)', function () {
  this.timeout(60_000);

  it('counts by sender, for replicas 0 .. n - 1 only', () => {
    const l = new FaultLedger(4);
    l.note(2, 'wrongReply');
    l.note(2, 'wrongReply', 2);
    l.note(4, 'badMac');
    l.note(-1, 'badMac');
    l.note(1.5, 'badMac');
    const s = l.snapshot();
    assert.equal(s.length, 4);
    assert.equal(s[2]!.wrongReply, 3);
    assert.deepEqual(
      s.map((c) => FAULT_KINDS.reduce((a, k) => a + c[k], 0)),
      [0, 0, 3, 0],
    );
    s[2]!.wrongReply = 99;
    assert.equal(l.snapshot()[2]!.wrongReply, 3, 'a snapshot is a copy');
  });

  it('a lying backup: the clients count its wrong replies, the others its mismatching digests; no correct replica is blamed', () => {
    for (let seed = 0; seed < 5; seed++) {
      const r = runKvSim(31000 + seed, { ...small, byzantine: [{ replica: 2, mode: 'lie' }] });
      assert.ok(r.ok, r.error);
      const clients = r.clientFaults.map((_, i) => i);
      const honest = [0, 1, 3];
      assert.ok(seen(r.clientFaults, clients, 2, 'wrongReply') > 0, `seed ${seed}: wrong replies`);
      for (const o of honest)
        assert.ok(
          seen(r.replicaFaults, [o], 2, 'digestMismatch') > 0,
          `seed ${seed}: replica ${o}`,
        );
      for (const h of honest)
        for (const k of FAULT_KINDS) {
          assert.equal(
            seen(r.clientFaults, clients, h, k),
            0,
            `seed ${seed}: clients blame ${h} ${k}`,
          );
          assert.equal(
            seen(r.replicaFaults, honest, h, k),
            0,
            `seed ${seed}: replicas blame ${h} ${k}`,
          );
        }
    }
  });

  it('a primary proposing bad non-deterministic values is counted as rejected proposals', () => {
    const r = runKvSim(31100, { ...small, byzantine: [{ replica: 0, mode: 'bad-nondet' }] });
    assert.ok(r.ok, r.error);
    assert.ok(seen(r.replicaFaults, [1, 2, 3], 0, 'rejectedProposal') > 0);
  });

  it('an equivocating primary is counted as equivocating', () => {
    let total = 0;
    for (let seed = 0; seed < 5; seed++) {
      const r = runKvSim(31200 + seed, {
        ...small,
        byzantine: [{ replica: 0, mode: 'equivocate' }],
      });
      assert.ok(r.ok, r.error);
      total += seen(r.replicaFaults, [1, 2, 3], 0, 'equivocation');
    }
    assert.ok(total > 0);
  });

  it('an impersonator is blamed for the bad MACs, not the replica it claims to be', () => {
    const r = runKvSim(31300, { ...small, byzantine: [{ replica: 2, mode: 'impersonate' }] });
    assert.ok(r.ok, r.error);
    assert.ok(seen(r.replicaFaults, [0, 1, 3], 2, 'badMac') > 0, 'replicas blame the impersonator');
    for (const h of [0, 1, 3])
      assert.equal(seen(r.replicaFaults, [0, 1, 3], h, 'badMac'), 0, `replica ${h} not blamed`);
  });
});
