import { strict as assert } from 'node:assert';
import { PageStore } from '@bfs/page-store';
import { StateWindow } from '../../src/service/window';
import { LockStore, decodeLockTable, encodeLockTable } from '../../src/locks/lock-store';
import { END_OF_FILE, LockTable, NlmStat } from '../../src/locks/lock-table';
import {
  LOCK_REGION_BYTES,
  MAX_CALLER_NAME_BYTES,
  MAX_COOKIE_BYTES,
  MAX_HOST_BYTES,
  MAX_LEASES,
  MAX_LOCKS,
  MAX_LOCK_FH_BYTES,
  MAX_OWNER_HANDLE_BYTES,
  MAX_SHARES,
  MAX_WAITERS,
} from '../../src/locks/limits';

function sample(): LockTable {
  const t = new LockTable();
  const a = { relay: 3, callerName: 'alpha', svid: -7, oh: Buffer.from('oh-a') };
  const b = { relay: 4, callerName: 'beta', svid: 2, oh: Buffer.from('oh-b') };
  t.renew(3, 100);
  t.renew(4, 101);
  t.lock({ fh: 'aa', owner: a, exclusive: true, start: 0n, end: END_OF_FILE });
  t.lock({ fh: 'bb', owner: a, exclusive: false, start: 2n ** 63n, end: 2n ** 63n + 5n });
  t.lock(
    { fh: 'aa', owner: b, exclusive: false, start: 5n, end: 6n },
    { cookie: Buffer.from([1, 2]), host: '10.0.0.9', version: 4 },
  );
  t.share({ fh: 'bb', relay: 4, callerName: 'beta', oh: b.oh, mode: 2, access: 1 });
  return t;
}

describe('lock store: the lock table in the page store', () => {
  it('encodes deterministically and decodes to the same table', () => {
    const t = sample();
    const bytes = encodeLockTable(t);
    assert.deepEqual(encodeLockTable(sample()), bytes, 'same calls, same bytes');
    const back = decodeLockTable(bytes);
    assert.deepEqual(encodeLockTable(back), bytes);
    assert.equal(back.size, t.size);
    assert.equal(back.test(back.waiters[0]).stat, NlmStat.DENIED);
  });

  it('a region of zeros is the empty table; bytes that are no table are refused', () => {
    assert.equal(decodeLockTable(new Uint8Array(64)).size, 0);
    const bad = encodeLockTable(sample());
    bad[7] = 99; // format
    assert.throws(() => decodeLockTable(bad));
  });

  it(`a table at every limit with the longest names fits LOCK_REGION_BYTES (${LOCK_REGION_BYTES})`, () => {
    const t = new LockTable();
    const long = (n: number, c: number) => new Uint8Array(n).fill(c);
    const name = 'n'.repeat(MAX_CALLER_NAME_BYTES);
    const fh = Buffer.from(long(MAX_LOCK_FH_BYTES, 1)).toString('hex');
    for (let i = 0; i < MAX_LEASES; i++) t.leases.set(i, 0);
    for (let i = 0; i < MAX_LOCKS; i++) {
      const owner = { relay: i, callerName: name, svid: i, oh: long(MAX_OWNER_HANDLE_BYTES, 2) };
      t.files.set(`${fh.slice(0, -8)}${i.toString(16).padStart(8, '0')}`, [
        { fh, owner, exclusive: true, start: 0n, end: END_OF_FILE },
      ]);
    }
    for (let i = 0; i < MAX_WAITERS; i++) {
      const owner = { relay: i, callerName: name, svid: i, oh: long(MAX_OWNER_HANDLE_BYTES, 3) };
      t.waiters.push({
        fh,
        owner,
        exclusive: true,
        start: 0n,
        end: END_OF_FILE,
        id: i,
        cookie: long(MAX_COOKIE_BYTES, 4),
        host: 'h'.repeat(MAX_HOST_BYTES),
        version: 4,
        handle: long(MAX_LOCK_FH_BYTES, 6),
        granted: false,
      });
    }
    for (let i = 0; i < MAX_SHARES; i++)
      t.shares.push({
        fh,
        relay: i,
        callerName: name,
        oh: long(MAX_OWNER_HANDLE_BYTES, 5),
        mode: 3,
        access: 3,
      });
    const bytes = encodeLockTable(t);
    assert.ok(bytes.length <= LOCK_REGION_BYTES, `${bytes.length} bytes`);
    assert.equal(decodeLockTable(bytes).size, MAX_LOCKS);
  });

  it('writes back only the pages whose bytes changed, and rereads the pages after drop()', () => {
    const state = new PageStore({ size: 4 * LOCK_REGION_BYTES });
    const region = new StateWindow(state, 3 * LOCK_REGION_BYTES, LOCK_REGION_BYTES);
    const store = new LockStore(region);
    const owner = { relay: 1, callerName: 'c', svid: 1, oh: Buffer.from('o') };
    for (let i = 0n; i < 200n; i++)
      store.table.lock({ fh: 'aa', owner, exclusive: true, start: 2n * i, end: 2n * i + 1n });
    store.save();
    state.checkpoint(1);
    store.table.unlock({ fh: 'aa', owner, start: 398n, end: 399n });
    store.save();
    assert.ok(state.dirtyPageCount <= 2, `${state.dirtyPageCount} pages written for one unlock`);
    store.drop();
    assert.equal(store.table.size, 199);
    store.table.release(1);
    store.save();
    store.drop();
    assert.equal(store.table.size, 0, 'a shorter encoding clears the old tail');
  });
});
