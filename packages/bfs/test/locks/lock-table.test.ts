import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import {
  END_OF_FILE,
  type HeldLock,
  type LockOwner,
  type LockRequest,
  LockTable,
  NlmStat,
  ownerKey,
} from '../../src/locks/lock-table';
import { LEASE_PERIOD_S, MAX_LOCKS, MAX_WAITERS } from '../../src/locks/limits';
import { decodeLockTable, encodeLockTable } from '../../src/locks/lock-store';

const F = 'aa01';
const G = 'bb02';
const A: LockOwner = { relay: 1, callerName: 'alpha', svid: 10, oh: Buffer.from('10@alpha') };
const A2: LockOwner = { ...A, svid: 11, oh: Buffer.from('11@alpha') };
const B: LockOwner = { relay: 1, callerName: 'beta', svid: 20, oh: Buffer.from('20@beta') };
const C: LockOwner = { relay: 2, callerName: 'gamma', svid: 30, oh: Buffer.from('30@gamma') };
const BLOCK = { cookie: Buffer.from('c1'), host: '127.0.0.1', version: 4 };

function req(owner: LockOwner, start: number, end: number | 'eof', exclusive = true, fh = F) {
  const e = end === 'eof' ? END_OF_FILE : BigInt(end);
  return { fh, owner, exclusive, start: BigInt(start), end: e } satisfies LockRequest;
}

/** The table's locks of one file as [owner svid, mode, start, end] rows. */
function rows(t: LockTable, fh = F): [number, string, number, number | 'eof'][] {
  return (t.files.get(fh) ?? []).map((l: HeldLock) => [
    l.owner.svid,
    l.exclusive ? 'x' : 's',
    Number(l.start),
    l.end === END_OF_FILE ? 'eof' : Number(l.end),
  ]);
}

