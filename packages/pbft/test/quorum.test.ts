import { strict as assert } from 'node:assert';
import { maxFaulty, quorum, replyQuorum, primaryOf } from '../src/constants';

describe('pbft: quorum arithmetic (OSDI 1999, section 4)', () => {
  it('tolerates f = 1 with four replicas and f = 2 with seven', () => {
    assert.equal(maxFaulty(4), 1);
    assert.equal(maxFaulty(7), 2);
  });
  it('uses certificates of 2f + 1 and accepts results on f + 1 replies', () => {
    assert.equal(quorum(4), 3);
    assert.equal(replyQuorum(4), 2);
    assert.equal(quorum(7), 5);
    assert.equal(replyQuorum(7), 3);
  });
  it('any two quorums intersect in at least one correct replica, for any n', () => {
    for (let n = 4; n <= 31; n++) {
      const f = maxFaulty(n);
      assert.ok(2 * quorum(n) - n >= f + 1, `n=${n}`);
      assert.ok(quorum(n) <= n - f, `n=${n}: a quorum must be reachable with f silent`);
    }
  });
  it('rotates the primary as v mod n', () => {
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5].map((v) => primaryOf(v, 4)),
      [0, 1, 2, 3, 0, 1],
    );
  });
  it('refuses groups too small to tolerate a fault', () => {
    assert.throws(() => maxFaulty(3), RangeError);
  });
});
