/**
 * Lock operations (OpKind.Lock) as they travel through PBFT: the relay turns each NLM or NSM
 * call into one of these (any NLM version maps to the same request), every replica decodes the
 * same bytes and runs it on its lock table with the agreed time. TEST and GRANTS read only and
 * take the read-only path; the others are agreed.
 *
 *   lock:        opaque fh, string caller, i32 svid, opaque oh, bool exclusive, u64 offset,
 *                u64 length (0: to the end of the file)
 *   TEST         args lock;  result u32 stat, if DENIED: bool exclusive, i32 svid, opaque oh,
 *                u64 offset, u64 length
 *   LOCK         args lock, bool block, opaque cookie, string host, u32 version; result u32 stat
 *   CANCEL       args lock;  UNLOCK args lock;  result u32 stat
 *   SHARE        args opaque fh, string caller, opaque oh, u32 mode, u32 access; UNSHARE too
 *   FREE_ALL     args string caller; result u32 stat
 *   RENEW        args none;  result u32 stat, bool holds, bool waits
 *   GRANTS       args none;  result u32 n, n x (u32 id, u32 version, string host,
 *                opaque cookie, lock), u32 waiting (the relay's requests still blocked)
 *   GRANT_DONE   args u32 id, bool release; result u32 stat
 */
import { XdrError, XdrReader, XdrWriter } from 'nfs-server-ts';
import {
  type BlockInfo,
  END_OF_FILE,
  type HeldLock,
  type LockRequest,
  type LockTable,
  NlmStat,
  type Waiter,
} from './lock-table';
import { readU64 } from './lock-store';
import {
  MAX_CALLER_NAME_BYTES,
  MAX_COOKIE_BYTES,
  MAX_HOST_BYTES,
  MAX_LOCK_FH_BYTES,
  MAX_OWNER_HANDLE_BYTES,
  MAX_WAITERS,
} from './limits';

export enum LockProc {
  TEST = 1,
  LOCK = 2,
  CANCEL = 3,
  UNLOCK = 4,
  SHARE = 5,
  UNSHARE = 6,
  FREE_ALL = 7,
  RENEW = 8,
  GRANTS = 9,
  GRANT_DONE = 10,
}

/** Procedures that only read the table (the read-only path). */
export function isReadOnlyLockProc(proc: number): boolean {
  return proc === LockProc.TEST || proc === LockProc.GRANTS;
}

/** A lock as NLM carries it: offset and length (0 = to the end of the file). */
export interface NlmLock {
  fh: Uint8Array;
  callerName: string;
  svid: number;
  oh: Uint8Array;
  exclusive: boolean;
  offset: bigint;
  length: bigint;
}

export interface NlmShare {
  fh: Uint8Array;
  callerName: string;
  oh: Uint8Array;
  mode: number;
  access: number;
}

const U32 = 2n ** 32n;

function u64(w: XdrWriter, v: bigint): XdrWriter {
  return w.u32(Number((v / U32) % U32)).u32(Number(v % U32));
}

export function writeNlmLock(w: XdrWriter, l: NlmLock): XdrWriter {
  w.opaque(l.fh).string(l.callerName).i32(l.svid).opaque(l.oh).bool(l.exclusive);
  return u64(u64(w, l.offset), l.length);
}

export function readNlmLock(r: XdrReader): NlmLock {
  return {
    fh: Uint8Array.from(r.opaque(MAX_LOCK_FH_BYTES)),
    callerName: r.string(MAX_CALLER_NAME_BYTES),
    svid: r.i32(),
    oh: Uint8Array.from(r.opaque(MAX_OWNER_HANDLE_BYTES)),
    exclusive: r.bool(),
    offset: readU64(r),
    length: readU64(r),
  };
}

/** The range of an NLM lock: length 0, or one that passes 2^64, runs to the end of the file. */
export function rangeOf(l: { offset: bigint; length: bigint }): { start: bigint; end: bigint } {
  const end = l.offset + l.length;
  return { start: l.offset, end: l.length === 0n || end > END_OF_FILE ? END_OF_FILE : end };
}

/** The NLM offset and length of a held lock. */
export function nlmExtent(l: { start: bigint; end: bigint }): { offset: bigint; length: bigint } {
  return { offset: l.start, length: l.end === END_OF_FILE ? 0n : l.end - l.start };
}

function heldToNlm(l: HeldLock): NlmLock {
  return {
    fh: Buffer.from(l.fh, 'hex'),
    callerName: l.owner.callerName,
    svid: l.owner.svid,
    oh: l.owner.oh,
    exclusive: l.exclusive,
    ...nlmExtent(l),
  };
}

