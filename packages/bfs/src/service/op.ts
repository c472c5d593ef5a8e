/**
 * How an NFS or MOUNT call travels through PBFT: the relay encodes the procedure, the caller's
 * credentials after export policy, and the XDR arguments; every replica decodes the same bytes.
 * The result travels back as a status byte plus the XDR result body or an RPC error.
 */
import { type Credentials, MAX_AUTH_SYS_GIDS, RpcError, type RpcErrorKind } from 'nfs-server-ts';

/** Version byte of the operation format: handles bound to an export (export-view.ts). */
export const OP_FORMAT = 2;
/**
 * The format of before exports: bare file-system handles, MNT arguments without an export
 * index. Commit logs written then hold such operations; a state upgraded from then runs them
 * as they first ran until its first operation of the new format (BfsService), never after.
 */
export const LEGACY_OP_FORMAT = 1;

export enum OpKind {
  /** An NFS call (program 100003), version 2 or 3. */
  Nfs = 1,
  /** MOUNT's MNT (v1 or v3): resolve a path to a handle; the mount list stays with the relay. */
  Mount = 2,
  /**
   * Extents of UNSTABLE writes the relay answered from its buffer (service/flush.ts), each
   * executed as an NFSv3 WRITE with the op's credentials; `version` and `procedure` are 0.
   */
  Flush = 3,
  /**
   * A lock operation (locks/lock-op.ts): `procedure` is a LockProc, `version` the NLM version
   * of the call it came from (0 for NSM and the relay's own renewals and polls).
   */
  Lock = 4,
}

export interface Op {
  kind: OpKind;
  version: number;
  procedure: number;
  cred: Credentials;
  /** The export is read-only: mutating calls answer ROFS. */
  readOnlyExport: boolean;
  /**
   * The call came over UDP, so its reply must fit one datagram: replicas clamp READ, READDIR
   * and FSINFO sizes to UDP_MAX_IO_SIZE. It travels in the operation, not in a replica's
   * socket, so every replica executes the call with the same bound. Absent means TCP.
   */
  datagram?: boolean;
  args: Uint8Array;
  /** Of LEGACY_OP_FORMAT (only commit logs of before exports hold such operations). */
  legacy?: boolean;
}

/** Bits of the flags byte. */
const FLAG_READ_ONLY_EXPORT = 1;
const FLAG_DATAGRAM = 2;

/**
 * Fixed bytes before the gids: format, kind, version, flags (FLAG_*), procedure, uid, gid, gid
 * count.
 */
const HEADER = 1 + 1 + 1 + 1 + 4 + 4 + 4 + 1;

export class OpDecodeError extends Error {}

export function encodeOp(op: Op): Uint8Array {
  const gids = op.cred.gids.slice(0, MAX_AUTH_SYS_GIDS);
  const out = new Uint8Array(HEADER + 4 * gids.length + op.args.length);
  const v = new DataView(out.buffer);
  out[0] = op.legacy ? LEGACY_OP_FORMAT : OP_FORMAT;
  out[1] = op.kind;
  out[2] = op.version;
  out[3] = (op.readOnlyExport ? FLAG_READ_ONLY_EXPORT : 0) | (op.datagram ? FLAG_DATAGRAM : 0);
  v.setUint32(4, op.procedure);
  v.setUint32(8, op.cred.uid);
  v.setUint32(12, op.cred.gid);
  out[16] = gids.length;
  let p = HEADER;
  for (const g of gids) {
    v.setUint32(p, g);
    p += 4;
  }
  out.set(op.args, p);
  return out;
}

