/**
 * The relay: an ordinary NFS server to its clients (portmap, MOUNT, NFSv2/v3 on one port) that
 * turns every NFS call into a replicated operation. It keeps only what is local by nature: the
 * mount list (DUMP/UMNT), the duplicate-request cache, and the exports' address and squash
 * rules (exports.ts); which export a handle belongs to, and `ro`, the replicas enforce too.
 */
import {
  AuthStat,
  type ConnectionLimits,
  FileType,
  checkData,
  readFattr3,
  type Credentials,
  type FileSystem,
  MOUNT_PROGRAM,
  MountProc,
  MountService,
  MountStatus,
  NFS_PROGRAM,
  NfsError,
  NFS3_FHSIZE,
  Nfs2Proc,
  Nfs3Proc,
  NfsServer,
  NfsStatus,
  type RpcCallInfo,
  RpcError,
  XdrReader,
  XdrWriter,
  decodeV2Handle,
  executeNfsCall,
  isReadOnlyCall,
  MAX_PATH,
} from 'nfs-server-ts';
import { DEFAULT_EXPORTS, type ExportEntry, ExportRules } from './exports';
import { OpKind, decodeResult, encodeMountArgs, encodeOp } from './service/op';
import { FLUSH_EXTENT_BYTES, WriteBack } from './write-back';
import { KnownNames, readdirplusHandles, replyHandle } from './known-names';
import { LockManager, type LockManagerOptions } from './locks/relay-nlm';
import { NlmStat } from './locks/lock-table';
import { LOOKUP_CACHE_MS, LookupCache, credentialKey } from './lookup-cache';
import { decodeFlushArgs } from './service/flush';

/** Runs an operation through replication and resolves with the agreed result. */
export type Invoke = (op: Uint8Array, readOnly: boolean) => Promise<Uint8Array>;

export interface RelayOptions {
  invoke: Invoke;
  /**
   * The cluster's exports (cluster.json; default DEFAULT_EXPORTS): client addresses and
   * squashing are applied here, before the operation is built. Permissions are checked by
   * every replica, always, from the credential in the operation.
   */
  exports?: readonly ExportEntry[];
  /** Caps, timeouts and byte budgets of the NFS TCP connections (defaults: connections.ts). */
  connections?: ConnectionLimits;
  /** Told of every forwarded call (for metrics); `procedure` names it (procedureName). */
  observe?: (readOnly: boolean, seconds: number, ok: boolean, procedure: string) => void;
  /**
   * Answer NFSv3 UNSTABLE WRITEs from a write-back buffer and flush them through PBFT behind
   * the client's back (write-back.ts; default true). False: every WRITE is an agreement.
   */
  writeBack?: boolean;
  /** Where a client's lock manager listens, for GRANTED callbacks (default: its portmapper). */
  lockCallbackPort?: LockManagerOptions['callbackPort'];
  /** The relays' lease on their locks, from cluster.json (default LEASE_PERIOD_S). */
  leaseSeconds?: number;
  /**
   * How long NFSv3 LOOKUP replies are served from the relay's cache (lookup-cache.ts; default
   * LOOKUP_CACHE_MS, 0 off): how late changes through other relays may show here.
   */
  lookupCacheMs?: number;
  /** Entries of the lookup cache at most (default LOOKUP_CACHE_ENTRIES). */
  lookupCacheEntries?: number;
  /** The lookup cache's clock in ms (default performance.now; for tests). */
  lookupCacheClock?: () => number;
}

/** Writers whose permission to write a file the relay remembers (mayBuffer). */
export const MAX_PERMITTED = 16_384;

/** How long a relay that is stopped may take to flush its write-back buffer. */
export const RELAY_CLOSE_FLUSH_MS = 5000;

/** NFSv3 procedures whose one file handle is all they observe: they wait for that file only. */
const FILE_BARRIER = new Set<number>([
  Nfs3Proc.LINK,
  Nfs3Proc.GETATTR,
  Nfs3Proc.SETATTR,
  Nfs3Proc.ACCESS,
  Nfs3Proc.READ,
  Nfs3Proc.WRITE,
  Nfs3Proc.COMMIT,
]);
/**
 * NFSv3 procedures that cannot observe buffered data (the others wait for every file): READDIR
 * shows names only; REMOVE, RMDIR and RENAME change names, and a flush by handle after them
 * lands as it would have before (or fails STALE for a file gone, reported to its COMMIT).
 */