describe('lock table: byte-range locks with POSIX semantics (XNFS chapter 10)', () => {
  describe('conflicts', () => {
    it('grants shared locks of different owners over the same bytes', () => {
      const t = new LockTable();
      assert.equal(t.lock(req(A, 0, 10, false)), NlmStat.GRANTED);
      assert.equal(t.lock(req(B, 5, 15, false)), NlmStat.GRANTED);
    });
    it('denies an exclusive lock over bytes another owner holds, shared or exclusive', () => {
      const t = new LockTable();
      t.lock(req(A, 0, 10, false));
      assert.equal(t.lock(req(B, 9, 20)), NlmStat.DENIED);
      t.lock(req(C, 50, 60));
      assert.equal(t.lock(req(B, 55, 56, false)), NlmStat.DENIED);
    });
    it('grants locks of different owners whose ranges only touch', () => {
      const t = new LockTable();
      t.lock(req(A, 0, 10));
      assert.equal(t.lock(req(B, 10, 20)), NlmStat.GRANTED);
    });
    it('treats two svids of the same caller as different owners (svid names the process)', () => {
      const t = new LockTable();
      t.lock(req(A, 0, 10));
      assert.equal(t.lock(req(A2, 0, 10)), NlmStat.DENIED);
    });
    it('keeps files apart: the same range of another file does not conflict', () => {
      const t = new LockTable();
      t.lock(req(A, 0, 'eof'));
      assert.equal(t.lock(req(B, 0, 'eof', true, G)), NlmStat.GRANTED);
    });
    it('length 0 locks to the end of the file and conflicts with any later offset', () => {
      const t = new LockTable();
      t.lock(req(A, 100, 'eof'));
      assert.equal(t.lock(req(B, 2 ** 40, 2 ** 40 + 1)), NlmStat.DENIED);
      assert.equal(t.lock(req(B, 0, 100)), NlmStat.GRANTED);
    });
  });

  describe('TEST', () => {
    it('reports the conflicting holder and changes nothing', () => {
      const t = new LockTable();
      t.lock(req(A, 0, 10));
      const res = t.test(req(B, 5, 6, false));
      assert.equal(res.stat, NlmStat.DENIED);
      assert.equal(res.stat === NlmStat.DENIED && res.holder.owner.svid, 10);
      assert.deepEqual(rows(t), [[10, 'x', 0, 10]]);
      assert.equal(t.test(req(A, 0, 10)).stat, NlmStat.GRANTED, 'own locks never conflict');
    });
    it('ignores the locks of a relay whose lease lapsed', () => {
      const t = new LockTable();
      t.renew(2, 1000);
      t.lock(req(C, 0, 10));
      assert.equal(t.test(req(A, 0, 10), 1000 + LEASE_PERIOD_S).stat, NlmStat.DENIED);
      assert.equal(t.test(req(A, 0, 10), 1001 + LEASE_PERIOD_S).stat, NlmStat.GRANTED);
    });
  });

  describe('one owner: split, merge, upgrade, downgrade', () => {
    it('merges adjacent and overlapping locks of the same mode into one', () => {
      const t = new LockTable();
      t.lock(req(A, 0, 10));
      t.lock(req(A, 10, 20));
      t.lock(req(A, 15, 30));
      assert.deepEqual(rows(t), [[10, 'x', 0, 30]]);
      assert.equal(t.size, 1);
    });
    it('does not merge locks of different modes; the new mode wins where they overlap', () => {
      const t = new LockTable();
      t.lock(req(A, 0, 10, false));
      t.lock(req(A, 5, 15, true));
      assert.deepEqual(rows(t), [
        [10, 's', 0, 5],
        [10, 'x', 5, 15],
      ]);
    });
    it('downgrades the middle of an exclusive lock, splitting it in three', () => {
      const t = new LockTable();
      t.lock(req(A, 0, 30));
      t.lock(req(A, 10, 20, false));
      assert.deepEqual(rows(t), [
        [10, 'x', 0, 10],
        [10, 's', 10, 20],
        [10, 'x', 20, 30],
      ]);
    });
    it('upgrades when no other owner shares the range, and is denied (unchanged) when one does', () => {
      const t = new LockTable();
      t.lock(req(A, 0, 10, false));
      assert.equal(t.lock(req(A, 0, 10, true)), NlmStat.GRANTED);
      t.lock(req(B, 20, 30, false));
      t.lock(req(A, 20, 30, false));
      assert.equal(t.lock(req(A, 20, 30, true)), NlmStat.DENIED);
      assert.deepEqual(rows(t), [
        [10, 'x', 0, 10],
        [10, 's', 20, 30],
        [20, 's', 20, 30],
      ]);
    });
    it('unlocks a sub-range, splitting the lock, and unlocking what is not held is GRANTED', () => {
      const t = new LockTable();
      t.lock(req(A, 0, 'eof'));
      assert.equal(t.unlock(req(A, 10, 20)), NlmStat.GRANTED);
      assert.deepEqual(rows(t), [
        [10, 'x', 0, 10],
        [10, 'x', 20, 'eof'],
      ]);
      assert.equal(t.unlock(req(B, 0, 'eof')), NlmStat.GRANTED);
      assert.equal(t.unlock(req(A, 0, 'eof')), NlmStat.GRANTED);
      assert.equal(t.size, 0);
      assert.equal(t.files.size, 0, 'a file without locks leaves no entry');
    });
  });

  describe('blocking locks and CANCEL', () => {
    it('queues a blocked request and grants it when the conflicting lock is unlocked', () => {
      const t = new LockTable();
      t.lock(req(A, 0, 10));
      assert.equal(t.lock(req(B, 0, 10), BLOCK), NlmStat.BLOCKED);
      assert.deepEqual(t.pendingGrants(1), []);
      t.unlock(req(A, 0, 10));
      const [g] = t.pendingGrants(1);
      assert.equal(g.owner.svid, 20);
      assert.deepEqual(rows(t), [[20, 'x', 0, 10]]);
      assert.equal(t.grantDone(1, g.id, false), true);
      assert.deepEqual(t.pendingGrants(1), []);
      assert.deepEqual(rows(t), [[20, 'x', 0, 10]], 'the lock stays with its new holder');
    });
    it('grants waiters in arrival order: the second waits for the first', () => {
      const t = new LockTable();
      t.lock(req(A, 0, 10));
      t.lock(req(B, 0, 10), BLOCK);
      t.lock(req(C, 0, 10), BLOCK);
      t.unlock(req(A, 0, 10));
      assert.deepEqual(rows(t), [[20, 'x', 0, 10]]);
      t.unlock(req(B, 0, 10));
      assert.deepEqual(rows(t), [[30, 'x', 0, 10]]);
    });
    it('a retransmitted blocked LOCK is queued once; once granted it answers GRANTED', () => {
      const t = new LockTable();
      t.lock(req(A, 0, 10));
      t.lock(req(B, 0, 10), BLOCK);
      assert.equal(t.lock(req(B, 0, 10), BLOCK), NlmStat.BLOCKED);
      assert.equal(t.waiters.length, 1);
      t.unlock(req(A, 0, 10));
      assert.equal(t.lock(req(B, 0, 10), BLOCK), NlmStat.GRANTED);
      assert.equal(t.waiters.length, 0, 'its callback is no longer due');
    });
    it('CANCEL withdraws a blocked request; with none it is DENIED', () => {
      const t = new LockTable();
      t.lock(req(A, 0, 10));
      t.lock(req(B, 0, 10), BLOCK);
      assert.equal(t.cancel(req(B, 0, 10)), NlmStat.GRANTED);
      assert.equal(t.cancel(req(B, 0, 10)), NlmStat.DENIED);
      t.unlock(req(A, 0, 10));
      assert.equal(t.size, 0);
    });
    it('CANCEL of a request granted but not yet told to its client gives the lock back', () => {
      const t = new LockTable();
      t.lock(req(A, 0, 10));
      t.lock(req(B, 0, 10), BLOCK);
      t.lock(req(C, 0, 10), BLOCK);
      t.unlock(req(A, 0, 10));
      assert.equal(t.cancel(req(B, 0, 10)), NlmStat.GRANTED);
      assert.deepEqual(rows(t), [[30, 'x', 0, 10]], 'the next waiter gets it');
    });
    it('a grant the client refused is released to the next waiter', () => {
      const t = new LockTable();
      t.lock(req(A, 0, 10));
      t.lock(req(B, 0, 10), BLOCK);
      t.lock(req(C, 0, 10), BLOCK);
      t.unlock(req(A, 0, 10));
      const [g] = t.pendingGrants(1);
      t.grantDone(1, g.id, true);
      assert.deepEqual(rows(t), [[30, 'x', 0, 10]]);
      assert.equal(t.grantDone(1, g.id, true), false, 'a grant is done once');
      assert.equal(t.grantDone(1, t.pendingGrants(2)[0].id, false), false, 'only by its relay');
    });
    it('a non-blocking LOCK that conflicts is DENIED and queues nothing', () => {
      const t = new LockTable();
      t.lock(req(A, 0, 10));
      assert.equal(t.lock(req(B, 0, 10)), NlmStat.DENIED);
      assert.equal(t.waiters.length, 0);
    });
  });

  describe('owners that go away', () => {
    it('FREE_ALL of a caller name releases its locks, waiters and shares on that relay only', () => {
      const t = new LockTable();
      t.lock(req(A, 0, 10));
      t.lock(req(A2, 20, 30, true, G));
      t.lock(req(B, 0, 10), BLOCK);
      t.share({ fh: F, relay: 1, callerName: 'alpha', oh: A.oh, mode: 0, access: 1 });
      const sameNameElsewhere = { ...C, callerName: 'alpha' };
      t.lock(req(sameNameElsewhere, 40, 50));
      t.release(1, 'alpha');
      assert.deepEqual(rows(t), [
        [20, 'x', 0, 10],
        [30, 'x', 40, 50],
      ]);
      assert.deepEqual(rows(t, G), []);
      assert.equal(t.shares.length, 0);
      assert.equal(t.pendingGrants(1).length, 1, "beta's wait was granted");
    });
    it('the first lock operation after a lease lapsed releases everything of that relay', () => {
      const t = new LockTable();
      t.renew(2, 1000);
      t.lock(req(C, 0, 10));
      t.renew(1, 1000 + LEASE_PERIOD_S);
      assert.equal(t.size, 1, 'exactly the period is not yet a lapse');
      t.renew(1, 1001 + LEASE_PERIOD_S);
      assert.equal(t.size, 0);
      assert.equal(t.leases.has(2), false);
      assert.equal(t.holds(2), false);
    });
  });

  describe('SHARE reservations (XNFS 10.12)', () => {
    const share = (callerName: string, mode: number, access: number) => ({
      fh: F,
      relay: 1,
      callerName,
      oh: Buffer.from(callerName),
      mode,
      access,
    });
    it('denies a share whose access another share denies, and one that denies what another does', () => {
      const t = new LockTable();
      assert.equal(t.share(share('a', 2, 1)), NlmStat.GRANTED); // reads, denies writes
      assert.equal(t.share(share('b', 0, 2)), NlmStat.DENIED); // wants to write
      assert.equal(t.share(share('c', 1, 1)), NlmStat.DENIED); // would deny a's reads
      assert.equal(t.share(share('d', 0, 1)), NlmStat.GRANTED);
      assert.equal(t.unshare(share('a', 0, 0)), NlmStat.GRANTED);
      assert.equal(t.share(share('b', 0, 2)), NlmStat.GRANTED);
    });
  });

  describe('limits', () => {
    it(`a LOCK that would make more than MAX_LOCKS (${MAX_LOCKS}) ranges is DENIED_NOLOCKS`, () => {
      const t = new LockTable();
      for (let i = 0; i < MAX_LOCKS; i++) assert.equal(t.lock(req(A, 2 * i, 2 * i + 1)), 0);
      assert.equal(t.lock(req(B, 4 * MAX_LOCKS, 4 * MAX_LOCKS + 1)), NlmStat.DENIED_NOLOCKS);
      assert.equal(t.lock(req(A, 1, 2)), NlmStat.GRANTED, 'a merge makes fewer ranges');
      assert.equal(t.lock(req(B, 4 * MAX_LOCKS, 4 * MAX_LOCKS + 1)), NlmStat.GRANTED);
      assert.equal(t.unlock(req(A, 1, 2)), NlmStat.DENIED_NOLOCKS, 'a split past it too');
      assert.equal(t.size, MAX_LOCKS);
      assert.deepEqual(rows(t)[0], [10, 'x', 0, 3], 'unchanged');
    });
    it(`blocked requests past MAX_WAITERS (${MAX_WAITERS}) are DENIED_NOLOCKS`, () => {
      const t = new LockTable();
      t.lock(req(A, 0, 'eof'));
      for (let i = 0; i < MAX_WAITERS; i++)
        assert.equal(t.lock(req({ ...B, svid: i }, 0, 1), BLOCK), NlmStat.BLOCKED);
      assert.equal(t.lock(req(C, 0, 1), BLOCK), NlmStat.DENIED_NOLOCKS);
    });
  });
});