export function encodeLockArgs(
  proc: LockProc,
  a: {
    lock?: NlmLock;
    block?: BlockInfo & { block: boolean };
    share?: NlmShare;
    callerName?: string;
    grant?: { id: number; release: boolean };
  },
): Uint8Array {
  const w = new XdrWriter(512);
  if (a.lock) writeNlmLock(w, a.lock);
  if (proc === LockProc.LOCK) {
    const b = a.block ?? { block: false, cookie: new Uint8Array(0), host: '', version: 4 };
    w.bool(b.block).opaque(b.cookie).string(b.host).u32(b.version);
  }
  if (a.share) {
    const s = a.share;
    w.opaque(s.fh).string(s.callerName).opaque(s.oh).u32(s.mode).u32(s.access);
  }
  if (a.callerName !== undefined) w.string(a.callerName);
  if (a.grant) w.u32(a.grant.id).bool(a.grant.release);
  return w.bytes();
}

/** What a lock operation needs of the replica besides the table. */
export interface LockContext {
  table: LockTable;
  /** The relay whose calls these are (from the authenticated PBFT client id). */
  relay: number;
  /** Agreed time, seconds. */
  now: number;
  /** The relays' lease (default LEASE_PERIOD_S; the same on every replica, from cluster.json). */
  leaseSeconds?: number;
  /**
   * The file a client's handle names, as the table keys it (one file reached through two
   * exports has two handles and one key, so their locks conflict); undefined answers STALE_FH:
   * a handle of no export, or (`live`) of a file that is gone.
   */
  fileKey: (fh: Uint8Array, live: boolean) => Uint8Array | undefined;
}

export interface LockOutcome {
  result: Uint8Array;
  /** The table changed (the store writes it back). */
  changed: boolean;
}

function request(l: NlmLock, relay: number, file: Uint8Array): LockRequest {
  return {
    fh: Buffer.from(file).toString('hex'),
    owner: { relay, callerName: l.callerName, svid: l.svid, oh: l.oh },
    exclusive: l.exclusive,
    ...rangeOf(l),
  };
}

function stat(s: NlmStat): Uint8Array {
  return new XdrWriter(4).u32(s).bytes();
}

/**
 * Runs one lock operation. Throws XdrError on malformed arguments (the service answers
 * GARBAGE_ARGS and nothing changed: arguments are decoded in full before any change).
 */
export function executeLockOp(
  proc: number,
  args: Uint8Array,
  ctx: LockContext,
  readOnly: boolean,
): LockOutcome {
  const r = new XdrReader(args);
  const t = ctx.table;
  switch (proc) {
    case LockProc.TEST: {
      const l = readNlmLock(r);
      r.end();
      const file = ctx.fileKey(l.fh, true);
      if (!file) return { result: stat(NlmStat.STALE_FH), changed: false };
      const res = t.test(request(l, ctx.relay, file), ctx.now, ctx.leaseSeconds);
      const w = new XdrWriter(64).u32(res.stat);
      if (res.stat === NlmStat.DENIED) {
        const h = heldToNlm(res.holder);
        w.bool(h.exclusive).i32(h.svid).opaque(h.oh);
        u64(u64(w, h.offset), h.length);
      }
      return { result: w.bytes(), changed: false };
    }
    case LockProc.GRANTS: {
      r.end();
      const waiting = t.waiters.filter((w) => w.owner.relay === ctx.relay && !w.granted).length;
      return { result: encodeGrants(t.pendingGrants(ctx.relay), waiting), changed: false };
    }
  }
  if (readOnly) throw new XdrError(`lock procedure ${proc} is not read-only`);
  const before = decodeForChange(proc, r);
  const renewed = t.renew(ctx.relay, ctx.now, ctx.leaseSeconds);
  return { result: runChange(before, ctx, renewed), changed: true };
}

type Change =
  | { proc: LockProc.LOCK; lock: NlmLock; block: boolean; info: BlockInfo }
  | { proc: LockProc.CANCEL | LockProc.UNLOCK; lock: NlmLock }
  | { proc: LockProc.SHARE | LockProc.UNSHARE; share: NlmShare }
  | { proc: LockProc.FREE_ALL; callerName: string }
  | { proc: LockProc.RENEW }
  | { proc: LockProc.GRANT_DONE; id: number; release: boolean };

/** Decodes a mutating operation's arguments in full, so a malformed one changes nothing. */
function decodeForChange(proc: number, r: XdrReader): Change {
  let c: Change;
  switch (proc) {
    case LockProc.LOCK: {
      const lock = readNlmLock(r);
      const block = r.bool();
      const info = {
        cookie: Uint8Array.from(r.opaque(MAX_COOKIE_BYTES)),
        host: r.string(MAX_HOST_BYTES),
        version: r.u32(),
      };
      c = { proc, lock, block, info };
      break;
    }
    case LockProc.CANCEL:
    case LockProc.UNLOCK:
      c = { proc, lock: readNlmLock(r) };
      break;
    case LockProc.SHARE:
    case LockProc.UNSHARE:
      c = {
        proc,
        share: {
          fh: Uint8Array.from(r.opaque(MAX_LOCK_FH_BYTES)),
          callerName: r.string(MAX_CALLER_NAME_BYTES),
          oh: Uint8Array.from(r.opaque(MAX_OWNER_HANDLE_BYTES)),
          mode: r.u32(),
          access: r.u32(),
        },
      };
      if (c.share.mode > 3 || c.share.access > 3) throw new XdrError('bad share mode or access');
      break;
    case LockProc.FREE_ALL:
      c = { proc, callerName: r.string(MAX_CALLER_NAME_BYTES) };
      break;
    case LockProc.RENEW:
      c = { proc };
      break;
    case LockProc.GRANT_DONE:
      c = { proc, id: r.u32(), release: r.bool() };
      break;
    default:
      throw new XdrError(`unknown lock procedure ${proc}`);
  }
  r.end();
  return c;
}

