/**
 * BFS as a PBFT state machine: every replica runs NFS calls through the nfs-server-ts procedure
 * layer over the BFS file system, with the agreed time. Page 0 of the page store is the service
 * header (the last agreed time); the file system fills the rest. Both are in the checkpointed
 * state, so the digest covers them and state transfer restores them.
 */
import type { CheckpointedState, TransferableState } from '@bfs/page-store';
import type { Service } from '@bfs/pbft';
import { createHash } from 'node:crypto';
import {
  type ExportedTree,
  ExportedFileSystem,
  MountService,
  MountProc,
  MountStatus,
  NfsError,
  XdrError,
  NFS_PROGRAM,
  type NfsTime,
  RpcError,
  XdrWriter,
  executeNfsCall,
  isReadOnlyCall,
} from 'nfs-server-ts';
import { BfsFileSystem } from '../fs/bfs-filesystem';
import { mkfs } from '../fs/mkfs';
import {
  MAX_CLOCK_SKEW_NS,
  agreeTime,
  checkProposedTime,
  isValidTime,
  wallClockTime,
} from '../time';
import { executeFlush } from './flush';
import { LOCK_REGION_BYTES } from '../locks/limits';
import { LockStore } from '../locks/lock-store';
import { executeLockOp, isReadOnlyLockProc } from '../locks/lock-op';
import { NlmStat } from '../locks/lock-table';
import {
  OpDecodeError,
  OpKind,
  decodeMountArgs,
  decodeOp,
  encodeResult,
  encodeRpcErrorResult,
} from './op';
import { StateWindow } from './window';

/** Magic of the service header in page 0. */
export const SERVICE_MAGIC = 'BFSSVC01';
/**
 * Header layout: magic (8), last agreed time seconds (u32), nanoseconds (u32), lock region
 * bytes (u32: the lock table's region at the end of the state; 0 in states formatted before
 * locking existed, which then answer every lock call DENIED_NOLOCKS), flags (u32: FLAG_BOUND).
 */
const HDR_MAGIC = 0;
const HDR_LAST_SECONDS = 8;
const HDR_LAST_NSECONDS = 12;
const HDR_LOCK_REGION = 16;
const HDR_FLAGS = 20;
const HDR_SIZE = 24;
/**
 * Operations of LEGACY_OP_FORMAT (bare handles, of before exports) are refused: set when the
 * state is formatted, and in a state of before exports by its first read-write operation of
 * the current format. Until then such operations run as they first ran (a commit log of before
 * the upgrade replays them), afterwards they would bypass the export rules.
 */
const FLAG_BOUND = 1;
/** States smaller than this many lock regions get no lock table (tiny test states). */
const MIN_REGIONS_FOR_LOCKS = 4;
/** Bytes of the agreed-time proposal carried in a pre-prepare: seconds u32, nanoseconds u32. */
export const NONDET_BYTES = 8;
/** Default logical size of the replicated state (16 GiB; pages are allocated lazily). */
export const DEFAULT_STATE_SIZE = 16 * 2 ** 30;

export interface BfsServiceOptions {
  /** Largest distance between the primary's proposed time and a backup's clock. */
  maxSkewNs?: bigint;
  /**
   * Secret seed of the directory name hash, the same on every replica (from cluster.json), so a
   * client cannot craft names that all collide. Used only when formatting a new state.
   */
  hashSeed?: number;
  /**
   * File-system id carried in every handle (random per cluster, from cluster.json), so that a
   * handle of another cluster is STALE here. Used only when formatting a new state.
   */
  fsid?: number;
  /**
   * Secret key of the inode generations (GENERATION_KEY_BYTES, from cluster.json, the same on
   * every replica), so that handles cannot be guessed. Used only when formatting a new state.
   */
  generationKey?: Uint8Array;
  /**
   * The exports every replica enforces (from cluster.json, the same on every replica): each
   * handle is bound to one, writes through a read-only one answer ROFS. Default: '/' read-write.
   */
  exports?: readonly ExportedTree[];
  /**
   * Secret key of the handle-to-export MACs, the same on every replica and unknown to relays
   * (keys/exports.key), so a relay cannot rebind a handle to a writable export. Default: one
   * derived from the hash seed and fsid (which relays can read: see docs/operations.md).
   */
  exportKey?: Uint8Array;
  /**
   * The relay a PBFT client id belongs to (its lease and its locks are the relay's, whichever
   * of its ids sent the call); default: the id itself.
   */
  relayOf?: (clientId: number) => number;
  /** The relays' lease on their locks (default LEASE_PERIOD_S; from cluster.json). */
  leaseSeconds?: number;
}

/** The export everyone gets when the configuration names none: all of it, read-write. */
export const DEFAULT_EXPORTED: readonly ExportedTree[] = [{ path: '/', readOnly: false }];