const NO_BARRIER = new Set<number>([
  Nfs3Proc.NULL,
  Nfs3Proc.READLINK,
  Nfs3Proc.FSINFO,
  Nfs3Proc.PATHCONF,
  Nfs3Proc.READDIR,
  Nfs3Proc.REMOVE,
  Nfs3Proc.RMDIR,
  Nfs3Proc.RENAME,
]);
/** Checked after the reply instead: asked again when they show a file with buffered data. */
const CHECKED_AFTER = new Set<number>([Nfs3Proc.LOOKUP, Nfs3Proc.READDIRPLUS]);
/** Calls that make a name: they wait only for a file they could name (beforeCreate). */
const CREATING = new Set<number>([
  Nfs3Proc.CREATE,
  Nfs3Proc.MKDIR,
  Nfs3Proc.SYMLINK,
  Nfs3Proc.MKNOD,
]);

/** The (directory handle, name) at the start of a call's arguments. */
function dirOp(
  args: Uint8Array,
  at = 0,
): { dir: Uint8Array; name: string; end: number } | undefined {
  try {
    const r = new XdrReader(args, at);
    const dir = Uint8Array.from(r.opaque(NFS3_FHSIZE));
    const name = r.string(MAX_PATH);
    return { dir, name, end: r.offset };
  } catch {
    return undefined;
  }
}

function lookupHandles(body: Uint8Array): Uint8Array[] | undefined {
  const h = replyHandle(body, false);
  return h ? [h.fh] : [];
}

/** Keeps KnownNames up to date with a call that succeeded. */
function learnNames(names: KnownNames, proc: number, args: Uint8Array, body: Uint8Array): void {
  if (body.length < 4 || new DataView(body.buffer, body.byteOffset).getUint32(0) !== NfsStatus.OK)
    return;
  if (proc === Nfs3Proc.LOOKUP || CREATING.has(proc)) {
    const op = dirOp(args);
    const h = replyHandle(body, proc !== Nfs3Proc.LOOKUP);
    if (op && h) names.saw(op.dir, op.name, h.fh, h.nlink);
  } else if (proc === Nfs3Proc.REMOVE || proc === Nfs3Proc.RMDIR) {
    const op = dirOp(args);
    if (op) names.removed(op.dir, op.name);
  } else if (proc === Nfs3Proc.RENAME) {
    const from = dirOp(args);
    const to = from && dirOp(args, from.end);
    if (from && to) names.renamed(from.dir, from.name, to.dir, to.name);
  } else if (proc === Nfs3Proc.LINK) {
    const fh = leadingHandle(args);
    const to = fh && dirOp(args, 4 + Math.ceil(fh.length / 4) * 4);
    if (fh && to) names.linked(fh, to.dir, to.name);
  }
}
const UNSTABLE = 0;

/** How the relay forwards one call: the squashed credential and the export's access. */
interface CallPolicy {
  cred: Credentials;
  readOnly: boolean;
  datagram: boolean;
}

/** The backend handle a call starts with (NFSv2's fixed 32 bytes hold it and its length). */
function firstHandle(version: number, args: Uint8Array): Uint8Array | undefined {
  if (version === 3) return leadingHandle(args);
  try {
    return args.length >= 32 ? decodeV2Handle(args.subarray(0, 32)) : undefined;
  } catch {
    return undefined;
  }
}

/** A backend whose every call fails with `status`: replies of the right shape for any call. */
function failingFileSystem(status: NfsStatus, why?: string): FileSystem {
  return new Proxy({} as FileSystem, {
    get: () => () => {
      throw new NfsError(status, why);
    },
  });
}

/** The procedure's own failure reply with `status` (ACCES, STALE...), or its RPC error. */
function refusedReply(call: RpcCallInfo, status: NfsStatus): Uint8Array | RpcError {
  try {
    return executeNfsCall(
      failingFileSystem(status),
      NFS_PROGRAM,
      call.version,
      call.procedure,
      call.args,
      {
        cred: { uid: 0, gid: 0, gids: [] },
        time: { seconds: 0, nseconds: 0 },
      },
    );
  } catch (e) {
    return e instanceof RpcError ? e : new RpcError({ kind: 'system_err' });
  }
}

