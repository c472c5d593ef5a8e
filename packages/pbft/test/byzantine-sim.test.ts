import { strict as assert } from 'node:assert';
import { SimOptions, SimResult } from '../src/testing';
import { LOSSY, SMALL_LOG, runKvSim } from './support/sim';
import { KvReference, SKEW_MS } from './support/kv';

/**
 * Byzantine behaviours in the simulator, each over many seeds and combined with message loss,
 * duplication and reordering. `PBFT_BYZ_SEEDS` scales every sweep (default 1 = the counts below).
 */
const SCALE = Number(process.env.PBFT_BYZ_SEEDS ?? 1);

interface Sweep {
  results: SimResult[];
  /** Sum of a replica counter over every run, over `replicas` (default all). */
  stat(name: string, replicas?: number[]): number;
  clientStat(name: string): number;
  lies: number;
}

/**
 * Runs `seeds` seeds from `base` (options per run when stateful, e.g. a reference machine); any
 * failing seed fails the test with its error and seed.
 */
function sweep(
  base: number,
  seeds: number,
  opts: Partial<SimOptions> | (() => Partial<SimOptions>),
): Sweep {
  const results: SimResult[] = [];
  const n = Math.max(1, Math.round(seeds * SCALE));
  for (let s = 0; s < n; s++)
    results.push(runKvSim(base + s, { ...LOSSY, ...(typeof opts === 'function' ? opts() : opts) }));
  const failures = results.filter((r) => !r.ok);
  assert.deepEqual(
    failures.map((f) => f.error),
    [],
    `failing seeds replay with runKvSim(seed, opts): ${failures.map((f) => f.seed).join(', ')}`,
  );
  const sum = (xs: Record<string, number>[], name: string) =>
    xs.reduce((a, st) => a + (st[name] ?? 0), 0);
  return {
    results,
    stat: (name, replicas) =>
      results.reduce(
        (a, r) =>
          a +
          sum(
            r.replicaStats.filter((_, i) => !replicas || replicas.includes(i)),
            name,
          ),
        0,
      ),
    clientStat: (name) => results.reduce((a, r) => a + sum(r.clientStats, name), 0),
    lies: results.reduce((a, r) => a + r.lies, 0),
  };
}

describe('pbft simulator: Byzantine primaries', function () {
  this.timeout(120_000);

  it("OSDI'99 4.2: a backup accepts at most one pre-prepare per (view, seq): an equivocating primary of view 0 cannot make two digests commit; a view change restores liveness (f = 1)", () => {
    const s = sweep(21000, 30, { byzantine: [{ replica: 0, mode: 'equivocate' }] });
    assert.ok(s.lies > 0, 'the primary equivocated');
    assert.ok(s.stat('dropConflictingPrePrepare', [1, 2, 3]) > 0, 'backups saw both versions');
    assert.ok(s.stat('newViewAccepted', [1, 2, 3]) > 0, 'view changes replaced the primary');
  });

  it("OSDI'99 4.2, 4.4: equivocating primaries of views 0 and 1 in turn (f = 2)", () => {
    const s = sweep(22000, 4, {
      f: 2,
      byzantine: [
        { replica: 0, mode: 'equivocate' },
        { replica: 1, mode: 'equivocate' },
      ],
    });
    assert.ok(s.stat('newViewAccepted', [2, 3, 4, 5, 6]) > 0);
  });

  it("BFS 4.2 / OSDI'99 4.6: backups prepare only non-deterministic values their checker accepts: a primary proposing a far-future time is replaced and every request completes", () => {
    // The agreed times the reference machine sees: none may be the primary's far-future value.
    let latest = 0;
    const withReference = (): Partial<SimOptions> => {
      const reference = new KvReference();
      const apply = reference.apply.bind(reference);
      reference.apply = (op, client, nondet) => {
        if (nondet.length === 8) latest = Math.max(latest, Buffer.from(nondet).readDoubleBE(0));
        return apply(op, client, nondet);
      };
      return { byzantine: [{ replica: 0, mode: 'bad-nondet' }], reference };
    };
    const s = sweep(23000, 30, withReference);
    assert.ok(s.stat('dropNondetRejected', [1, 2, 3]) > 0, 'backups refused the proposals');
    assert.ok(s.stat('newViewAccepted', [1, 2, 3]) > 0, 'a view change followed');
    assert.ok(latest > 0 && latest <= 60_000 + SKEW_MS, `agreed time ${latest} is sane`);
  });

  it("OSDI'99 4.6: a primary with bad proposals and an equivocating next primary (f = 2)", () => {
    const s = sweep(24000, 4, {
      f: 2,
      byzantine: [
        { replica: 0, mode: 'bad-nondet' },
        { replica: 1, mode: 'equivocate' },
      ],
    });
    assert.ok(s.stat('dropNondetRejected', [2, 3, 4, 5, 6]) > 0);
  });
});

