/**
 * XDR of the Network Lock Manager (NLM, program 100021; XNFS chapters 10 and 14) and of the
 * Network Status Monitor's calls a lock server meets (NSM, program 100024; XNFS chapter 11).
 * Versions 1 and 3 carry 32-bit offsets and a `uppid`; version 4 carries 64-bit offsets and an
 * `svid` in the same place, and more status codes. One set of types serves all: offsets are
 * bigints, and the version says how they travel.
 */
import { XdrError, type XdrReader, XdrWriter } from './xdr';

export const NLM_PROGRAM = 100021;
export const NSM_PROGRAM = 100024;
export const NSM_VERSION = 1;
/** NLM versions a lock server answers: 1 and 3 for NFSv2 clients, 4 for NFSv3 clients. */
export const NLM_VERSIONS = [1, 3, 4] as const;
/** XNFS LM_MAXSTRLEN: longest caller name. */
export const LM_MAXSTRLEN = 1024;
/** XNFS MAXNETOBJ_SZ: longest netobj (cookie, file handle, owner handle). */
export const MAXNETOBJ_SZ = 1024;
/** XNFS SM_MAXSTRLEN: longest host name NSM carries. */
export const SM_MAXSTRLEN = 1024;

export enum NlmProc {
  NULL = 0,
  TEST = 1,
  LOCK = 2,
  CANCEL = 3,
  UNLOCK = 4,
  GRANTED = 5,
  TEST_MSG = 6,
  LOCK_MSG = 7,
  CANCEL_MSG = 8,
  UNLOCK_MSG = 9,
  GRANTED_MSG = 10,
  TEST_RES = 11,
  LOCK_RES = 12,
  CANCEL_RES = 13,
  UNLOCK_RES = 14,
  GRANTED_RES = 15,
  /** Version 3 and 4 only, from here on. */
  SHARE = 20,
  UNSHARE = 21,
  NM_LOCK = 22,
  FREE_ALL = 23,
}

export enum NsmProc {
  NULL = 0,
  STAT = 1,
  MON = 2,
  UNMON = 3,
  UNMON_ALL = 4,
  SIMU_CRASH = 5,
  NOTIFY = 6,
}

/** nlm_stats of versions 1-3: the first five nlm4_stats. */
export const NLM_V3_LAST_STAT = 4;

export interface NlmLockArg {
  callerName: string;
  fh: Uint8Array;
  oh: Uint8Array;
  /** svid (v4) or uppid (v1-3): the process on the client. */
  svid: number;
  offset: bigint;
  /** 0: to the end of the file. */
  length: bigint;
}

export interface NlmTestArgs {
  cookie: Uint8Array;
  exclusive: boolean;
  lock: NlmLockArg;
}

export interface NlmLockArgs extends NlmTestArgs {
  block: boolean;
  reclaim: boolean;
  state: number;
}

export interface NlmCancelArgs extends NlmTestArgs {
  block: boolean;
}

export interface NlmUnlockArgs {
  cookie: Uint8Array;
  lock: NlmLockArg;
}

export interface NlmShareArg {
  callerName: string;
  fh: Uint8Array;
  oh: Uint8Array;
  /** fsh_mode: what the sharer denies others (0 none, 1 read, 2 write, 3 both). */
  mode: number;
  /** fsh_access: what the sharer does (1 read, 2 write, 3 both). */
  access: number;
}

export interface NlmShareArgs {
  cookie: Uint8Array;
  share: NlmShareArg;
  reclaim: boolean;
}

export interface NlmHolder {
  exclusive: boolean;
  svid: number;
  oh: Uint8Array;
  offset: bigint;
  length: bigint;
}

export interface NlmRes {
  cookie: Uint8Array;
  stat: number;
}

export interface NlmTestRes extends NlmRes {
  /** Present when stat is DENIED. */
  holder?: NlmHolder;
}