/** The arguments of an NFSv3 WRITE, or undefined if they do not parse (the replicas answer). */
function parseWrite(
  args: Uint8Array,
): { fh: Uint8Array; offset: number; count: number; stable: number; data: Uint8Array } | undefined {
  try {
    const r = new XdrReader(args);
    const fh = r.opaque(NFS3_FHSIZE);
    const offset = r.u64();
    const count = r.u32();
    const stable = r.u32();
    const data = r.opaque(FLUSH_EXTENT_BYTES);
    r.end();
    return { fh, offset, count, stable, data };
  } catch {
    return undefined;
  }
}

function leadingHandle(args: Uint8Array): Uint8Array | undefined {
  try {
    return new XdrReader(args).opaque(NFS3_FHSIZE);
  } catch {
    return undefined;
  }
}

/** WRITE3resok of a buffered write: no wcc attributes (RFC 1813 allows it), UNSTABLE. */
function bufferedWriteReply(count: number, verifier: Uint8Array): Uint8Array {
  return new XdrWriter(28)
    .u32(NfsStatus.OK)
    .bool(false)
    .bool(false)
    .u32(count)
    .u32(UNSTABLE)
    .fixed(verifier)
    .bytes();
}

/** COMMIT3resok of a file whose writes the relay flushed: no wcc attributes, its verifier. */
function committedReply(verifier: Uint8Array): Uint8Array {
  return new XdrWriter(20).u32(NfsStatus.OK).bool(false).bool(false).fixed(verifier).bytes();
}

/** WRITE3resfail and COMMIT3resfail: the status and empty wcc_data. */
function failedReply(status: number): Uint8Array {
  return new XdrWriter(12).u32(status).bool(false).bool(false).bytes();
}

/** A WRITE or COMMIT reply of the replicas with the relay's verifier (its last 8 bytes). */
function withVerifier(body: Uint8Array, verifier: Uint8Array): Uint8Array {
  if (body.length < 12 || new DataView(body.buffer, body.byteOffset).getUint32(0) !== NfsStatus.OK)
    return body;
  const out = Uint8Array.from(body);
  out.set(verifier, out.length - 8);
  return out;
}

export interface RelayStats {
  forwarded: number;
  readOnly: number;
  failed: number;
}

/**
 * The backend of the relay's local MountService, which answers only DUMP, UMNT, UMNTALL and
 * EXPORT (none touches a file system). Should a call reach it anyway, the client gets
 * SERVERFAULT instead of a wrong answer.
 */
const FORWARD_ONLY = failingFileSystem(NfsStatus.SERVERFAULT, 'the relay has no local file system');

export class Relay {
  readonly server: NfsServer;
  /** Answers the MOUNT procedures that only touch the local mount list. */
  private readonly localMount: MountService;
  readonly stats: RelayStats = { forwarded: 0, readOnly: 0, failed: 0 };
  /** Which export admits which client, and how it squashes (exports.ts). */
  readonly rules: ExportRules;
  /** The write-back buffer of UNSTABLE writes; undefined when turned off. */
  readonly writeBack: WriteBack | undefined;
  /** Names of files seen in replies (write-back: which CREATE can touch buffered data). */
  private readonly names: KnownNames | undefined;
  /** Writers (file and credentials) found allowed to write the file (mayBuffer), oldest first. */
  private readonly permitted = new Set<string>();
  /** LOOKUP and READDIRPLUS calls asked again because they showed a file with buffered data. */
  writeBackRetries = 0;
  /** NLM and NSM on the same port (locks/relay-nlm.ts). */
  readonly locks: LockManager;
  /** LOOKUP replies served without a round through the replicas; undefined when turned off. */
  readonly lookups: LookupCache | undefined;

