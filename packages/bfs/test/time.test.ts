import { strict as assert } from 'node:assert';
import { agreeTime, checkProposedTime, MAX_CLOCK_SKEW_NS, wallClockTime } from '../src';

describe('bfs: agreed time for operations', () => {
  it('takes the proposal when it is after the last chosen time', () => {
    assert.deepEqual(
      agreeTime({ seconds: 10, nseconds: 5 }, { seconds: 9, nseconds: 999_999_999 }),
      {
        seconds: 10,
        nseconds: 5,
      },
    );
  });
  it('takes last + 1 ns when the proposal is not after it, carrying into seconds', () => {
    assert.deepEqual(
      agreeTime({ seconds: 5, nseconds: 0 }, { seconds: 9, nseconds: 999_999_999 }),
      {
        seconds: 10,
        nseconds: 0,
      },
    );
    assert.deepEqual(agreeTime({ seconds: 9, nseconds: 3 }, { seconds: 9, nseconds: 3 }), {
      seconds: 9,
      nseconds: 4,
    });
  });
  it('accepts proposals within the skew bound either way and rejects ones beyond it', () => {
    const local = { seconds: 1000, nseconds: 0 };
    const skewS = Number(MAX_CLOCK_SKEW_NS / 1_000_000_000n);
    assert.deepEqual(checkProposedTime({ seconds: 1000 + skewS, nseconds: 0 }, local), {
      ok: true,
    });
    assert.deepEqual(checkProposedTime({ seconds: 1000 - skewS, nseconds: 0 }, local), {
      ok: true,
    });
    const ahead = checkProposedTime({ seconds: 1000 + skewS, nseconds: 1 }, local);
    assert.equal(ahead.ok, false);
    const behind = checkProposedTime({ seconds: 1000 - skewS - 1, nseconds: 0 }, local);
    assert.equal(behind.ok, false);
    assert.equal(checkProposedTime({ seconds: 1000, nseconds: 0 }, local, 0n).ok, true);
  });
  it('rejects malformed proposals', () => {
    const local = { seconds: 1000, nseconds: 0 };
    assert.equal(checkProposedTime({ seconds: 1000, nseconds: 1e9 }, local).ok, false);
    assert.equal(checkProposedTime({ seconds: -1, nseconds: 0 }, local).ok, false);
    assert.equal(checkProposedTime({ seconds: 1.5, nseconds: 0 }, local).ok, false);
  });
  it('converts wall-clock milliseconds to nfstime', () => {
    assert.deepEqual(wallClockTime(1_700_000_000_123), {
      seconds: 1_700_000_000,
      nseconds: 123_000_000,
    });
  });
});