function runChange(c: Change, ctx: LockContext, renewed: boolean): Uint8Array {
  const t = ctx.table;
  switch (c.proc) {
    case LockProc.LOCK: {
      const file = ctx.fileKey(c.lock.fh, true);
      if (!file) return stat(NlmStat.STALE_FH);
      if (!renewed) return stat(NlmStat.DENIED_NOLOCKS);
      const block = c.block ? { ...c.info, handle: c.lock.fh } : undefined;
      return stat(t.lock(request(c.lock, ctx.relay, file), block));
    }
    case LockProc.CANCEL:
    case LockProc.UNLOCK: {
      // A removed file's locks are still released: only the handle must be one of ours.
      const file = ctx.fileKey(c.lock.fh, false);
      if (!file) return stat(NlmStat.STALE_FH);
      const req = request(c.lock, ctx.relay, file);
      return stat(c.proc === LockProc.CANCEL ? t.cancel(req) : t.unlock(req));
    }
    case LockProc.SHARE: {
      const file = ctx.fileKey(c.share.fh, true);
      if (!file) return stat(NlmStat.STALE_FH);
      if (!renewed) return stat(NlmStat.DENIED_NOLOCKS);
      return stat(t.share(sharer(c.share, ctx.relay, file)));
    }
    case LockProc.UNSHARE: {
      const file = ctx.fileKey(c.share.fh, false);
      if (!file) return stat(NlmStat.STALE_FH);
      return stat(t.unshare(sharer(c.share, ctx.relay, file)));
    }
    case LockProc.FREE_ALL:
      t.release(ctx.relay, c.callerName);
      return stat(NlmStat.GRANTED);
    case LockProc.RENEW: {
      const waits = t.waiters.some((w) => w.owner.relay === ctx.relay);
      return new XdrWriter(12).u32(NlmStat.GRANTED).bool(t.holds(ctx.relay)).bool(waits).bytes();
    }
    case LockProc.GRANT_DONE:
      return stat(t.grantDone(ctx.relay, c.id, c.release) ? NlmStat.GRANTED : NlmStat.DENIED);
  }
}

function sharer(s: NlmShare, relay: number, file: Uint8Array) {
  return { ...s, fh: Buffer.from(file).toString('hex'), relay };
}

export interface PendingGrant {
  id: number;
  version: number;
  host: string;
  cookie: Uint8Array;
  lock: NlmLock;
}

function encodeGrants(ws: Waiter[], waiting: number): Uint8Array {
  const w = new XdrWriter(256).u32(ws.length);
  for (const x of ws) {
    w.u32(x.id).u32(x.version).string(x.host).opaque(x.cookie);
    writeNlmLock(w, { ...heldToNlm(x), fh: x.handle });
  }
  return w.u32(waiting).bytes();
}

/** A GRANTS result; undefined for what cannot be one. */
export function decodeGrants(
  body: Uint8Array,
): { grants: PendingGrant[]; waiting: number } | undefined {
  try {
    const r = new XdrReader(body);
    const n = r.u32();
    if (n > MAX_WAITERS) return undefined;
    const out: PendingGrant[] = [];
    for (let i = 0; i < n; i++) {
      out.push({
        id: r.u32(),
        version: r.u32(),
        host: r.string(MAX_HOST_BYTES),
        cookie: Uint8Array.from(r.opaque(MAX_COOKIE_BYTES)),
        lock: readNlmLock(r),
      });
    }
    const waiting = r.u32();
    r.end();
    return { grants: out, waiting };
  } catch {
    return undefined;
  }
}

export interface TestOutcome {
  stat: number;
  holder?: { exclusive: boolean; svid: number; oh: Uint8Array; offset: bigint; length: bigint };
}

export function decodeTestResult(body: Uint8Array): TestOutcome | undefined {
  try {
    const r = new XdrReader(body);
    const s = r.u32();
    if (s !== NlmStat.DENIED) {
      r.end();
      return { stat: s };
    }
    const holder = {
      exclusive: r.bool(),
      svid: r.i32(),
      oh: Uint8Array.from(r.opaque(MAX_OWNER_HANDLE_BYTES)),
      offset: readU64(r),
      length: readU64(r),
    };
    r.end();
    return { stat: s, holder };
  } catch {
    return undefined;
  }
}

/** The leading status of a lock result (and RENEW's two flags); throws XdrError if none. */
export function decodeStat(body: Uint8Array): { stat: number; holds: boolean; waits: boolean } {
  const r = new XdrReader(body);
  const s = r.u32();
  if (r.offset + 8 <= body.length) return { stat: s, holds: r.bool(), waits: r.bool() };
  return { stat: s, holds: false, waits: false };
}
