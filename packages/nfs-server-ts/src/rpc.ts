/** ONC RPC v2 messages (RFC 5531): calls, accepted and denied replies, AUTH_NONE and AUTH_SYS. */
import { XdrError, XdrReader, XdrWriter } from './xdr';

export const RPC_VERSION = 2;
export const MSG_CALL = 0;
export const MSG_REPLY = 1;

export enum AuthFlavor {
  NONE = 0,
  SYS = 1,
  SHORT = 2,
}

/** Largest opaque_auth body RFC 5531 allows. */
export const MAX_AUTH_BYTES = 400;
/** AUTH_SYS limits (RFC 5531 appendix A). */
export const MAX_MACHINE_NAME = 255;
export const MAX_AUTH_SYS_GIDS = 16;

export enum AcceptStat {
  SUCCESS = 0,
  PROG_UNAVAIL = 1,
  PROG_MISMATCH = 2,
  PROC_UNAVAIL = 3,
  GARBAGE_ARGS = 4,
  SYSTEM_ERR = 5,
}

export enum AuthStat {
  OK = 0,
  BADCRED = 1,
  REJECTEDCRED = 2,
  BADVERF = 3,
  REJECTEDVERF = 4,
  TOOWEAK = 5,
  INVALIDRESP = 6,
  FAILED = 7,
}

export interface OpaqueAuth {
  flavor: number;
  body: Uint8Array;
}

export interface AuthSys {
  stamp: number;
  machineName: string;
  uid: number;
  gid: number;
  gids: number[];
}

export interface RpcCall {
  xid: number;
  program: number;
  version: number;
  procedure: number;
  cred: OpaqueAuth;
  verf: OpaqueAuth;
  /** The procedure's arguments, still XDR-encoded. */
  args: Uint8Array;
}

/** Every non-SUCCESS outcome of a call, as the reply reports it. */
export type RpcErrorKind =
  | { kind: 'prog_unavail' }
  | { kind: 'prog_mismatch'; low: number; high: number }
  | { kind: 'proc_unavail' }
  | { kind: 'garbage_args' }
  | { kind: 'system_err' }
  | { kind: 'rpc_mismatch'; low: number; high: number }
  | { kind: 'auth_error'; stat: AuthStat };

/** An RPC-level failure. Handlers return or throw it; clients receive it as a rejection. */
export class RpcError extends Error {
  constructor(readonly reply: RpcErrorKind) {
    super(`RPC error: ${describe(reply)}`);
    this.name = 'RpcError';
  }
}

function describe(e: RpcErrorKind): string {
  switch (e.kind) {
    case 'prog_mismatch':
    case 'rpc_mismatch':
      return `${e.kind} (${e.low}..${e.high})`;
    case 'auth_error':
      return `auth_error (${AuthStat[e.stat] ?? e.stat})`;
    default:
      return e.kind;
  }
}

/**
 * The RPC outcome of a procedure that failed: an RpcError stands, arguments that did not decode
 * are GARBAGE_ARGS, anything else (a bug, not the caller's fault) is SYSTEM_ERR.
 */
export function asRpcError(e: unknown): RpcError {
  if (e instanceof RpcError) return e;
  return new RpcError({ kind: e instanceof XdrError ? 'garbage_args' : 'system_err' });
}

export const AUTH_NONE: OpaqueAuth = { flavor: AuthFlavor.NONE, body: new Uint8Array(0) };

function readAuth(r: XdrReader): OpaqueAuth {
  const flavor = r.u32();
  const body = r.opaque(MAX_AUTH_BYTES);
  return { flavor, body };
}

function writeAuth(w: XdrWriter, a: OpaqueAuth): void {
  w.u32(a.flavor);
  w.opaque(a.body);
}

/** Result of parsing the fixed call header; `rpc_mismatch` still carries the xid to answer. */
export type DecodedMessage =
  | { type: 'call'; call: RpcCall }
  | { type: 'rpc_mismatch'; xid: number }
  | { type: 'reply'; xid: number };

/** Parses a call message. Throws XdrError when the header itself is malformed (drop it). */
export function decodeMessage(bytes: Uint8Array): DecodedMessage {
  const r = new XdrReader(bytes);
  const xid = r.u32();
  const mtype = r.u32();
  if (mtype === MSG_REPLY) return { type: 'reply', xid };
  if (mtype !== MSG_CALL) throw new XdrError(`bad message type ${mtype}`);
  const rpcvers = r.u32();
  if (rpcvers !== RPC_VERSION) return { type: 'rpc_mismatch', xid };
  const program = r.u32();
  const version = r.u32();
  const procedure = r.u32();
  const cred = readAuth(r);
  const verf = readAuth(r);
  const args = bytes.subarray(r.offset);
  return { type: 'call', call: { xid, program, version, procedure, cred, verf, args } };
}