/** The export MAC key of a cluster without keys/exports.key (see BfsServiceOptions). */
export function derivedExportKey(opts: Pick<BfsServiceOptions, 'hashSeed' | 'fsid'>): Uint8Array {
  const b = Buffer.alloc(8);
  b.writeUInt32BE((opts.hashSeed ?? 0) >>> 0, 0);
  b.writeUInt32BE((opts.fsid ?? 0) >>> 0, 4);
  return new Uint8Array(createHash('sha256').update('BFS-TS export key v1').update(b).digest());
}

export function encodeTime(t: NfsTime): Uint8Array {
  const out = new Uint8Array(NONDET_BYTES);
  const v = new DataView(out.buffer);
  v.setUint32(0, t.seconds);
  v.setUint32(4, t.nseconds);
  return out;
}

export function decodeTime(bytes: Uint8Array): NfsTime | undefined {
  if (bytes.length !== NONDET_BYTES) return undefined;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const t = { seconds: v.getUint32(0), nseconds: v.getUint32(4) };
  return isValidTime(t) ? t : undefined;
}

export class BfsService implements Service {
  readonly fs: BfsFileSystem;
  /** The file system as its exports show it: what every NFS and MOUNT call runs against. */
  readonly exported: ExportedFileSystem;
  private readonly mounts: MountService[];
  /** MNT of '/' as before exports, for operations of LEGACY_OP_FORMAT. */
  private readonly legacyMount: MountService;
  private readonly maxSkewNs: bigint;
  /** The lock table; undefined in a state formatted without a lock region. */
  readonly locks: LockStore | undefined;
  private readonly relayOf: (clientId: number) => number;
  private readonly leaseSeconds: number | undefined;
  /** Operations rejected as malformed (a faulty relay could send them). */
  malformedOps = 0;

  constructor(
    readonly state: TransferableState,
    opts: BfsServiceOptions = {},
  ) {
    this.maxSkewNs = opts.maxSkewNs ?? MAX_CLOCK_SKEW_NS;
    this.relayOf = opts.relayOf ?? ((id) => id);
    this.leaseSeconds = opts.leaseSeconds;
    const formatted = BfsService.isFormatted(state);
    const lockBytes = formatted
      ? new DataView(state.read(HDR_LOCK_REGION, 4).buffer).getUint32(0)
      : state.size >= MIN_REGIONS_FOR_LOCKS * LOCK_REGION_BYTES
        ? LOCK_REGION_BYTES
        : 0;
    const fsBytes = state.size - state.pageSize - lockBytes;
    const window = new StateWindow(state, state.pageSize, fsBytes);
    this.locks =
      lockBytes > 0
        ? new LockStore(new StateWindow(state, state.size - lockBytes, lockBytes))
        : undefined;
    if (!formatted) {
      // Every replica formats the same empty store identically, so the first digests agree.
      mkfs(window, {
        hashSeed: opts.hashSeed,
        fsid: opts.fsid,
        generationKey: opts.generationKey,
      });
      const hdr = new Uint8Array(HDR_SIZE);
      hdr.set(Buffer.from(SERVICE_MAGIC, 'latin1'), HDR_MAGIC);
      new DataView(hdr.buffer).setUint32(HDR_LOCK_REGION, lockBytes);
      new DataView(hdr.buffer).setUint32(HDR_FLAGS, FLAG_BOUND);
      state.write(0, hdr);
    }
    this.fs = new BfsFileSystem(window);
    const trees = opts.exports ?? DEFAULT_EXPORTED;
    this.exported = new ExportedFileSystem(
      this.fs,
      trees,
      opts.exportKey ?? derivedExportKey(opts),
    );
    this.mounts = trees.map((e, i) => new MountService(this.exported.view(i), e.path));
    this.legacyMount = new MountService(this.fs, '/');
  }

  /** Whether operations of LEGACY_OP_FORMAT still run here (FLAG_BOUND). */
  get acceptsLegacyOps(): boolean {
    return (new DataView(this.state.read(HDR_FLAGS, 4).buffer).getUint32(0) & FLAG_BOUND) === 0;
  }

  static isFormatted(state: CheckpointedState): boolean {
    return Buffer.from(state.read(HDR_MAGIC, 8)).toString('latin1') === SERVICE_MAGIC;
  }

  /** The last agreed time, as recorded in the state. */
  lastTime(): NfsTime {
    const v = new DataView(this.state.read(0, HDR_SIZE).buffer);
    return { seconds: v.getUint32(HDR_LAST_SECONDS), nseconds: v.getUint32(HDR_LAST_NSECONDS) };
  }

  private setLastTime(t: NfsTime): void {
    const b = new Uint8Array(8);
    const v = new DataView(b.buffer);
    v.setUint32(0, t.seconds);
    v.setUint32(4, t.nseconds);
    this.state.write(HDR_LAST_SECONDS, b);
  }