  constructor(private readonly opts: RelayOptions) {
    if (opts.writeBack ?? true) {
      this.writeBack = new WriteBack((cred, args) => this.flush(cred, args));
      this.names = new KnownNames();
    }
    this.rules = new ExportRules(opts.exports ?? DEFAULT_EXPORTS);
    const ttlMs = opts.lookupCacheMs ?? LOOKUP_CACHE_MS;
    if (ttlMs > 0) {
      this.lookups = new LookupCache({
        ttlMs,
        maxEntries: opts.lookupCacheEntries,
        now: opts.lookupCacheClock,
      });
    }
    // Relay mode: no local backend; NFS and MOUNT are the forwarding handlers below.
    this.server = new NfsServer({ ...opts.connections });
    this.localMount = new MountService(FORWARD_ONLY, '/', () => this.rules.listing());
    for (const v of [2, 3]) this.server.rpc.setHandler(NFS_PROGRAM, v, (c) => this.nfs(c));
    for (const v of [1, 3]) this.server.rpc.setHandler(MOUNT_PROGRAM, v, (c) => this.mount(v, c));
    const wb = this.writeBack;
    this.locks = new LockManager({
      invoke: opts.invoke,
      server: this.server,
      flushFile: wb && ((fh) => wb.flushFile(fh)),
      callbackPort: opts.lockCallbackPort,
      leaseSeconds: opts.leaseSeconds,
      exports: {
        admitsAny: (address) => this.rules.admitsAny(address),
        refusal: (fh, address) => {
          const e = this.rules.forHandle(fh, address);
          if ('index' in e) return undefined;
          return e.status === NfsStatus.ACCES ? NlmStat.DENIED : NlmStat.STALE_FH;
        },
      },
    });
    this.locks.start();
  }

  async listen(opts: { port?: number; host?: string }): Promise<number> {
    const port = await this.server.listen(opts);
    this.locks.register(port);
    return port;
  }

