/** The socket-free entry point: one NFS call in, its encoded result out. */
import type { FileSystem } from './filesystem';
import { NFS3_MUTATING, type NfsCallContext, executeNfs3 } from './nfs3';
import { NFS2_MUTATING, executeNfs2 } from './nfs2';
import { MOUNT_PROGRAM, NFS_PROGRAM, PORTMAP_PROGRAM, versionRange } from './programs';
import { RpcError } from './rpc';

/**
 * Executes one NFS call (program 100003, version 2 or 3) against `fs` and returns the encoded
 * result body (no RPC header, no xid). Deterministic given the backend state, the arguments and
 * `ctx` (whose `time` is the call's time). Throws RpcError for PROG_UNAVAIL, PROG_MISMATCH,
 * PROC_UNAVAIL and GARBAGE_ARGS; file-system errors are NFS statuses inside the result.
 */
export function executeNfsCall(
  fs: FileSystem,
  program: number,
  version: number,
  procedure: number,
  args: Uint8Array,
  ctx: NfsCallContext,
): Uint8Array {
  if (program !== NFS_PROGRAM) throw new RpcError({ kind: 'prog_unavail' });
  if (version === 3) return executeNfs3(fs, procedure, args, ctx);
  if (version === 2) return executeNfs2(fs, procedure, args, ctx);
  const range = versionRange(NFS_PROGRAM)!;
  throw new RpcError({ kind: 'prog_mismatch', ...range });
}

/** Calls whose replies the duplicate-request cache keeps (re-executing them would differ). */
export function isNonIdempotent(program: number, version: number, procedure: number): boolean {
  if (program === NFS_PROGRAM) {
    return version === 3
      ? NFS3_MUTATING.has(procedure)
      : version === 2 && NFS2_MUTATING.has(procedure);
  }
  // MNT and UMNT change the mount list; PORTMAP SET/UNSET change the table.
  if (program === MOUNT_PROGRAM) return procedure === 1 || procedure === 3 || procedure === 4;
  if (program === PORTMAP_PROGRAM) return procedure === 1 || procedure === 2;
  return false;
}

/** Whether a procedure only reads (BFS may run it on the read-only path). */
export function isReadOnlyCall(program: number, version: number, procedure: number): boolean {
  return program === NFS_PROGRAM && !isNonIdempotent(program, version, procedure);
}