/**
 * The reference model: for each file and owner, the mode of every byte 0..N (byte N stands for
 * everything from N to the end of the file), and the waiters in order.
 */
const N = 12;
type Mode = 0 | 1 | 2; // none, shared, exclusive
class Model {
  bytes = new Map<string, Mode[]>(); // key: fh|owner
  waiters: { r: LockRequest; granted: boolean }[] = [];
  cells(r: { start: bigint; end: bigint }): number[] {
    const end = r.end === END_OF_FILE ? N + 1 : Number(r.end);
    const out: number[] = [];
    for (let i = Number(r.start); i < end; i++) out.push(i);
    return out;
  }
  of(fh: string, o: LockOwner): Mode[] {
    const k = `${fh}|${ownerKey(o)}`;
    if (!this.bytes.has(k)) this.bytes.set(k, new Array<Mode>(N + 1).fill(0));
    return this.bytes.get(k)!;
  }
  conflicts(r: LockRequest): boolean {
    for (const [k, modes] of this.bytes) {
      const [fh, ...rest] = k.split('|');
      if (fh !== r.fh || rest.join('|') === ownerKey(r.owner)) continue;
      if (this.cells(r).some((i) => modes[i] === 2 || (modes[i] === 1 && r.exclusive))) return true;
    }
    return false;
  }
  set(r: LockRequest, mode: Mode) {
    const m = this.of(r.fh, r.owner);
    for (const i of this.cells(r)) m[i] = mode;
  }
  lock(r: LockRequest, block: boolean): NlmStat {
    const same = (w: LockRequest) =>
      w.fh === r.fh &&
      w.start === r.start &&
      w.end === r.end &&
      w.exclusive === r.exclusive &&
      ownerKey(w.owner) === ownerKey(r.owner);
    const q = this.waiters.findIndex((w) => same(w.r));
    if (q >= 0 && this.waiters[q].granted) {
      this.waiters.splice(q, 1);
      return NlmStat.GRANTED;
    }
    if (!this.conflicts(r)) {
      this.set(r, r.exclusive ? 2 : 1);
      if (q >= 0) this.waiters.splice(q, 1);
      return NlmStat.GRANTED;
    }
    if (!block) return NlmStat.DENIED;
    if (q < 0) this.waiters.push({ r, granted: false });
    return NlmStat.BLOCKED;
  }
  grant() {
    for (const w of this.waiters) {
      if (w.granted || this.conflicts(w.r)) continue;
      this.set(w.r, w.r.exclusive ? 2 : 1);
      w.granted = true;
    }
  }
  unlock(r: LockRequest) {
    this.set(r, 0);
    this.grant();
  }
  release(relay: number, callerName: string) {
    for (const [k, modes] of this.bytes) {
      if (k.split('|')[1] === String(relay) && k.includes(Buffer.from(callerName).toString('hex')))
        modes.fill(0);
    }
    this.waiters = this.waiters.filter(
      (w) => !(w.r.owner.relay === relay && w.r.owner.callerName === callerName),
    );
    this.grant();
  }
}

