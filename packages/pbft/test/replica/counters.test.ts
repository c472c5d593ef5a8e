import { strict as assert } from 'node:assert';
import { REPLICA_COUNTERS, Replica } from '../../src';
import { authFor } from '../support/keys';
import { NullService } from '../support/null-service';

describe('pbft replica counters, a typed set', () => {
  it('lists each counter once', () => {
    assert.equal(new Set(REPLICA_COUNTERS).size, REPLICA_COUNTERS.length);
  });

  it('counts by name, and a misspelt name does not compile (tsconfig.check.json)', () => {
    const r = new Replica({ n: 4, id: 1 }, new NullService(), authFor(1, 4, 1));
    r.handleMessage(2, Uint8Array.of(1, 2, 3), 0);
    assert.equal(r.stats.dropMalformed, 1);
    // @ts-expect-error: no counter of that name
    assert.equal(r.stats.dropMalfromed, undefined);
  });
});