describe('pbft simulator: replays', function () {
  this.timeout(120_000);

  it("TOCS'02 2.1, 4.1: old frames of earlier views and sequence numbers and old client requests, replayed by the network, never execute twice (with a primary crash)", () => {
    const s = sweep(25000, 30, { replay: 0.2, crashes: [{ replica: 0, withinMs: 1500 }] });
    assert.ok(s.lies > 0, 'the network replayed frames');
    assert.ok(s.stat('dropOldTimestamp') > 0, 'replayed client requests were recognised as old');
    assert.ok(s.stat('dropWrongView') > 0, 'frames of the old view were dropped');
  });

  it("TOCS'02 4.1: a replica re-sending its own and others' old frames (the primary, then a backup) changes nothing", () => {
    const p = sweep(26000, 20, { byzantine: [{ replica: 0, mode: 'replay' }] });
    const b = sweep(26100, 20, { byzantine: [{ replica: 2, mode: 'replay' }] });
    assert.ok(p.lies > 0 && b.lies > 0, 'old frames were replayed');
    assert.ok(p.stat('dupPrePrepare', [1, 2, 3]) + p.stat('dropOutsideWaterMarks') > 0);
  });

  it("TOCS'02 4.1: replaying replica and network replays with a silent replica (f = 2)", () => {
    const s = sweep(27000, 4, {
      f: 2,
      replay: 0.1,
      byzantine: [{ replica: 3, mode: 'replay' }],
      silent: [5],
    });
    assert.ok(s.lies > 0);
  });
});

describe('pbft simulator: impersonation', function () {
  this.timeout(120_000);

  for (const replica of [2, 0]) {
    it(`OSDI'99 4.1: frames claiming another replica's or a client's id but MAC'd with the sender's own keys are dropped by every correct receiver (impersonator: ${replica === 0 ? 'the primary' : 'a backup'})`, () => {
      const s = sweep(28000 + replica * 100, 20, {
        byzantine: [{ replica, mode: 'impersonate' }],
      });
      assert.ok(s.lies > 0, 'frames were forged');
      for (const r of [0, 1, 2, 3].filter((i) => i !== replica))
        assert.ok(s.stat('dropBadMac', [r]) > 0, `replica ${r} dropped forged frames`);
      assert.ok(s.clientStat('dropBadMac') > 0, 'clients dropped forged replies');
    });
  }

  it("OSDI'99 4.1: a REPLY-BATCH claiming another replica's id, MAC'd with the impersonator's key, is dropped whole by the client process", () => {
    const s = sweep(28500, 20, {
      clients: 6,
      idsPerClientProcess: 3,
      byzantine: [{ replica: 1, mode: 'impersonate' }],
    });
    assert.ok(s.stat('replyBatchSent', [0, 2, 3]) > 0, 'replies were batched');
    assert.ok(s.clientStat('dropReplyBatchBadMac') > 0, 'client processes dropped forged batches');
  });
});

describe('pbft simulator: Twins (Bano et al.)', function () {
  this.timeout(120_000);

  it('two instances of the primary sharing identity and keys, each talking to part of the network, count as one fault: safety and liveness hold (f = 1)', () => {
    const s = sweep(29000, 40, { byzantine: [{ replica: 0, mode: 'twins' }] });
    assert.ok(s.stat('newViewAccepted', [1, 2, 3]) > 0);
  });

  it('twins of a backup (f = 1)', () => {
    sweep(29100, 30, { byzantine: [{ replica: 2, mode: 'twins' }] });
  });

  it('twins of the primaries of views 0 and 1 (f = 2)', () => {
    sweep(29200, 4, {
      f: 2,
      byzantine: [
        { replica: 0, mode: 'twins' },
        { replica: 1, mode: 'twins' },
      ],
    });
  });

  it('replays a twins seed to the same trace', () => {
    const o = { ...LOSSY, byzantine: [{ replica: 0, mode: 'twins' as const }] };
    assert.deepEqual(runKvSim(29300, o), runKvSim(29300, o));
  });
});

describe('pbft simulator: a replica corrupting its own state', function () {
  this.timeout(120_000);

  it("OSDI'99 4.3: a replica whose pages are corrupted disagrees on its checkpoint digest (counted), clients still get the reference results and correct replicas agree on every stable checkpoint; state transfer repairs it", () => {
    const s = sweep(30000, 30, {
      // Damage early enough that the run (about 1.5 s of virtual time) leaves room to repair it.
      byzantine: [{ replica: 2, mode: 'corrupt-state', corruptions: 3, withinMs: 600 }],
    });
    assert.ok(s.lies > 0, 'pages were corrupted');
    assert.ok(s.stat('checkpointDigestMismatch', [2]) > 0, 'the corrupt replica noticed');
    assert.ok(s.stat('stateTransferDone', [2]) > 0, 'it fetched the right pages');
    for (const r of s.results) {
      // The simulator checked the correct replicas agree on every stable checkpoint; the
      // repaired replica's last stable state is theirs.
      const own = r.replicaEnd[2];
      assert.ok(
        own && own.stable > 0,
        `seed ${r.seed}: the corrupt replica has a stable checkpoint`,
      );
      assert.equal(
        own.stableDigest,
        r.stableDigests[own.stable] ?? r.checkpointDigests[own.stable],
        `seed ${r.seed}: replica 2's stable checkpoint ${own.stable} is the correct replicas' state`,
      );
      // And it kept up: without repair it would stay at its last checkpoint before the damage.
      const ahead = Math.max(...r.replicaEnd.map((x) => x?.stable ?? 0));
      assert.ok(
        own.stable >= ahead - SMALL_LOG.checkpointInterval,
        `seed ${r.seed}: replica 2 stable at ${own.stable}, the others at ${ahead}`,
      );
    }
  });
});