  /**
   * Stops serving; what the write-back buffer holds is flushed first, for `flushMs` at most
   * (a relay stopped cleanly loses nothing it acknowledged; a killed one loses what was not
   * committed, and its clients re-send it when they see the next relay's verifier).
   */
  async close(flushMs = RELAY_CLOSE_FLUSH_MS): Promise<void> {
    this.locks.close();
    const wb = this.writeBack;
    if (wb && !wb.idle && flushMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        wb.flushAll(),
        new Promise<void>((r) => (timer = setTimeout(r, flushMs))),
      ]);
      clearTimeout(timer);
    }
    return this.server.close();
  }

  /**
   * The export rules for one call: a client no export admits gets AUTH_TOOWEAK; a handle of an
   * export that does not admit it, ACCES (STALE for an export that does not exist), as the
   * procedure's own failure reply.
   */
  private policy(call: RpcCallInfo): CallPolicy | Uint8Array | RpcError {
    const address = call.client.address;
    if (!this.rules.admitsAny(address))
      return new RpcError({ kind: 'auth_error', stat: AuthStat.TOOWEAK });
    const datagram = call.client.transport === 'udp';
    const fh = firstHandle(call.version, call.args);
    let index: number;
    if (fh === undefined) {
      // Malformed arguments, or NFSv2's ROOT and WRITECACHE (no handle, no effect): the
      // replicas answer, as the first export that admits the client.
      index = this.rules.entries.findIndex((_, i) => this.rules.admits(i, address));
    } else {
      const r = this.rules.forHandle(fh, address);
      if ('status' in r) return refusedReply(call, r.status);
      index = r.index;
    }
    return {
      cred: this.rules.credentials(index, call.authSys),
      readOnly: this.rules.entries[index].access === 'ro',
      datagram,
    };
  }

  private async nfs(call: RpcCallInfo): Promise<Uint8Array | RpcError> {
    if (call.procedure === 0) {
      // NULL: nothing to agree on.
      return this.rules.admitsAny(call.client.address)
        ? new Uint8Array(0)
        : new RpcError({ kind: 'auth_error', stat: AuthStat.TOOWEAK });
    }
    const policy = this.policy(call);
    if (!isPolicy(policy)) return policy;
    const readOnly = isReadOnlyCall(NFS_PROGRAM, call.version, call.procedure);
    const cache = this.lookups;
    if (!cache) return this.nfsCall(call, readOnly, policy);
    if (readOnly) {
      if (call.version === 3 && call.procedure === Nfs3Proc.LOOKUP)
        return this.cachedLookup(cache, call, policy);
      return this.nfsCall(call, readOnly, policy);
    }
    // Before and after: a LOOKUP answered while the change runs is not stored (generation),
    // and none answered before it survives the reply.
    forgetChanged(cache, call);
    try {
      return await this.nfsCall(call, readOnly, policy);
    } finally {
      forgetChanged(cache, call);
    }
  }

  /** A LOOKUP from the cache, unless it names a file with buffered writes (stale attributes). */
  private async cachedLookup(
    cache: LookupCache,
    call: RpcCallInfo,
    policy: CallPolicy,
  ): Promise<Uint8Array | RpcError> {
    const hit = cache.get(call.args, policy.cred, (child) => !this.writeBack?.isDirty(child));
    if (hit) return hit;
    const since = cache.generation;
    const result = await this.nfsCall(call, true, policy);
    if (!(result instanceof RpcError)) cache.store(call.args, policy.cred, result, since);
    return result;
  }

  /** An NFS call past the export rules: through the write-back buffer when there is one. */
  private async nfsCall(
    call: RpcCallInfo,
    readOnly: boolean,
    policy: CallPolicy,
  ): Promise<Uint8Array | RpcError> {
    const wb = this.writeBack;
    if (!wb) return this.forward(OpKind.Nfs, call, readOnly, policy);
    if (call.version !== 3) {
      // NFSv2 calls of this relay's clients see what its NFSv3 clients wrote.
      if (!wb.idle) await wb.flushAll();
      return this.forward(OpKind.Nfs, call, readOnly, policy);
    }
    return this.nfs3WriteBack(wb, call, readOnly, policy);
  }

  /** An NFSv3 call with the write-back buffer: buffer, wait for a flush, or go on. */
  private async nfs3WriteBack(
    wb: WriteBack,
    call: RpcCallInfo,
    readOnly: boolean,
    ctx: CallPolicy,
  ): Promise<Uint8Array | RpcError> {
    const proc = call.procedure;
    if (proc === Nfs3Proc.WRITE) {
      const w = parseWrite(call.args);
      // DATA_SYNC and FILE_SYNC promise stable storage before the reply: an agreement, as before.
      if (w && w.stable === UNSTABLE && !ctx.readOnly && w.count === w.data.length) {
        const may = await this.mayBuffer(w.fh, ctx.cred);
        if (may > 0) return failedReply(may);
        if (may === 0) {
          const status = await wb.write(w.fh, ctx.cred, w.offset, w.data);
          return status ? failedReply(status) : bufferedWriteReply(w.count, wb.verifier);
        }
      }
    }
    const fh = FILE_BARRIER.has(proc) ? leadingHandle(call.args) : undefined;
    const names = this.names!;
    if (!wb.idle) {
      if (fh) await wb.flushFile(fh);
      else if (CREATING.has(proc)) await this.beforeCreate(wb, names, call.args);
      else if (!NO_BARRIER.has(proc) && !CHECKED_AFTER.has(proc)) await wb.flushAll();
    }
    if (fh && proc === Nfs3Proc.COMMIT) {
      const error = wb.takeError(fh);
      if (error) return failedReply(error);
      // Its data went through agreement as FILE_SYNC writes: stable on 2f + 1 replicas already.
      if (wb.takeFlushed(fh)) return committedReply(wb.verifier);
    }
    if (fh && proc === Nfs3Proc.WRITE) {
      const error = wb.errorOf(fh);
      if (error) return failedReply(error);
    }
    let result = await this.forward(OpKind.Nfs, call, readOnly, ctx);
    // LOOKUP and READDIRPLUS show the attributes of the files they name: when one has data
    // buffered, flush it and ask again, so what the client sees includes its writes.
    for (let again = 0; CHECKED_AFTER.has(proc) && !(result instanceof RpcError); again++) {
      const shown = proc === Nfs3Proc.LOOKUP ? lookupHandles(result) : readdirplusHandles(result);
      const dirty = shown === undefined ? [...wb.dirtyKeys()] : shown.filter((h) => wb.isDirty(h));
      if (dirty.length === 0) break;
      this.writeBackRetries++;
      if (again >= 2) await wb.flushAll();
      else await Promise.all(dirty.map((h) => wb.flushFile(h)));
      result = await this.forward(OpKind.Nfs, call, readOnly, ctx);
    }
    if (!(result instanceof RpcError)) learnNames(names, proc, call.args, result);
    if ((proc === Nfs3Proc.WRITE || proc === Nfs3Proc.COMMIT) && !(result instanceof RpcError))
      return withVerifier(result, wb.verifier);
    return result;
  }

  /**
   * Whether this caller may write the file, asked before its first buffered WRITE (a GETATTR on
   * the read-only path, judged by the replicas' own rule, permissions.ts checkData), so that a
   * WRITE it may not make fails at once, as it would without the buffer: 0 yes, an nfsstat3
   * no, -1 not a regular file (the WRITE then goes to the replicas for their answer). A verdict
   * holds for MAX_PERMITTED writers; a permission revoked later fails the flush instead.
   */
  private async mayBuffer(fh: Uint8Array, cred: Credentials): Promise<number> {
    const who = `${Buffer.from(fh).toString('hex')}:${credentialKey(cred)}`;
    if (this.permitted.has(who)) return 0;
    const op = encodeOp({
      kind: OpKind.Nfs,
      version: 3,
      procedure: Nfs3Proc.GETATTR,
      cred,
      readOnlyExport: false,
      args: new XdrWriter(72).opaque(fh).bytes(),
    });
    let body: Uint8Array | RpcError;
    try {
      body = decodeResult(await this.opts.invoke(op, true));
    } catch {
      return -1;
    }
    if (body instanceof RpcError) return -1;
    try {
      const r = new XdrReader(body);
      const status = r.u32();
      if (status !== NfsStatus.OK) return status;
      const attrs = readFattr3(r);
      if (attrs.type !== FileType.REG) return -1;
      checkData(attrs, cred, true);
    } catch (e) {
      if (e instanceof NfsError) return e.status;
      return -1;
    }
    this.permitted.add(who);
    if (this.permitted.size > MAX_PERMITTED)
      this.permitted.delete(this.permitted.values().next().value!);
    return 0;
  }

  /**
   * A CREATE (MKDIR, SYMLINK, MKNOD) can only touch buffered data by naming a file that has
   * some: wait for that one, or for every file when some buffered file has names we do not know.
   */
  private async beforeCreate(wb: WriteBack, names: KnownNames, args: Uint8Array): Promise<void> {
    const op = dirOp(args);
    const unknown = [...wb.dirtyKeys()].some((k) => !names.fullyKnown(k));
    if (!op || unknown) return wb.flushAll();
    const named = names.at(op.dir, op.name);
    if (named !== undefined && wb.isDirty(named)) await wb.flushFile(named);
  }

  /** One flush operation of the write-back buffer through PBFT; the agreed result body. */
  private async flush(cred: Credentials, args: Uint8Array): Promise<Uint8Array> {
    // The flushed files' sizes and times change: their cached LOOKUP attributes go after it too.
    const cache = this.lookups;
    const files = cache ? decodeFlushArgs(args).map((e) => e.fh) : [];
    try {
      return await this.flushOp(cred, args);
    } finally {
      for (const fh of files) cache!.forget(fh);
    }
  }

  private async flushOp(cred: Credentials, args: Uint8Array): Promise<Uint8Array> {
    const op = encodeOp({
      kind: OpKind.Flush,
      version: 0,
      procedure: 0,
      cred,
      readOnlyExport: false,
      args,
    });
    const result = decodeResult(await this.opts.invoke(op, false));
    if (result instanceof RpcError) throw result;
    return result;
  }

  private async mount(version: number, call: RpcCallInfo): Promise<Uint8Array | RpcError> {
    const host = call.client.address;
    if (call.procedure !== MountProc.MNT) {
      // NULL, DUMP, UMNT, UMNTALL, EXPORT touch only the local mount list and the exports.
      return this.localMount.execute(version, call.procedure, call.args, {
        host,
        allowed: this.rules.admitsAny(host),
      });
    }
    let dirpath: string;
    try {
      const r = new XdrReader(call.args);
      dirpath = r.string(MAX_PATH);
      r.end();
    } catch {
      return new RpcError({ kind: 'garbage_args' });
    }
    // A refused MNT (NOENT: no export has the path; ACCES: none admits the client) is answered
    // here without a round through the replicas.
    const choice = this.rules.forMount(dirpath, host);
    if ('status' in choice) return new XdrWriter(4).u32(choice.status).bytes();
    const policy = {
      cred: this.rules.credentials(choice.index, call.authSys),
      readOnly: this.rules.entries[choice.index].access === 'ro',
      datagram: call.client.transport === 'udp',
    };
    const args = encodeMountArgs(choice.index, call.args);
    const result = await this.forward(OpKind.Mount, call, true, policy, args);
    if (!(result instanceof RpcError) && result.length >= 4) {
      if (new DataView(result.buffer, result.byteOffset).getUint32(0) === MountStatus.OK) {
        this.localMount.table.add(host, dirpath);
      }
    }
    return result;
  }

  private async forward(
    kind: OpKind,
    call: RpcCallInfo,
    readOnly: boolean,
    ctx: CallPolicy,
    args = call.args,
  ): Promise<Uint8Array | RpcError> {
    const op = encodeOp({
      kind,
      version: call.version,
      procedure: call.procedure,
      cred: ctx.cred,
      readOnlyExport: ctx.readOnly,
      datagram: ctx.datagram,
      args,
    });
    this.stats.forwarded++;
    if (readOnly) this.stats.readOnly++;
    const started = performance.now();
    let result: Uint8Array | RpcError;
    try {
      result = decodeResult(await this.opts.invoke(op, readOnly));
    } catch {
      this.stats.failed++;
      result = new RpcError({ kind: 'system_err' });
    }
    this.opts.observe?.(
      readOnly,
      (performance.now() - started) / 1000,
      !(result instanceof RpcError),
      procedureName(kind, call.version, call.procedure),
    );
    return result;
  }
}