const OWNERS = [A, A2, B, C];
const FILES = [F, G];
const arbReq = fc
  .record({
    owner: fc.constantFrom(...OWNERS),
    fh: fc.constantFrom(...FILES),
    start: fc.integer({ min: 0, max: N - 1 }),
    len: fc.integer({ min: 0, max: N }),
    exclusive: fc.boolean(),
  })
  .map(({ owner, fh, start, len, exclusive }) =>
    req(owner, start, len === 0 || start + len > N ? 'eof' : start + len, exclusive, fh),
  );
const arbStep = fc.oneof(
  fc.record({ kind: fc.constant('lock' as const), r: arbReq, block: fc.boolean() }),
  fc.record({ kind: fc.constant('unlock' as const), r: arbReq }),
  fc.record({ kind: fc.constant('cancel' as const), r: arbReq }),
  fc.record({ kind: fc.constant('release' as const), r: arbReq }),
);

type Step = typeof arbStep extends fc.Arbitrary<infer S> ? S : never;

function applyStep(t: LockTable, s: Step): void {
  if (s.kind === 'lock') t.lock(s.r, s.block ? BLOCK : undefined);
  else if (s.kind === 'unlock') t.unlock(s.r);
  else if (s.kind === 'cancel') t.cancel(s.r);
  else t.release(s.r.owner.relay, s.r.owner.callerName);
}

