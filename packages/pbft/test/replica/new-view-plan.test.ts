import { strict as assert } from 'node:assert';
import { CheckedViewChange, NULL_DIGEST, planNewView } from '../../src/replica/new-view';

const d = (x: number): Buffer => Buffer.alloc(32, x);

function vc(sender: number, stable: number, certs: [number, number, number][]): CheckedViewChange {
  return {
    sender,
    view: 5,
    stable,
    stableDigest: d(100 + stable),
    proof: [Uint8Array.of(stable)],
    certs: new Map(certs.map(([seq, view, digest]) => [seq, { view, digest: d(digest) }])),
    frame: Uint8Array.of(sender),
  };
}

describe('pbft NEW-VIEW planning (OSDI 1999 section 4.4), a pure function', () => {
  it('starts from the latest stable checkpoint among the VIEW-CHANGEs, with its proof', () => {
    const plan = planNewView([vc(0, 0, []), vc(1, 8, []), vc(2, 4, [])]);
    assert.equal(plan.minS, 8);
    assert.deepEqual(plan.stableDigest, d(108));
    assert.deepEqual(plan.proof, [Uint8Array.of(8)]);
    assert.deepEqual(plan.slots, []);
  });

  it('re-proposes the certificate of the highest view for each sequence number', () => {
    const plan = planNewView([
      vc(0, 0, [[1, 1, 11]]),
      vc(1, 0, [[1, 3, 33]]),
      vc(2, 0, [[1, 2, 22]]),
    ]);
    assert.equal(plan.slots.length, 1);
    assert.deepEqual(plan.slots[0]!.digest, d(33));
    assert.deepEqual(
      plan.slots[0]!.sources,
      [1],
      'only the replica that prepared it holds the body',
    );
  });

  it('fills the gaps up to max-s with null requests', () => {
    const plan = planNewView([vc(0, 0, [[3, 1, 11]]), vc(1, 0, []), vc(2, 0, [[3, 1, 11]])]);
    assert.deepEqual(
      plan.slots.map((s) => [s.seq, s.digest.equals(NULL_DIGEST), s.sources]),
      [
        [1, true, []],
        [2, true, []],
        [3, false, [0, 2]],
      ],
    );
  });

  it('ignores certificates at or below min-s', () => {
    const plan = planNewView([vc(0, 4, [[5, 1, 11]]), vc(1, 0, [[2, 1, 22]]), vc(2, 0, [])]);
    assert.deepEqual(
      plan.slots.map((s) => s.seq),
      [5],
    );
  });
});
