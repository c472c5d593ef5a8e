import { strict as assert } from 'node:assert';
import { treeLevels, DEFAULT_FANOUT } from '../src/constants';

describe('page-store: partition tree shape', () => {
  it('needs one interior level for up to fanout pages', () => {
    assert.equal(treeLevels(1), 1);
    assert.equal(treeLevels(DEFAULT_FANOUT), 1);
  });
  it('adds a level each time the page count passes a power of the fanout', () => {
    assert.equal(treeLevels(DEFAULT_FANOUT + 1), 2);
    assert.equal(treeLevels(DEFAULT_FANOUT ** 2), 2);
    assert.equal(treeLevels(DEFAULT_FANOUT ** 2 + 1), 3);
  });
  it('covers 64 GiB of 4 KiB pages with the original four levels', () => {
    assert.equal(treeLevels((64 * 2 ** 30) / 4096), 3);
    assert.equal(treeLevels(2 ** 32), 4);
  });
  it('rejects nonsense shapes', () => {
    assert.throws(() => treeLevels(0), RangeError);
    assert.throws(() => treeLevels(10, 1), RangeError);
  });
});