export interface NlmShareRes extends NlmRes {
  sequence: number;
}

/** NLM FREE_ALL's nlm_notify and NSM SM_NOTIFY's stat_chge: a host and its new state. */
export interface NlmNotify {
  name: string;
  state: number;
}

const DENIED = 1;
const U32 = 2n ** 32n;
const U64_MAX = 2n ** 64n - 1n;

function readOffset(r: XdrReader, version: number): bigint {
  const a = BigInt(r.u32());
  return version >= 4 ? a * U32 + BigInt(r.u32()) : a;
}

/** Offsets past what the version carries are clamped (v1-3: 32 bits, v4: 64). */
function writeOffset(w: XdrWriter, version: number, v: bigint): void {
  if (version >= 4) {
    const c = v > U64_MAX ? U64_MAX : v;
    w.u32(Number(c / U32)).u32(Number(c % U32));
  } else w.u32(Number(v >= U32 ? U32 - 1n : v));
}

export function readNlmLock(r: XdrReader, version: number): NlmLockArg {
  return {
    callerName: r.string(LM_MAXSTRLEN),
    fh: Uint8Array.from(r.opaque(MAXNETOBJ_SZ)),
    oh: Uint8Array.from(r.opaque(MAXNETOBJ_SZ)),
    svid: r.i32(),
    offset: readOffset(r, version),
    length: readOffset(r, version),
  };
}

export function writeNlmLock(w: XdrWriter, version: number, l: NlmLockArg): XdrWriter {
  w.string(l.callerName).opaque(l.fh).opaque(l.oh).i32(l.svid);
  writeOffset(w, version, l.offset);
  writeOffset(w, version, l.length);
  return w;
}

function cookie(r: XdrReader): Uint8Array {
  return Uint8Array.from(r.opaque(MAXNETOBJ_SZ));
}

/** Decoders of the calls' arguments; each reads to the end and throws XdrError otherwise. */
function whole<T>(r: XdrReader, v: T): T {
  r.end();
  return v;
}

export function decodeNlmTestArgs(r: XdrReader, version: number): NlmTestArgs {
  return whole(r, { cookie: cookie(r), exclusive: r.bool(), lock: readNlmLock(r, version) });
}

export function decodeNlmLockArgs(r: XdrReader, version: number): NlmLockArgs {
  return whole(r, {
    cookie: cookie(r),
    block: r.bool(),
    exclusive: r.bool(),
    lock: readNlmLock(r, version),
    reclaim: r.bool(),
    state: r.i32(),
  });
}

export function decodeNlmCancelArgs(r: XdrReader, version: number): NlmCancelArgs {
  return whole(r, {
    cookie: cookie(r),
    block: r.bool(),
    exclusive: r.bool(),
    lock: readNlmLock(r, version),
  });
}

export function decodeNlmUnlockArgs(r: XdrReader, version: number): NlmUnlockArgs {
  return whole(r, { cookie: cookie(r), lock: readNlmLock(r, version) });
}

export function decodeNlmShareArgs(r: XdrReader): NlmShareArgs {
  const c = cookie(r);
  const share = {
    callerName: r.string(LM_MAXSTRLEN),
    fh: Uint8Array.from(r.opaque(MAXNETOBJ_SZ)),
    oh: Uint8Array.from(r.opaque(MAXNETOBJ_SZ)),
    mode: r.u32(),
    access: r.u32(),
  };
  if (share.mode > 3 || share.access > 3) throw new XdrError('bad fsh_mode or fsh_access');
  return whole(r, { cookie: c, share, reclaim: r.bool() });
}

export function decodeNlmNotify(r: XdrReader): NlmNotify {
  return whole(r, { name: r.string(SM_MAXSTRLEN), state: r.i32() });
}

export function encodeNlmTestArgs(version: number, a: NlmTestArgs): Uint8Array {
  const w = new XdrWriter(256).opaque(a.cookie).bool(a.exclusive);
  return writeNlmLock(w, version, a.lock).bytes();
}