  execute(
    opBytes: Uint8Array,
    clientId: number,
    nondet: Uint8Array,
    readOnly: boolean,
  ): Uint8Array {
    let op;
    try {
      op = decodeOp(opBytes);
    } catch (e) {
      if (!(e instanceof OpDecodeError)) throw e;
      this.malformedOps++;
      return encodeRpcErrorResult({ kind: 'garbage_args' });
    }
    if (op.legacy && !this.acceptsLegacyOps) {
      this.malformedOps++;
      return encodeRpcErrorResult({ kind: 'garbage_args' });
    }
    if (!op.legacy && !readOnly && this.acceptsLegacyOps) {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, FLAG_BOUND);
      this.state.write(HDR_FLAGS, b);
    }
    // Legacy operations name files by their bare handles, as when they first ran.
    const fs = op.legacy ? this.fs : this.exported;
    let time = this.lastTime();
    if (!readOnly) {
      // An undecodable proposal cannot get here: backups refused to prepare it (checkNondet).
      const proposed = decodeTime(nondet) ?? time;
      time = agreeTime(proposed, time);
      this.setLastTime(time);
    }
    // Permissions are always checked, on the read-only path too, from the credential in the
    // operation: the relay cannot turn the checks off, only vouch for the uid it forwards.
    const ctx = {
      cred: op.cred,
      time,
      readOnly: op.readOnlyExport,
      datagram: op.datagram,
      checkPermissions: true,
    };
    try {
      if (op.kind === OpKind.Mount) {
        if (op.procedure !== MountProc.MNT) throw new RpcError({ kind: 'proc_unavail' });
        if (op.legacy)
          return encodeResult(
            this.legacyMount.execute(op.version, op.procedure, op.args, {
              host: 'relay',
              allowed: true,
            }),
          );
        // The relay checked the client against the export's rules before forwarding; the
        // path must lie in the export it names, and the handle is bound to that export.
        const m = decodeMountArgs(op.args);
        if (!m) return encodeRpcErrorResult({ kind: 'garbage_args' });
        const mount = this.mounts[m.exportIndex];
        if (!mount) return encodeResult(new XdrWriter(4).u32(MountStatus.NOENT).bytes());
        return encodeResult(
          mount.execute(op.version, op.procedure, m.args, { host: 'relay', allowed: true }),
        );
      }
      if (op.kind === OpKind.Lock)
        return this.lock(op.procedure, op.args, clientId, time, readOnly, op.legacy === true);
      if (op.kind === OpKind.Flush) {
        if (readOnly) return encodeRpcErrorResult({ kind: 'system_err' });
        return encodeResult(executeFlush(fs, op.args, ctx));
      }
      if (readOnly && !isReadOnlyCall(NFS_PROGRAM, op.version, op.procedure)) {
        // A client asked for the read-only path for a call that writes: refuse, do not execute.
        return encodeRpcErrorResult({ kind: 'system_err' });
      }
      return encodeResult(executeNfsCall(fs, NFS_PROGRAM, op.version, op.procedure, op.args, ctx));
    } catch (e) {
      if (e instanceof RpcError) return encodeRpcErrorResult(e.reply);
      throw e;
    }
  }

  /** A lock operation on the replicated lock table (locks/lock-op.ts). */
  private lock(
    proc: number,
    args: Uint8Array,
    clientId: number,
    time: NfsTime,
    readOnly: boolean,
    legacy: boolean,
  ): Uint8Array {
    if (readOnly && !isReadOnlyLockProc(proc)) return encodeRpcErrorResult({ kind: 'system_err' });
    if (!this.locks) return encodeResult(new XdrWriter(4).u32(NlmStat.DENIED_NOLOCKS).bytes());
    // The table keys files by the backend's handle, after the export MAC is checked.
    const fileKey = (fh: Uint8Array, live: boolean) => {
      try {
        const inner = legacy ? fh : this.exported.unwrap(fh).inner;
        if (live) this.fs.getattr(inner);
        return inner;
      } catch (e) {
        if (e instanceof NfsError) return undefined;
        throw e;
      }
    };
    const ctx = {
      table: this.locks.table,
      relay: this.relayOf(clientId),
      now: time.seconds,
      leaseSeconds: this.leaseSeconds,
      fileKey,
    };
    try {
      const out = executeLockOp(proc, args, ctx, readOnly);
      if (out.changed) this.locks.save();
      return encodeResult(out.result);
    } catch (e) {
      if (e instanceof XdrError || e instanceof RangeError) {
        this.malformedOps++;
        return encodeRpcErrorResult({ kind: 'garbage_args' });
      }
      throw e;
    }
  }

  proposeNondet(now: number): Uint8Array {
    return encodeTime(wallClockTime(now));
  }

  checkNondet(nondet: Uint8Array, now: number): boolean {
    const t = decodeTime(nondet);
    return t !== undefined && checkProposedTime(t, wallClockTime(now), this.maxSkewNs).ok;
  }

  /** Forget caches derived from the pages (after a rollback or a state transfer). */
  stateReplaced(): void {
    this.fs.dropCaches();
    this.locks?.drop();
  }
}
