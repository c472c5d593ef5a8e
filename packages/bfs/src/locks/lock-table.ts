/**
 * The replicated lock table: byte-range locks of NLM (the XNFS specification, chapter 10) with
 * POSIX fcntl semantics, blocked requests, share reservations and the relays' leases. Pure and
 * deterministic: every replica applies the same calls in the same order and gets the same table
 * and the same answers; lock-store.ts keeps its encoding in the page store.
 *
 * Ranges are [start, end) with bigint offsets; NLM's length 0 ("to the end of the file") is
 * end = END_OF_FILE. An owner is what NLM names one (caller name, svid, owner handle `oh`),
 * within the relay that forwarded its calls: POSIX rules apply among the locks of one owner (a
 * new lock replaces what the owner held in its range, so upgrade, downgrade and sub-range
 * unlock split and merge ranges), and locks of different owners conflict when they overlap and
 * one is exclusive.
 */
import { MAX_LEASES, MAX_LOCKS, MAX_SHARES, MAX_WAITERS, LEASE_PERIOD_S } from './limits';

/** One past the largest NLM v4 offset: a range that ends here runs to the end of the file. */
export const END_OF_FILE = 2n ** 64n;

/** nlm4_stats (XNFS 10.14); v1-3 use the first five. */
export enum NlmStat {
  GRANTED = 0,
  DENIED = 1,
  DENIED_NOLOCKS = 2,
  BLOCKED = 3,
  DENIED_GRACE_PERIOD = 4,
  DEADLCK = 5,
  ROFS = 6,
  STALE_FH = 7,
  FBIG = 8,
  FAILED = 9,
}

export interface LockOwner {
  /** The relay (PBFT client group) that forwarded the owner's calls. */
  relay: number;
  callerName: string;
  svid: number;
  oh: Uint8Array;
}

export interface LockRange {
  start: bigint;
  /** Exclusive; END_OF_FILE for "to the end of the file". */
  end: bigint;
}

export interface HeldLock extends LockRange {
  /** The file, lowercase hex of its key (the backend's handle: LockContext.fileKey). */
  fh: string;
  owner: LockOwner;
  exclusive: boolean;
}

export interface Waiter extends HeldLock {
  id: number;
  /** The cookie of the blocked LOCK, sent back in the GRANTED callback. */
  cookie: Uint8Array;
  /** Address of the client's lock manager, for the callback. */
  host: string;
  /** NLM version of the LOCK call, which the callback speaks. */
  version: number;
  /** The handle the client named the file by, which the callback names it by. */
  handle: Uint8Array;
  /** The lock is held for the waiter; its client has not yet been told (GRANTED callback). */
  granted: boolean;
}

export interface Share {
  fh: string;
  relay: number;
  callerName: string;
  oh: Uint8Array;
  /** fsh4_mode: what others are denied (0 none, 1 read, 2 write, 3 both). */
  mode: number;
  /** fsh4_access: what the sharer does (1 read, 2 write, 3 both). */
  access: number;
}

export interface LockRequest extends LockRange {
  fh: string;
  owner: LockOwner;
  exclusive: boolean;
}

export interface BlockInfo {
  cookie: Uint8Array;
  host: string;
  version: number;
  /** The client's handle of the file, for the callback (default: the request's file key). */
  handle?: Uint8Array;
}

export type TestResult = { stat: NlmStat.GRANTED } | { stat: NlmStat.DENIED; holder: HeldLock };

/** The key that identifies an owner: equal keys, same owner. */
export function ownerKey(o: LockOwner): string {
  return `${o.relay}|${o.svid}|${Buffer.from(o.callerName).toString('hex')}|${Buffer.from(o.oh).toString('hex')}`;
}

function overlaps(a: LockRange, b: LockRange): boolean {
  return a.start < b.end && b.start < a.end;
}

function conflicts(held: HeldLock, req: LockRequest, key: string): boolean {
  return (held.exclusive || req.exclusive) && overlaps(held, req) && ownerKey(held.owner) !== key;
}