function checkAgainst(t: LockTable, m: Model): void {
  for (const fh of FILES) {
    const locks = t.files.get(fh) ?? [];
    for (const o of OWNERS) {
      const mine = locks.filter((l) => ownerKey(l.owner) === ownerKey(o));
      const seen = new Array<Mode>(N + 1).fill(0);
      for (const l of mine) {
        for (const i of m.cells(l)) {
          assert.equal(seen[i], 0, 'an owner never holds two locks over one byte');
          seen[i] = l.exclusive ? 2 : 1;
        }
      }
      assert.deepEqual(seen, m.of(fh, o), `bytes of ${o.svid} on ${fh}`);
      for (const a of mine)
        for (const b of mine)
          if (a !== b && a.exclusive === b.exclusive)
            assert.ok(a.end < b.start || b.end < a.start, 'touching locks of one mode merge');
    }
  }
  assert.equal(t.waiters.length, m.waiters.length);
  t.waiters.forEach((w, i) => assert.equal(w.granted, m.waiters[i].granted));
}

describe('lock table against a byte-by-byte reference model (fast-check)', () => {
  it('every sequence of LOCK, UNLOCK, CANCEL and FREE_ALL leaves the same locks as the model, and its encoding decodes to the same table', () => {
    fc.assert(
      fc.property(fc.array(arbStep, { maxLength: 40 }), (steps) => {
        const t = new LockTable();
        const m = new Model();
        // A second replica that restarts from the encoding before some steps: it must stay
        // byte-identical to the one that never did (no dependence on in-memory order).
        let twin = new LockTable();
        for (const [n, s] of steps.entries()) {
          if (n % 3 === 0) twin = decodeLockTable(encodeLockTable(twin));
          applyStep(twin, s);
          if (s.kind === 'lock') {
            assert.equal(t.lock(s.r, s.block ? BLOCK : undefined), m.lock(s.r, s.block));
          } else if (s.kind === 'unlock') {
            t.unlock(s.r);
            m.unlock(s.r);
          } else if (s.kind === 'cancel') {
            const i = m.waiters.findIndex(
              (w) =>
                w.r.fh === s.r.fh &&
                w.r.start === s.r.start &&
                w.r.end === s.r.end &&
                w.r.exclusive === s.r.exclusive &&
                ownerKey(w.r.owner) === ownerKey(s.r.owner),
            );
            const expected = i < 0 ? NlmStat.DENIED : NlmStat.GRANTED;
            if (i >= 0) {
              const [w] = m.waiters.splice(i, 1);
              if (w.granted) m.unlock(w.r);
            }
            assert.equal(t.cancel(s.r), expected);
          } else {
            t.release(s.r.owner.relay, s.r.owner.callerName);
            m.release(s.r.owner.relay, s.r.owner.callerName);
          }
          checkAgainst(t, m);
          assert.deepEqual(
            encodeLockTable(twin),
            encodeLockTable(t),
            'the restarted replica agrees',
          );
          // What the pages hold is the whole table: a replica that decodes it (a restart, a
          // state transfer) encodes the same bytes and answers the same.
          const bytes = encodeLockTable(t);
          const copy = decodeLockTable(bytes);
          assert.deepEqual(encodeLockTable(copy), bytes);
          const [x, y] = [copy.test(s.r), t.test(s.r)];
          assert.equal(x.stat, y.stat);
          if (x.stat === NlmStat.DENIED && y.stat === NlmStat.DENIED)
            assert.equal(ownerKey(x.holder.owner), ownerKey(y.holder.owner));
          // TEST agrees with the model for the same request.
          assert.equal(t.test(s.r).stat === NlmStat.DENIED, m.conflicts(s.r));
        }
      }),
      { numRuns: 300 },
    );
  });
});
