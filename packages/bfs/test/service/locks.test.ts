import { strict as assert } from 'node:assert';
import { PageStore } from '@bfs/page-store';
import { RpcError } from 'nfs-server-ts';
import { BfsService, encodeTime } from '../../src/service/bfs-service';
import { OpKind, decodeResult, encodeOp } from '../../src/service/op';
import {
  LockProc,
  type NlmLock,
  decodeGrants,
  decodeStat,
  decodeTestResult,
  encodeLockArgs,
} from '../../src/locks/lock-op';
import { NlmStat } from '../../src/locks/lock-table';
import { encodeLockTable } from '../../src/locks/lock-store';
import { LEASE_PERIOD_S } from '../../src/locks/limits';
import { body, rootHandle } from './helpers';

const STATE = 64 * 2 ** 20;
const CRED = { uid: 1000, gid: 1000, gids: [1000] };

function lockOp(procedure: LockProc, args: Uint8Array): Uint8Array {
  return encodeOp({
    kind: OpKind.Lock,
    version: 4,
    procedure,
    cred: CRED,
    readOnlyExport: false,
    args,
  });
}

/** A lock service: every call at agreed second `now` from PBFT client `client`. */
function harness(svc = new BfsService(new PageStore({ size: STATE }))) {
  const fh = rootHandle(svc);
  const lock = (svid: number, offset: number, length: number, exclusive = true): NlmLock => ({
    fh,
    callerName: `host${svid}`,
    svid,
    oh: Buffer.from(`${svid}@host`),
    exclusive,
    offset: BigInt(offset),
    length: BigInt(length),
  });
  const run = (proc: LockProc, args: Uint8Array, now = 1000, client = 7, readOnly = false) =>
    body(
      svc.execute(
        lockOp(proc, args),
        client,
        readOnly ? new Uint8Array() : encodeTime({ seconds: now, nseconds: 0 }),
        readOnly,
      ),
    );
  return {
    svc,
    fh,
    lock,
    run,
    LOCK: (l: NlmLock, block = false, now?: number, client?: number) =>
      decodeStat(
        run(
          LockProc.LOCK,
          encodeLockArgs(LockProc.LOCK, {
            lock: l,
            block: { block, cookie: Buffer.from('ck'), host: '127.0.0.1', version: 4 },
          }),
          now,
          client,
        ),
      ).stat,
    UNLOCK: (l: NlmLock, now?: number, client?: number) =>
      decodeStat(run(LockProc.UNLOCK, encodeLockArgs(LockProc.UNLOCK, { lock: l }), now, client))
        .stat,
    TEST: (l: NlmLock, client?: number) =>
      decodeTestResult(
        run(LockProc.TEST, encodeLockArgs(LockProc.TEST, { lock: l }), 0, client, true),
      )!,
  };
}

