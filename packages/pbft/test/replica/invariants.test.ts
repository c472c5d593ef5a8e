import { strict as assert } from 'node:assert';
import { InvariantError, MsgType, Replica } from '../../src';
import { quorum } from '../../src/constants';
import { InvariantInput, brokenInvariant } from '../../src/replica/invariants';
import { emptySlot } from '../../src/replica/slot';
import { authFor } from '../support/keys';
import { NullService } from '../support/null-service';

const N = 4;
const DIGEST = Buffer.alloc(32, 7);

function checkpointFrame(sender: number, seq: number, digest = DIGEST): Uint8Array {
  return authFor(sender, N, 1).sealMulticast({ type: MsgType.Checkpoint, seq, digest }, N);
}

/** A replica state that holds together: h = 8 with a full proof, slot 9 executed. */
function healthy(): InvariantInput {
  const slot = emptySlot(9, 0, 0);
  return {
    id: 0,
    n: N,
    K: 4,
    L: 8,
    active: true,
    lowWater: 8,
    lastCommitted: 9,
    lastExecuted: 9,
    catchUpTo: 0,
    restoredAt: undefined,
    stableDigest: DIGEST,
    stableProof: [0, 1, 2].map((s) => ({ sender: s, frame: checkpointFrame(s, 8) })),
    proofChecked: false,
    ownCheckpoints: new Map([[8, DIGEST]]),
    tableSnapshots: [8],
    log: new Map([[9, slot]]),
    certs: new Map(),
    viewChangeOut: false,
  };
}

describe('pbft replica invariants (checked after every step)', () => {
  it('hold for a consistent state', () => {
    assert.equal(brokenInvariant(healthy(), true), undefined);
  });

  it('catch h above the last committed batch, and execution two batches ahead of commit', () => {
    assert.match(brokenInvariant({ ...healthy(), lowWater: 12 }, false)!, /h <= committed/);
    assert.match(brokenInvariant({ ...healthy(), lastExecuted: 11 }, false)!, /committed \+ 1/);
  });

  it('catch tentative execution of a checkpoint batch', () => {
    const s = { ...healthy(), lastCommitted: 11, lastExecuted: 12, log: new Map() };
    assert.match(brokenInvariant(s, false)!, /tentative execution at checkpoint 12/);
  });

  it('catch a replica active in a view while its VIEW-CHANGE is out', () => {
    assert.match(brokenInvariant({ ...healthy(), viewChangeOut: true }, false)!, /VIEW-CHANGE/);
  });

  it('catch a slot above every window, and a slot filed under another number', () => {
    const far = emptySlot(40, 0, 0);
    const s = { ...healthy(), log: new Map([[40, far]]) };
    assert.match(brokenInvariant(s, true)!, /above every window/);
    assert.equal(brokenInvariant(s, false), undefined, 'a costly check');
    const misfiled = { ...healthy(), log: new Map([[10, emptySlot(11, 0, 0)]]) };
    assert.match(brokenInvariant(misfiled, true)!, /filed under 10/);
  });

  it('catch an executed slot without its batch', () => {
    const slot = emptySlot(9, 0, 0);
    slot.executed = true;
    assert.match(brokenInvariant({ ...healthy(), log: new Map([[9, slot]]) }, true)!, /executed/);
  });

  it('catch our own vote naming another digest than the slot (two digests for one view and seq)', () => {
    const slot = emptySlot(9, 0, 0);
    slot.commits.set(0, 'ab');
    assert.match(brokenInvariant({ ...healthy(), log: new Map([[9, slot]]) }, true)!, /our vote/);
  });

  it('walk only the slots above checkedThrough on a partial check; a full check finds the rest', () => {
    const slot = emptySlot(9, 0, 0);
    slot.commits.set(0, 'ab');
    const s = { ...healthy(), log: new Map([[9, slot]]) };
    assert.equal(brokenInvariant({ ...s, checkedThrough: 9 }, true), undefined);
    assert.match(brokenInvariant({ ...s, checkedThrough: 8 }, true)!, /our vote/);
    assert.match(brokenInvariant(s, true)!, /our vote/);
  });

  it('catch a stable proof short of 2f + 1 matching votes, or with a vote for another checkpoint', () => {
    const short = { ...healthy(), stableProof: healthy().stableProof.slice(0, quorum(N) - 1) };
    assert.match(brokenInvariant(short, true)!, /fewer than 2f \+ 1/);
    assert.equal(
      brokenInvariant({ ...short, restoredAt: 8 }, true),
      undefined,
      'restored: may be short',
    );
    const other = healthy();
    other.stableProof = [
      ...other.stableProof.slice(0, 2),
      { sender: 2, frame: checkpointFrame(2, 4) },
    ];
    assert.match(brokenInvariant(other, true)!, /votes for 4/);
    const twice = healthy();
    twice.stableProof = [...twice.stableProof, twice.stableProof[0]!];
    assert.match(brokenInvariant(twice, true)!, /twice/);
  });

  it('catch a kept checkpoint without its client table', () => {
    assert.match(brokenInvariant({ ...healthy(), tableSnapshots: [] }, true)!, /client table/);
  });

  it('stop the replica with a clear error, and keep it stopped', () => {
    const r = new Replica({ n: N, id: 1 }, new NullService(), authFor(1, N, 1));
    assert.doesNotThrow(() => r.tick(0));
    r.lastExecuted = 5; // a bug: execution far ahead of commit
    assert.throws(
      () => r.tick(1),
      (e: unknown) => {
        assert.ok(e instanceof InvariantError);
        assert.match(e.message, /replica 1: invariant broken: .*executed=5/);
        return true;
      },
    );
    assert.ok(r.stoppedBy instanceof InvariantError);
    r.lastExecuted = 0;
    assert.throws(() => r.tick(2), InvariantError);
  });
});