export function encodeNlmLockArgs(version: number, a: NlmLockArgs): Uint8Array {
  const w = new XdrWriter(256).opaque(a.cookie).bool(a.block).bool(a.exclusive);
  return writeNlmLock(w, version, a.lock).bool(a.reclaim).i32(a.state).bytes();
}

export function encodeNlmCancelArgs(version: number, a: NlmCancelArgs): Uint8Array {
  const w = new XdrWriter(256).opaque(a.cookie).bool(a.block).bool(a.exclusive);
  return writeNlmLock(w, version, a.lock).bytes();
}

export function encodeNlmUnlockArgs(version: number, a: NlmUnlockArgs): Uint8Array {
  return writeNlmLock(new XdrWriter(256).opaque(a.cookie), version, a.lock).bytes();
}

export function encodeNlmShareArgs(a: NlmShareArgs): Uint8Array {
  const s = a.share;
  return new XdrWriter(256)
    .opaque(a.cookie)
    .string(s.callerName)
    .opaque(s.fh)
    .opaque(s.oh)
    .u32(s.mode)
    .u32(s.access)
    .bool(a.reclaim)
    .bytes();
}

export function encodeNlmNotify(n: NlmNotify): Uint8Array {
  return new XdrWriter(64).string(n.name).i32(n.state).bytes();
}

/** A status the version can carry: v1-3 know only the first five (others become DENIED). */
export function statForVersion(version: number, stat: number): number {
  return version >= 4 || stat <= NLM_V3_LAST_STAT ? stat : DENIED;
}

export function encodeNlmRes(version: number, res: NlmRes): Uint8Array {
  return new XdrWriter(32).opaque(res.cookie).u32(statForVersion(version, res.stat)).bytes();
}

export function decodeNlmRes(r: XdrReader): NlmRes {
  return whole(r, { cookie: cookie(r), stat: r.u32() });
}

export function encodeNlmTestRes(version: number, res: NlmTestRes): Uint8Array {
  const stat = statForVersion(version, res.stat);
  const w = new XdrWriter(64).opaque(res.cookie).u32(stat);
  if (stat === DENIED && res.holder) {
    const h = res.holder;
    w.bool(h.exclusive).i32(h.svid).opaque(h.oh);
    writeOffset(w, version, h.offset);
    writeOffset(w, version, h.length);
  } else if (stat === DENIED) {
    // DENIED always carries a holder; one the server cannot name is all of the file.
    w.bool(true).i32(0).opaque(new Uint8Array(0)).u32(0).u32(0);
    if (version >= 4) w.u32(0).u32(0);
  }
  return w.bytes();
}

export function decodeNlmTestRes(r: XdrReader, version: number): NlmTestRes {
  const c = cookie(r);
  const stat = r.u32();
  if (stat !== DENIED) return whole(r, { cookie: c, stat });
  const holder = {
    exclusive: r.bool(),
    svid: r.i32(),
    oh: Uint8Array.from(r.opaque(MAXNETOBJ_SZ)),
    offset: readOffset(r, version),
    length: readOffset(r, version),
  };
  return whole(r, { cookie: c, stat, holder });
}

export function encodeNlmShareRes(version: number, res: NlmShareRes): Uint8Array {
  return new XdrWriter(32)
    .opaque(res.cookie)
    .u32(statForVersion(version, res.stat))
    .i32(res.sequence)
    .bytes();
}

export function decodeNlmShareRes(r: XdrReader): NlmShareRes {
  return whole(r, { cookie: cookie(r), stat: r.u32(), sequence: r.i32() });
}

/** NSM sm_stat_res: result (0 success, 1 failure) and the monitor's state number. */
export function encodeSmStatRes(res: number, state: number): Uint8Array {
  return new XdrWriter(8).u32(res).i32(state).bytes();
}
