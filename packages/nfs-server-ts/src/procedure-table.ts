/**
 * The skeleton every NFS procedure runs in (NFSv3 and NFSv2 share it): decode the arguments,
 * check that nothing follows them, run the procedure's rule, then write the status and the
 * body for success or failure. A procedure is one small declaration (`Procedure`), so a reader
 * finds its rule in one place; the steps every call takes live here once.
 */
import { type CallContext, type FileSystem, NfsError, NfsStatus } from './filesystem';
import { RpcError, asRpcError } from './rpc';
import { XdrError, XdrReader, XdrWriter } from './xdr';

/** The context of one NFS call: the backend's CallContext plus export policy. */
export interface NfsCallContext extends CallContext {
  /** The export is read-only: mutating procedures answer ROFS. */
  readOnly?: boolean;
  /**
   * Check the caller's permissions from the objects' mode, owner and group before calling the
   * backend (ACCES/PERM) with the rules of permissions.ts, as knfsd does, including its owner
   * override for READ and WRITE, and drop set-id bits where POSIX says. Off by default: a
   * backend may enforce its own. The BFS replicas always check.
   */
  checkPermissions?: boolean;
  /**
   * The reply travels in one UDP datagram: READ counts, READDIR replies and FSINFO's sizes are
   * clamped to `UDP_MAX_IO_SIZE`, so a huge count gets a short read rather than a reply too
   * large to send.
   */
  datagram?: boolean;
}

/** What a procedure's steps are given: the backend and the call's context. */
export interface Call {
  readonly fs: FileSystem;
  readonly ctx: NfsCallContext;
}

/** The status an error carries: its own for an NfsError, SERVERFAULT for anything else. */
export function statusOf(e: unknown): NfsStatus {
  return e instanceof NfsError ? e.status : NfsStatus.SERVERFAULT;
}

/**
 * One procedure. `A` is what `decode` read, plus whatever `run` records on it for the failure
 * body (NFSv3's wcc data holds the attributes taken before the failing step); `R` is what the
 * success body needs. Every NfsError thrown by `run` becomes the reply's status; an XdrError
 * thrown by `decode` becomes GARBAGE_ARGS.
 */
export interface Procedure<A, R> {
  /** Reads the arguments; the skeleton then checks that no bytes follow them. */
  readonly decode: (r: XdrReader, call: Call) => A;
  /** The rule: checks, the backend call, and every attribute fetch the success body needs. */
  readonly run: (call: Call, args: A) => R;
  /** Writes the body that follows status OK. */
  readonly encodeOk: (w: XdrWriter, res: R, call: Call) => void;
  /** Writes the body that follows a failure status (absent: the status alone, as in NFSv2). */
  readonly encodeFail?: (w: XdrWriter, call: Call, args: A) => void;
}

/** One table entry: the skeleton with its procedure's types closed over. */
type Step = (fs: FileSystem, ctx: NfsCallContext, args: Uint8Array, w: XdrWriter) => void;

/** A version's procedures by number, with its status encoding and its reply writer. */
export class ProcedureTable {
  private readonly steps: (Step | undefined)[] = [];
  /** Calls run synchronously one at a time, so one writer serves them all. */
  private readonly writer: XdrWriter;

  /**
   * @param wireStatus the version's status code for an NfsStatus (NFSv2 has fewer)
   * @param writerBytes initial size of the reply writer (it grows to the largest reply)
   */
  constructor(
    private readonly wireStatus: (s: NfsStatus) => number,
    writerBytes: number,
  ) {
    this.writer = new XdrWriter(writerBytes);
  }

  /** Declares procedure `number` (NULL-like procedures use `withoutStatus` instead). */
  define<A, R>(number: number, p: Procedure<A, R>): this {
    const wireStatus = this.wireStatus;
    // Taken out once: the declarations differ in shape, so reading them per call is megamorphic.
    const { decode, run, encodeOk, encodeFail } = p;
    this.steps[number] = (fs, ctx, bytes, w) => {
      const call: Call = { fs, ctx };
      const r = new XdrReader(bytes);
      const args = decode(r, call);
      r.end();
      let res: R;
      try {
        res = run(call, args);
      } catch (e) {
        w.u32(wireStatus(statusOf(e)));
        encodeFail?.(w, call, args);
        return;
      }
      w.u32(NfsStatus.OK);
      encodeOk(w, res, call);
    };
    return this;
  }

  /** Declares procedures that take no arguments and answer an empty body (NULL, obsolete ones). */
  withoutStatus(...numbers: number[]): this {
    for (const n of numbers) this.steps[n] = noArguments;
    return this;
  }

  /**
   * Executes one call. Returns the encoded result (no RPC header). Throws RpcError for
   * PROC_UNAVAIL and GARBAGE_ARGS; every file-system failure is an NFS status inside the result.
   */
  execute(fs: FileSystem, procedure: number, args: Uint8Array, ctx: NfsCallContext): Uint8Array {
    const step = this.steps[procedure];
    if (step === undefined) throw new RpcError({ kind: 'proc_unavail' });
    const w = this.writer.reset();
    try {
      step(fs, ctx, args, w);
    } catch (e) {
      throw asRpcError(e);
    }
    return w.bytes();
  }
}

/** The step of a procedure with no arguments and no result: the call must be empty. */
function noArguments(_fs: FileSystem, _ctx: NfsCallContext, args: Uint8Array): void {
  // As XdrReader.end would say, without making a reader for nothing.
  if (args.length !== 0) throw new XdrError(`${args.length} unexpected trailing bytes`);
}

/** A read-only export refuses every procedure that would change it. */
export function refuseReadOnly(ctx: NfsCallContext): void {
  if (ctx.readOnly) throw new NfsError(NfsStatus.ROFS);
}