/** Decodes an operation; throws OpDecodeError on anything malformed (a faulty relay or client). */
export function decodeOp(bytes: Uint8Array): Op {
  if (bytes.length < HEADER) throw new OpDecodeError('operation too short');
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes[0] !== OP_FORMAT && bytes[0] !== LEGACY_OP_FORMAT)
    throw new OpDecodeError(`unknown operation format ${bytes[0]}`);
  const kind = bytes[1];
  if (kind !== OpKind.Nfs && kind !== OpKind.Mount && kind !== OpKind.Flush && kind !== OpKind.Lock)
    throw new OpDecodeError(`bad kind ${kind}`);
  if ((bytes[3] & ~(FLAG_READ_ONLY_EXPORT | FLAG_DATAGRAM)) !== 0) {
    throw new OpDecodeError('bad flags');
  }
  const ngids = bytes[16];
  if (ngids > MAX_AUTH_SYS_GIDS) throw new OpDecodeError(`${ngids} gids`);
  const argsStart = HEADER + 4 * ngids;
  if (bytes.length < argsStart) throw new OpDecodeError('truncated gids');
  const gids: number[] = [];
  for (let i = 0; i < ngids; i++) gids.push(v.getUint32(HEADER + 4 * i));
  return {
    kind,
    version: bytes[2],
    readOnlyExport: (bytes[3] & FLAG_READ_ONLY_EXPORT) !== 0,
    datagram: (bytes[3] & FLAG_DATAGRAM) !== 0,
    procedure: v.getUint32(4),
    cred: { uid: v.getUint32(8), gid: v.getUint32(12), gids },
    args: bytes.subarray(argsStart),
    ...(bytes[0] === LEGACY_OP_FORMAT ? { legacy: true } : {}),
  };
}

/**
 * MOUNT's MNT travels with the index of the export the relay chose for the client (u32) before
 * its XDR arguments: the replicas resolve the path inside that export and bind the handle to it.
 */
export function encodeMountArgs(exportIndex: number, args: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + args.length);
  new DataView(out.buffer).setUint32(0, exportIndex);
  out.set(args, 4);
  return out;
}

export function decodeMountArgs(
  args: Uint8Array,
): { exportIndex: number; args: Uint8Array } | undefined {
  if (args.length < 4) return undefined;
  const exportIndex = new DataView(args.buffer, args.byteOffset, 4).getUint32(0);
  return { exportIndex, args: args.subarray(4) };
}

const RESULT_OK = 0;
const RESULT_RPC_ERROR = 1;
const ERROR_KINDS: RpcErrorKind['kind'][] = [
  'prog_unavail',
  'prog_mismatch',
  'proc_unavail',
  'garbage_args',
  'system_err',
  'rpc_mismatch',
  'auth_error',
];

export function encodeResult(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + body.length);
  out[0] = RESULT_OK;
  out.set(body, 1);
  return out;
}

export function encodeRpcErrorResult(e: RpcErrorKind): Uint8Array {
  const out = new Uint8Array(10);
  const v = new DataView(out.buffer);
  out[0] = RESULT_RPC_ERROR;
  out[1] = ERROR_KINDS.indexOf(e.kind);
  if (e.kind === 'prog_mismatch' || e.kind === 'rpc_mismatch') {
    v.setUint32(2, e.low);
    v.setUint32(6, e.high);
  } else if (e.kind === 'auth_error') {
    v.setUint32(2, e.stat);
  }
  return out;
}

/** The XDR result body, or an RpcError for the relay to answer with. */
export function decodeResult(bytes: Uint8Array): Uint8Array | RpcError {
  if (bytes.length >= 1 && bytes[0] === RESULT_OK) return bytes.subarray(1);
  if (bytes.length === 10 && bytes[0] === RESULT_RPC_ERROR) {
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const kind = ERROR_KINDS[bytes[1]];
    if (kind === 'prog_mismatch' || kind === 'rpc_mismatch') {
      return new RpcError({ kind, low: v.getUint32(2), high: v.getUint32(6) });
    }
    if (kind === 'auth_error') return new RpcError({ kind, stat: v.getUint32(2) });
    if (kind) return new RpcError({ kind } as RpcErrorKind);
  }
  return new RpcError({ kind: 'system_err' });
}
