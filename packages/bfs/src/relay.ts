/**
 * The relay: an ordinary NFS server to its clients (portmap, MOUNT, NFSv2/v3 on one port) that
 * turns every NFS call into a replicated operation. It keeps only what is local by nature: the
 * mount list (DUMP/UMNT), the duplicate-request cache, and export access checks.
 */
import {
  AuthStat,
  type ConnectionLimits,
  type ExportOptions,
  type FileSystem,
  MOUNT_PROGRAM,
  MountProc,
  MountService,
  MountStatus,
  NFS_PROGRAM,
  NfsError,
  NfsServer,
  NfsStatus,
  type RpcCallInfo,
  RpcError,
  XdrReader,
  isReadOnlyCall,
  MAX_PATH,
} from 'nfs-server-ts';
import { OpKind, decodeResult, encodeOp } from './service/op';

/** Runs an operation through replication and resolves with the agreed result. */
export type Invoke = (op: Uint8Array, readOnly: boolean) => Promise<Uint8Array>;

export interface RelayOptions {
  invoke: Invoke;
  /**
   * Export policy applied before the operation is built (client addresses, root squashing,
   * read-only, which the replicas enforce from the operation). `checkPermissions` has no
   * effect: every replica checks permissions, always, from the credential in the operation.
   */
  export?: ExportOptions;
  /** Caps, timeouts and byte budgets of the NFS TCP connections (defaults: connections.ts). */
  connections?: ConnectionLimits;
  /** Told of every forwarded call (for metrics). */
  observe?: (readOnly: boolean, seconds: number, ok: boolean) => void;
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
const FORWARD_ONLY: FileSystem = new Proxy({} as FileSystem, {
  get: () => () => {
    throw new NfsError(NfsStatus.SERVERFAULT, 'the relay has no local file system');
  },
});

export class Relay {
  readonly server: NfsServer;
  /** Answers the MOUNT procedures that only touch the local mount list. */
  private readonly localMount: MountService;
  readonly stats: RelayStats = { forwarded: 0, readOnly: 0, failed: 0 };

  constructor(private readonly opts: RelayOptions) {
    // Relay mode: no local backend; NFS and MOUNT are the forwarding handlers below.
    this.server = new NfsServer({ ...opts.connections, export: opts.export });
    this.localMount = new MountService(FORWARD_ONLY, opts.export?.path ?? '/');
    for (const v of [2, 3]) this.server.rpc.setHandler(NFS_PROGRAM, v, (c) => this.nfs(c));
    for (const v of [1, 3]) this.server.rpc.setHandler(MOUNT_PROGRAM, v, (c) => this.mount(v, c));
  }

  listen(opts: { port?: number; host?: string }): Promise<number> {
    return this.server.listen(opts);
  }

  close(): Promise<void> {
    return this.server.close();
  }

  private async nfs(call: RpcCallInfo): Promise<Uint8Array | RpcError> {
    if (!this.server.allowed(call.client.address)) {
      return new RpcError({ kind: 'auth_error', stat: AuthStat.TOOWEAK });
    }
    if (call.procedure === 0) return new Uint8Array(0); // NULL: nothing to agree on
    const readOnly = isReadOnlyCall(NFS_PROGRAM, call.version, call.procedure);
    return this.forward(OpKind.Nfs, call, readOnly);
  }

  private async mount(version: number, call: RpcCallInfo): Promise<Uint8Array | RpcError> {
    const host = call.client.address;
    if (call.procedure !== MountProc.MNT || !this.server.allowed(host)) {
      // NULL, DUMP, UMNT, UMNTALL, EXPORT touch only the local mount list; a refused MNT is
      // answered ACCES by the local service without a round through the replicas.
      return this.localMount.execute(version, call.procedure, call.args, {
        host,
        allowed: this.server.allowed(host),
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
    const result = await this.forward(OpKind.Mount, call, true);
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
  ): Promise<Uint8Array | RpcError> {
    const ctx = this.server.context(call);
    const op = encodeOp({
      kind,
      version: call.version,
      procedure: call.procedure,
      cred: ctx.cred,
      readOnlyExport: ctx.readOnly ?? false,
      datagram: ctx.datagram,
      args: call.args,
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
    );
    return result;
  }
}