function sameRequest(w: HeldLock, r: LockRequest, key: string): boolean {
  return (
    w.fh === r.fh &&
    w.start === r.start &&
    w.end === r.end &&
    w.exclusive === r.exclusive &&
    ownerKey(w.owner) === key
  );
}

/**
 * The owner's locks on one file after taking [start, end) out of them (splitting a lock that
 * straddles an edge). Pure: returns a new list.
 */
function carve(locks: HeldLock[], key: string, r: LockRange): HeldLock[] {
  const out: HeldLock[] = [];
  for (const l of locks) {
    if (ownerKey(l.owner) !== key || !overlaps(l, r)) {
      out.push(l);
      continue;
    }
    if (l.start < r.start) out.push({ ...l, end: r.start });
    if (r.end < l.end) out.push({ ...l, start: r.end });
  }
  return out;
}

/** Merges the owner's locks of one mode that touch or overlap `l` into it. */
function merge(locks: HeldLock[], l: HeldLock, key: string): HeldLock[] {
  let merged = { ...l };
  const out: HeldLock[] = [];
  for (const x of locks) {
    const touches = x.start <= merged.end && merged.start <= x.end;
    if (touches && x.exclusive === merged.exclusive && ownerKey(x.owner) === key) {
      merged = {
        ...merged,
        start: x.start < merged.start ? x.start : merged.start,
        end: x.end > merged.end ? x.end : merged.end,
      };
    } else out.push(x);
  }
  out.push(merged);
  return out;
}