export function encodeCall(
  xid: number,
  program: number,
  version: number,
  procedure: number,
  args: Uint8Array,
  cred: OpaqueAuth = AUTH_NONE,
  verf: OpaqueAuth = AUTH_NONE,
): Uint8Array {
  const w = new XdrWriter(64 + args.length);
  w.u32(xid).u32(MSG_CALL).u32(RPC_VERSION).u32(program).u32(version).u32(procedure);
  writeAuth(w, cred);
  writeAuth(w, verf);
  w.fixed(args);
  return w.bytes();
}

/** An accepted SUCCESS reply carrying `result` (already XDR-encoded). */
export function encodeSuccessReply(xid: number, result: Uint8Array): Uint8Array {
  const w = new XdrWriter(24 + result.length);
  w.u32(xid).u32(MSG_REPLY).u32(0);
  writeAuth(w, AUTH_NONE);
  w.u32(AcceptStat.SUCCESS);
  w.fixed(result);
  return w.bytes();
}

export function encodeErrorReply(xid: number, e: RpcErrorKind): Uint8Array {
  const w = new XdrWriter(40);
  w.u32(xid).u32(MSG_REPLY);
  if (e.kind === 'rpc_mismatch' || e.kind === 'auth_error') {
    w.u32(1); // MSG_DENIED
    if (e.kind === 'rpc_mismatch') w.u32(0).u32(e.low).u32(e.high);
    else w.u32(1).u32(e.stat);
    return w.bytes();
  }
  w.u32(0); // MSG_ACCEPTED
  writeAuth(w, AUTH_NONE);
  switch (e.kind) {
    case 'prog_unavail':
      w.u32(AcceptStat.PROG_UNAVAIL);
      break;
    case 'prog_mismatch':
      w.u32(AcceptStat.PROG_MISMATCH).u32(e.low).u32(e.high);
      break;
    case 'proc_unavail':
      w.u32(AcceptStat.PROC_UNAVAIL);
      break;
    case 'garbage_args':
      w.u32(AcceptStat.GARBAGE_ARGS);
      break;
    case 'system_err':
      w.u32(AcceptStat.SYSTEM_ERR);
      break;
  }
  return w.bytes();
}

export type DecodedReply =
  { xid: number; ok: true; result: Uint8Array } | { xid: number; ok: false; error: RpcErrorKind };

/** Parses a reply message (client side). Throws XdrError if it is not one. */
export function decodeReply(bytes: Uint8Array): DecodedReply {
  const r = new XdrReader(bytes);
  const xid = r.u32();
  if (r.u32() !== MSG_REPLY) throw new XdrError('not a reply');
  const stat = r.u32();
  if (stat === 1) {
    const rejected = r.u32();
    if (rejected === 0)
      return { xid, ok: false, error: { kind: 'rpc_mismatch', low: r.u32(), high: r.u32() } };
    if (rejected === 1) return { xid, ok: false, error: { kind: 'auth_error', stat: r.u32() } };
    throw new XdrError(`bad reject_stat ${rejected}`);
  }
  if (stat !== 0) throw new XdrError(`bad reply_stat ${stat}`);
  readAuth(r);
  const accept = r.u32();
  switch (accept) {
    case AcceptStat.SUCCESS:
      return { xid, ok: true, result: bytes.subarray(r.offset) };
    case AcceptStat.PROG_UNAVAIL:
      return { xid, ok: false, error: { kind: 'prog_unavail' } };
    case AcceptStat.PROG_MISMATCH:
      return { xid, ok: false, error: { kind: 'prog_mismatch', low: r.u32(), high: r.u32() } };
    case AcceptStat.PROC_UNAVAIL:
      return { xid, ok: false, error: { kind: 'proc_unavail' } };
    case AcceptStat.GARBAGE_ARGS:
      return { xid, ok: false, error: { kind: 'garbage_args' } };
    case AcceptStat.SYSTEM_ERR:
      return { xid, ok: false, error: { kind: 'system_err' } };
    default:
      throw new XdrError(`bad accept_stat ${accept}`);
  }
}

export function decodeAuthSys(body: Uint8Array): AuthSys {
  const r = new XdrReader(body);
  const stamp = r.u32();
  const machineName = r.string(MAX_MACHINE_NAME);
  const uid = r.u32();
  const gid = r.u32();
  const n = r.u32();
  if (n > MAX_AUTH_SYS_GIDS) throw new XdrError(`AUTH_SYS with ${n} gids`);
  const gids: number[] = [];
  for (let i = 0; i < n; i++) gids.push(r.u32());
  r.end();
  return { stamp, machineName, uid, gid, gids };
}

export function encodeAuthSys(a: AuthSys): OpaqueAuth {
  const w = new XdrWriter(64);
  w.u32(a.stamp).string(a.machineName).u32(a.uid).u32(a.gid).u32(a.gids.length);
  for (const g of a.gids) w.u32(g);
  return { flavor: AuthFlavor.SYS, body: w.bytes() };
}