describe('bfs service: lock operations as replicated state', () => {
  it('LOCK is agreed and TEST answers on the read-only path, from the same table', () => {
    const h = harness();
    assert.equal(h.LOCK(h.lock(1, 0, 100)), NlmStat.GRANTED);
    const t = h.TEST(h.lock(2, 50, 1, false));
    assert.equal(t.stat, NlmStat.DENIED);
    assert.equal(t.holder?.svid, 1);
    assert.equal(t.holder?.length, 100n);
    assert.equal(h.TEST(h.lock(2, 100, 0)).stat, NlmStat.GRANTED);
  });

  it('a mutating lock call on the read-only path is refused and changes nothing', () => {
    const h = harness();
    const op = lockOp(LockProc.LOCK, encodeLockArgs(LockProc.LOCK, { lock: h.lock(1, 0, 0) }));
    const r = decodeResult(h.svc.execute(op, 7, new Uint8Array(), true));
    assert.ok(r instanceof RpcError);
    assert.equal(h.TEST(h.lock(2, 0, 0)).stat, NlmStat.GRANTED);
  });

  it('malformed lock arguments are GARBAGE_ARGS and change nothing', () => {
    const h = harness();
    h.LOCK(h.lock(1, 0, 10));
    const before = encodeLockTable(h.svc.locks!.table);
    const good = encodeLockArgs(LockProc.UNLOCK, { lock: h.lock(1, 0, 10) });
    for (const args of [
      good.subarray(0, good.length - 3),
      new Uint8Array([0, 0, 1, 0]),
      Uint8Array.from([...good, 0, 0, 0, 0]),
    ]) {
      const r = decodeResult(
        h.svc.execute(
          lockOp(LockProc.UNLOCK, args),
          7,
          encodeTime({ seconds: 1001, nseconds: 0 }),
          false,
        ),
      );
      assert.ok(r instanceof RpcError && r.reply.kind === 'garbage_args');
    }
    const unknown = decodeResult(
      h.svc.execute(
        lockOp(99 as LockProc, good),
        7,
        encodeTime({ seconds: 1001, nseconds: 0 }),
        false,
      ),
    );
    assert.ok(unknown instanceof RpcError);
    assert.equal(h.TEST(h.lock(2, 0, 10)).stat, NlmStat.DENIED, 'the lock is still held');
    assert.equal(h.svc.malformedOps, 4);
    h.svc.stateReplaced();
    assert.deepEqual(encodeLockTable(h.svc.locks!.table), before, 'the pages hold the same table');
  });

  it('a handle that names no file is STALE_FH', () => {
    const h = harness();
    const l = { ...h.lock(1, 0, 0), fh: Uint8Array.from(h.fh).fill(0xee, 8) };
    assert.equal(h.LOCK(l), NlmStat.STALE_FH);
  });

  it('one file reached through two exports is one lock target: its two handles conflict, and a grant names the handle its waiter used', () => {
    const exports = [
      { path: '/', readOnly: false },
      { path: '/', readOnly: true },
    ];
    const h = harness(new BfsService(new PageStore({ size: STATE }), { exports }));
    const other = rootHandle(h.svc, CRED, 1);
    assert.notDeepEqual(other, h.fh, 'two handles of the root');
    assert.equal(h.LOCK(h.lock(1, 0, 10)), NlmStat.GRANTED);
    const viaOther = { ...h.lock(2, 5, 10), fh: other };
    assert.equal(h.TEST(viaOther).stat, NlmStat.DENIED, 'held through the first export');
    assert.equal(h.LOCK(viaOther, true), NlmStat.BLOCKED);
    assert.equal(h.UNLOCK(h.lock(1, 0, 10)), NlmStat.GRANTED);
    const grants = decodeGrants(h.run(LockProc.GRANTS, new Uint8Array(), 0, 7, true))!;
    assert.equal(grants.grants.length, 1);
    assert.deepEqual(grants.grants[0].lock.fh, other, "the callback names the waiter's handle");
    // A handle with its export MAC changed names no export: STALE_FH, also for UNLOCK.
    const forged = Uint8Array.from(other);
    forged[forged.length - 1] ^= 1;
    assert.equal(h.LOCK({ ...h.lock(3, 0, 1), fh: forged }), NlmStat.STALE_FH);
    assert.equal(h.UNLOCK({ ...h.lock(3, 0, 1), fh: forged }), NlmStat.STALE_FH);
  });

  it('the locks are in the state: a second service on the same pages sees them, and two replicas agree byte for byte', () => {
    const a = harness();
    const b = harness();
    for (const h of [a, b]) {
      h.LOCK(h.lock(1, 0, 10));
      h.LOCK(h.lock(2, 0, 10), true);
      h.UNLOCK(h.lock(1, 0, 10), 1001);
    }
    assert.deepEqual(
      (a.svc.state as PageStore).currentRoot(),
      (b.svc.state as PageStore).currentRoot(),
    );
    const again = harness(new BfsService(a.svc.state));
    assert.equal(again.TEST(again.lock(3, 5, 1)).holder?.svid, 2);
    const { grants, waiting } = decodeGrants(
      again.run(LockProc.GRANTS, new Uint8Array(0), 0, 7, true),
    )!;
    assert.equal(waiting, 0);
    assert.equal(grants.length, 1);
    assert.equal(grants[0].lock.svid, 2);
    assert.deepEqual(Buffer.from(grants[0].cookie).toString(), 'ck');
  });

  it('a rollback of the state drops the cached table (stateReplaced)', () => {
    const h = harness();
    h.svc.state.checkpoint(1);
    h.LOCK(h.lock(1, 0, 10));
    h.svc.state.rollback(1);
    h.svc.stateReplaced();
    assert.equal(h.TEST(h.lock(2, 0, 10)).stat, NlmStat.GRANTED);
  });

  it('locks belong to the relay (relayOf the client id): a lapsed lease frees them at the next lock call', () => {
    const svc = new BfsService(new PageStore({ size: STATE }), {
      relayOf: (id) => (id < 100 ? 1 : 2),
    });
    const h = harness(svc);
    assert.equal(h.LOCK(h.lock(1, 0, 0), false, 1000, 7), NlmStat.GRANTED);
    assert.equal(
      h.UNLOCK(h.lock(1, 0, 0), 1001, 8),
      NlmStat.GRANTED,
      "another id of relay 1: the owner's own",
    );
    assert.equal(h.LOCK(h.lock(1, 0, 0), false, 1002, 7), NlmStat.GRANTED);
    assert.equal(
      h.LOCK(h.lock(1, 0, 0), false, 1003, 200),
      NlmStat.DENIED,
      'same names from relay 2: another owner',
    );
    const renew = decodeStat(h.run(LockProc.RENEW, new Uint8Array(0), 1000 + LEASE_PERIOD_S, 9));
    assert.deepEqual(renew, { stat: NlmStat.GRANTED, holds: true, waits: false });
    const late = 1001 + 2 * LEASE_PERIOD_S;
    assert.equal(h.LOCK(h.lock(1, 0, 0), false, 1003 + LEASE_PERIOD_S, 200), NlmStat.DENIED);
    assert.equal(
      h.LOCK(h.lock(1, 0, 0), false, late + 3, 200),
      NlmStat.GRANTED,
      "relay 1's lease lapsed",
    );
  });

  it('FREE_ALL releases the locks of one caller name of the calling relay', () => {
    const h = harness();
    h.LOCK(h.lock(1, 0, 10));
    h.LOCK(h.lock(2, 20, 10));
    h.run(LockProc.FREE_ALL, encodeLockArgs(LockProc.FREE_ALL, { callerName: 'host1' }));
    assert.equal(h.TEST(h.lock(3, 0, 10)).stat, NlmStat.GRANTED);
    assert.equal(h.TEST(h.lock(3, 20, 10)).stat, NlmStat.DENIED);
  });

  it('a state too small for a lock region answers every lock call DENIED_NOLOCKS', () => {
    const h = harness(new BfsService(new PageStore({ size: 4 * 2 ** 20 })));
    assert.equal(h.LOCK(h.lock(1, 0, 10)), NlmStat.DENIED_NOLOCKS);
  });
});