/**
 * Drops the lookup-cache entries a mutating call can change: the directories it changes names
 * in (their attributes go with every reply in them) and the files whose attributes it changes.
 * Whatever it cannot tell (NFSv2, arguments that do not parse, a victim it never saw) drops more.
 */
function forgetChanged(cache: LookupCache, call: RpcCallInfo): void {
  if (call.version !== 3) return cache.clear();
  const proc = call.procedure;
  const args = call.args;
  if (proc === Nfs3Proc.SETATTR || proc === Nfs3Proc.WRITE || proc === Nfs3Proc.COMMIT) {
    const fh = leadingHandle(args);
    return fh ? cache.forget(fh) : cache.clear();
  }
  const op = dirOp(args);
  if (CREATING.has(proc) && op) {
    // CREATE UNCHECKED of an existing file truncates it: that file's entries go too.
    cache.forgetNames(op.dir, [op.name]);
  } else if (proc === Nfs3Proc.REMOVE && op) {
    if (!cache.forgetNames(op.dir, [op.name])) cache.forgetLinked();
  } else if (proc === Nfs3Proc.RENAME && op) {
    const to = dirOp(args, op.end);
    // A moved directory's "..", a replaced file or directory: unknown ones drop everything.
    const known =
      to && cache.forgetNames(op.dir, [op.name]) && cache.forgetNames(to.dir, [to.name]);
    if (!known) cache.clear();
  } else if (proc === Nfs3Proc.RMDIR && op) {
    if (!cache.forgetNames(op.dir, [op.name])) cache.clear();
  } else if (proc === Nfs3Proc.LINK) {
    const fh = leadingHandle(args);
    const to = fh && dirOp(args, 4 + Math.ceil(fh.length / 4) * 4);
    if (!fh || !to) return cache.clear();
    cache.forget(fh);
    cache.forgetNames(to.dir, [to.name]);
  } else {
    cache.clear();
  }
}

function isPolicy(p: CallPolicy | Uint8Array | RpcError): p is CallPolicy {
  return !(p instanceof Uint8Array) && !(p instanceof RpcError);
}

/** A forwarded call's name: `GETATTR` (NFSv3), `v2 READ`, `MOUNT MNT`, or its number. */
export function procedureName(kind: OpKind, version: number, procedure: number): string {
  if (kind === OpKind.Mount) return `MOUNT ${procedure === MountProc.MNT ? 'MNT' : procedure}`;
  if (version === 3) return Nfs3Proc[procedure] ?? String(procedure);
  return `v2 ${Nfs2Proc[procedure] ?? procedure}`;
}
