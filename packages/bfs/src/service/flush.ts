/**
 * The flush operation of the write-back relay (relay/write-back.ts): the extents of UNSTABLE
 * WRITEs the relay answered from its buffer, in one replicated operation. Every replica runs each
 * extent as an NFSv3 WRITE (FILE_SYNC) with the operation's credentials, so permissions, quotas
 * of the file system and every check of WRITE apply as if the client had sent it, and answers
 * one NFS status per extent.
 *
 *   args:   u32 count, count x (opaque fh<NFS3_FHSIZE>, u64 offset, opaque data<MAX_IO_SIZE>)
 *   result: u32 count, count x u32 nfsstat3
 */
import {
  type FileSystem,
  NFS3_FHSIZE,
  NFS_PROGRAM,
  type NfsCallContext,
  Nfs3Proc,
  RpcError,
  XdrError,
  XdrReader,
  XdrWriter,
  executeNfsCall,
} from 'nfs-server-ts';
import { MAX_IO_SIZE } from '../fs/constants';

/** Extents in one flush operation at most (each costs a WRITE's work on every replica). */
export const MAX_FLUSH_EXTENTS = 256;
const FILE_SYNC = 2;

export interface FlushExtent {
  fh: Uint8Array;
  offset: number;
  data: Uint8Array;
}

export function encodeFlushArgs(extents: FlushExtent[]): Uint8Array {
  const size = extents.reduce((n, e) => n + e.data.length + e.fh.length + 24, 4);
  const w = new XdrWriter(size).u32(extents.length);
  for (const e of extents) w.opaque(e.fh).u64(e.offset).opaque(e.data);
  return w.bytes();
}

/** Throws RpcError garbage_args on anything malformed (a faulty relay could send it). */
export function decodeFlushArgs(args: Uint8Array): FlushExtent[] {
  try {
    const r = new XdrReader(args);
    const count = r.u32();
    if (count > MAX_FLUSH_EXTENTS) throw new XdrError(`${count} extents`);
    const out: FlushExtent[] = [];
    for (let i = 0; i < count; i++)
      out.push({ fh: r.opaque(NFS3_FHSIZE), offset: r.u64(), data: r.opaque(MAX_IO_SIZE) });
    r.end();
    return out;
  } catch (e) {
    if (e instanceof XdrError || e instanceof RangeError)
      throw new RpcError({ kind: 'garbage_args' });
    throw e;
  }
}

/** Runs every extent as a WRITE; returns the result (one status per extent). */
export function executeFlush(fs: FileSystem, args: Uint8Array, ctx: NfsCallContext): Uint8Array {
  const extents = decodeFlushArgs(args);
  const w = new XdrWriter(4 + 4 * extents.length).u32(extents.length);
  for (const e of extents) {
    const write = new XdrWriter(e.data.length + e.fh.length + 32)
      .opaque(e.fh)
      .u64(e.offset)
      .u32(e.data.length)
      .u32(FILE_SYNC)
      .opaque(e.data)
      .bytes();
    const reply = executeNfsCall(fs, NFS_PROGRAM, 3, Nfs3Proc.WRITE, write, ctx);
    w.u32(new DataView(reply.buffer, reply.byteOffset, reply.byteLength).getUint32(0));
  }
  return w.bytes();
}

/** The statuses of a flush result; undefined if it is not one (a faulty reply cannot be agreed). */
export function decodeFlushResult(body: Uint8Array, extents: number): number[] | undefined {
  try {
    const r = new XdrReader(body);
    if (r.u32() !== extents) return undefined;
    const out: number[] = [];
    for (let i = 0; i < extents; i++) out.push(r.u32());
    r.end();
    return out;
  } catch {
    return undefined;
  }
}