function byStart(a: HeldLock, b: HeldLock): number {
  if (a.start !== b.start) return a.start < b.start ? -1 : 1;
  const ka = ownerKey(a.owner);
  const kb = ownerKey(b.owner);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/** Share reservations conflict when one's access is what the other denies (XNFS 10.12). */
function sharesConflict(a: Share, b: Share): boolean {
  return (a.access & b.mode) !== 0 || (b.access & a.mode) !== 0;
}

type Sharer = Omit<Share, 'mode' | 'access'>;

/** The same file and the same sharer (relay, caller name, owner handle). */
function sameSharer(a: Sharer, b: Sharer): boolean {
  return (
    a.fh === b.fh &&
    a.relay === b.relay &&
    a.callerName === b.callerName &&
    Buffer.from(a.oh).equals(Buffer.from(b.oh))
  );
}

export class LockTable {
  /** Held locks per file (hex handle), sorted by start, then owner. */
  readonly files = new Map<string, HeldLock[]>();
  /** Blocked requests, oldest first (granted in that order). */
  waiters: Waiter[] = [];
  shares: Share[] = [];
  readonly leases = new Map<number, number>();
  nextWaiterId = 1;
  private lockCount = 0;

  get size(): number {
    return this.lockCount;
  }

  /** Every held lock, files in handle order, each file's locks in order. */
  allLocks(): HeldLock[] {
    return [...this.files.keys()].sort().flatMap((fh) => this.files.get(fh)!);
  }

  /** Relays whose lease of `leaseSeconds` lapsed at `now` (agreed seconds). */
  lapsed(now: number, leaseSeconds = LEASE_PERIOD_S): Set<number> {
    const out = new Set<number>();
    for (const [relay, renewed] of this.leases) if (now - renewed > leaseSeconds) out.add(relay);
    return out;
  }

  /**
   * NLM TEST: the first lock of another owner the request would conflict with. Locks of relays
   * whose lease lapsed at `now` are ignored (they go at the next lock operation).
   */
  test(req: LockRequest, now?: number, leaseSeconds?: number): TestResult {
    const key = ownerKey(req.owner);
    const dead = now === undefined ? new Set<number>() : this.lapsed(now, leaseSeconds);
    const holder = (this.files.get(req.fh) ?? []).find(
      (l) => conflicts(l, req, key) && !dead.has(l.owner.relay),
    );
    return holder ? { stat: NlmStat.DENIED, holder } : { stat: NlmStat.GRANTED };
  }

  /**
   * NLM LOCK: takes the lock if no other owner's lock conflicts (replacing what the owner held
   * in the range: upgrade, downgrade, merge). Otherwise DENIED, or, with `block`, BLOCKED with
   * the request queued (granted later, in arrival order, by grantWaiters). A blocked request
   * sent again (clients retransmit) is not queued twice; one granted meanwhile answers GRANTED
   * and its callback is no longer due.
   */
  lock(req: LockRequest, block?: BlockInfo): NlmStat {
    const key = ownerKey(req.owner);
    const queued = this.waiters.findIndex((w) => sameRequest(w, req, key));
    if (queued >= 0 && this.waiters[queued].granted) {
      this.waiters.splice(queued, 1);
      return NlmStat.GRANTED;
    }
    if (this.test(req).stat === NlmStat.GRANTED) {
      const stat = this.apply(req);
      if (stat === NlmStat.GRANTED && queued >= 0) this.waiters.splice(queued, 1);
      return stat;
    }
    if (!block) return NlmStat.DENIED;
    if (queued >= 0) return NlmStat.BLOCKED;
    if (this.waiters.length >= MAX_WAITERS) return NlmStat.DENIED_NOLOCKS;
    this.waiters.push({
      ...req,
      id: this.nextWaiterId++,
      cookie: Uint8Array.from(block.cookie),
      host: block.host,
      version: block.version,
      handle: Uint8Array.from(block.handle ?? Buffer.from(req.fh, 'hex')),
      granted: false,
    });
    return NlmStat.BLOCKED;
  }

  /** Sets the owner's locks in the range to the request's mode; DENIED_NOLOCKS past MAX_LOCKS. */
  private apply(req: LockRequest): NlmStat {
    const key = ownerKey(req.owner);
    const before = this.files.get(req.fh) ?? [];
    const lock: HeldLock = {
      fh: req.fh,
      owner: req.owner,
      exclusive: req.exclusive,
      start: req.start,
      end: req.end,
    };
    const after = merge(carve(before, key, req), lock, key).sort(byStart);
    return this.replace(req.fh, before, after) ? NlmStat.GRANTED : NlmStat.DENIED_NOLOCKS;
  }

  private replace(fh: string, before: HeldLock[], after: HeldLock[]): boolean {
    const count = this.lockCount - before.length + after.length;
    if (after.length > before.length && count > MAX_LOCKS) return false;
    this.lockCount = count;
    if (after.length === 0) this.files.delete(fh);
    else this.files.set(fh, after);
    return true;
  }

  /**
   * NLM UNLOCK: releases the owner's locks in the range (a sub-range splits a lock), then
   * grants what waited on the file. Unlocking what is not held is GRANTED too (XNFS: the
   * client may retransmit). Splitting past MAX_LOCKS is DENIED_NOLOCKS, as POSIX allows.
   */
  unlock(req: Omit<LockRequest, 'exclusive'>): NlmStat {
    const before = this.files.get(req.fh) ?? [];
    const after = carve(before, ownerKey(req.owner), req).sort(byStart);
    if (!this.replace(req.fh, before, after)) return NlmStat.DENIED_NOLOCKS;
    this.grantWaiters(req.fh);
    return NlmStat.GRANTED;
  }

  /**
   * NLM CANCEL: withdraws a blocked request (same owner, file, range and mode). One granted
   * meanwhile, whose client was not yet told, is released: the client gave up on it. DENIED
   * when there is no such request.
   */
  cancel(req: LockRequest): NlmStat {
    const key = ownerKey(req.owner);
    const i = this.waiters.findIndex((w) => sameRequest(w, req, key));
    if (i < 0) return NlmStat.DENIED;
    const [w] = this.waiters.splice(i, 1);
    if (w.granted) this.unlock(w);
    return NlmStat.GRANTED;
  }

  /** Grants, oldest first, every waiter on the file that no longer conflicts. */
  private grantWaiters(fh: string): void {
    for (const w of this.waiters) {
      if (w.fh !== fh || w.granted || this.test(w).stat !== NlmStat.GRANTED) continue;
      if (this.apply(w) === NlmStat.GRANTED) w.granted = true;
    }
  }

  /** Waiters of the relay that hold their lock and whose client is still to be told. */
  pendingGrants(relay: number): Waiter[] {
    return this.waiters.filter((w) => w.granted && w.owner.relay === relay);
  }

  /**
   * The relay told the client of grant `id` (or gave up: `release`, the lock is returned).
   * False when there is no such grant of this relay.
   */
  grantDone(relay: number, id: number, release: boolean): boolean {
    const i = this.waiters.findIndex((w) => w.id === id && w.granted && w.owner.relay === relay);
    if (i < 0) return false;
    const [w] = this.waiters.splice(i, 1);
    if (release) this.unlock(w);
    return true;
  }

  /**
   * Releases every lock, waiter and share of the relay's clients that `match` selects (NLM
   * FREE_ALL and NSM SM_NOTIFY: a caller name; a lapsed lease: all), then grants waiters.
   */
  release(relay: number, callerName?: string): void {
    const mine = (o: { relay: number; callerName: string }) =>
      o.relay === relay && (callerName === undefined || o.callerName === callerName);
    this.waiters = this.waiters.filter((w) => !mine(w.owner));
    this.shares = this.shares.filter((s) => !mine(s));
    const touched: string[] = [];
    for (const [fh, locks] of [...this.files]) {
      const kept = locks.filter((l) => !mine(l.owner));
      if (kept.length === locks.length) continue;
      this.replace(fh, locks, kept);
      touched.push(fh);
    }
    for (const fh of touched.sort()) this.grantWaiters(fh);
  }

  /**
   * Records the relay's lock activity at `now` and releases the relays whose lease lapsed.
   * False when the relay has no lease and MAX_LEASES are taken (its call is DENIED_NOLOCKS).
   */
  renew(relay: number, now: number, leaseSeconds?: number): boolean {
    for (const dead of [...this.lapsed(now, leaseSeconds)].sort((a, b) => a - b)) {
      this.release(dead);
      this.leases.delete(dead);
    }
    if (!this.leases.has(relay) && this.leases.size >= MAX_LEASES) return false;
    this.leases.set(relay, now);
    return true;
  }

  /** Whether the relay holds any lock, waiter or share (so it must keep renewing). */
  holds(relay: number): boolean {
    return (
      this.waiters.some((w) => w.owner.relay === relay) ||
      this.shares.some((s) => s.relay === relay) ||
      [...this.files.values()].some((ls) => ls.some((l) => l.owner.relay === relay))
    );
  }

  /** NLM SHARE: DENIED when another share's access and mode clash (XNFS 10.12). */
  share(s: Share): NlmStat {
    const same = (x: Share) => sameSharer(x, s);
    const others = this.shares.filter((x) => x.fh === s.fh && !same(x));
    if (others.some((x) => sharesConflict(x, s))) return NlmStat.DENIED;
    const i = this.shares.findIndex(same);
    if (i >= 0) this.shares[i] = { ...s };
    else if (this.shares.length >= MAX_SHARES) return NlmStat.DENIED_NOLOCKS;
    else this.shares.push({ ...s });
    return NlmStat.GRANTED;
  }

  /** NLM UNSHARE: GRANTED whether or not the share existed. */
  unshare(s: Sharer): NlmStat {
    this.shares = this.shares.filter((x) => !sameSharer(x, s));
    return NlmStat.GRANTED;
  }

  /** Restores the lock count after a decode (lock-store.ts). */
  recount(): void {
    this.lockCount = [...this.files.values()].reduce((n, l) => n + l.length, 0);
  }
}
