/**
 * The NFS server: one RpcServer port serving PORTMAP v2, MOUNT v1/v3 and NFS v2/v3 over a
 * FileSystem, with export policy (client addresses, read-only, root squashing).
 */
import * as net from 'node:net';
import type { Credentials, FileSystem, NfsTime } from './filesystem';
import { MountService } from './mount';
import { NFS3_MUTATING, type NfsCallContext } from './nfs3';
import { executeNfsCall, isNonIdempotent } from './procedures';
import { IPPROTO_TCP, IPPROTO_UDP, Portmapper } from './portmap';
import { MOUNT_PROGRAM, NFS_PROGRAM, PORTMAP_PROGRAM, PORTMAP_VERSION } from './programs';
import { AuthStat, RpcError } from './rpc';
import { type ClientAddress, type RpcCallInfo, RpcServer, type RpcServerOptions } from './server';

/** uid/gid that squashed and AUTH_NONE callers get (knfsd's default "nobody"). */
export const ANONYMOUS_ID = 65534;

export interface ExportOptions {
  /** Path clients mount (default '/'); MNT accepts it and any directory below it. */
  path?: string;
  readOnly?: boolean;
  /** Check callers' permissions from mode/owner/group in the procedure layer (default false). */
  checkPermissions?: boolean;
  /** Map uid 0 to the anonymous uid (default true, as knfsd). */
  rootSquash?: boolean;
  anonUid?: number;
  anonGid?: number;
  /**
   * Addresses allowed to mount and call NFS: exact addresses or IPv4 CIDR blocks such as
   * '127.0.0.0/8'. Default: everyone.
   */
  clients?: string[];
}

export interface NfsServerOptions extends RpcServerOptions {
  /**
   * The backend served locally. Leave it out for a server whose MOUNT and NFS calls are all
   * answered by handlers set on `rpc` (a relay): then only the portmapper is built in, and
   * calls to MOUNT/NFS without a handler get PROG_UNAVAIL.
   */
  fs?: FileSystem;
  export?: ExportOptions;
  /** Source of call times (default the wall clock); BFS injects the agreed time elsewhere. */
  clock?: () => NfsTime;
}

export function wallClock(): NfsTime {
  const ms = Date.now();
  return { seconds: Math.floor(ms / 1000), nseconds: (ms % 1000) * 1e6 };
}

export class NfsServer {
  readonly rpc: RpcServer;
  readonly portmapper = new Portmapper();
  /** The MOUNT service over `opts.fs` (absent without a local backend). */
  readonly mount?: MountService;
  private readonly exp: Required<Omit<ExportOptions, 'clients'>> & { clients?: string[] };
  private readonly clock: () => NfsTime;
  private readonly ports: number[] = [];

  constructor(readonly opts: NfsServerOptions) {
    this.exp = {
      path: opts.export?.path ?? '/',
      readOnly: opts.export?.readOnly ?? false,
      checkPermissions: opts.export?.checkPermissions ?? false,
      rootSquash: opts.export?.rootSquash ?? true,
      anonUid: opts.export?.anonUid ?? ANONYMOUS_ID,
      anonGid: opts.export?.anonGid ?? ANONYMOUS_ID,
      clients: opts.export?.clients,
    };
    this.clock = opts.clock ?? wallClock;
    this.rpc = new RpcServer({ isNonIdempotent, ...opts });
    this.rpc.setHandler(PORTMAP_PROGRAM, PORTMAP_VERSION, (c) =>
      this.portmapper.execute(c.procedure, c.args, isLoopback(c.client.address)),
    );
    const fs = opts.fs;
    if (!fs) return;
    const mount = new MountService(fs, this.exp.path);
    this.mount = mount;
    for (const v of [1, 3]) {
      this.rpc.setHandler(MOUNT_PROGRAM, v, (c) =>
        mount.execute(v, c.procedure, c.args, {
          host: c.client.address,
          allowed: this.allowed(c.client.address),
        }),
      );
    }
    for (const v of [2, 3]) this.rpc.setHandler(NFS_PROGRAM, v, (c) => this.nfsCall(fs, c));
  }

  /** The credentials the backend sees after export policy. */
  credentials(call: Pick<RpcCallInfo, 'authSys'>): Credentials {
    const a = call.authSys;
    if (!a) return { uid: this.exp.anonUid, gid: this.exp.anonGid, gids: [] };
    if (this.exp.rootSquash && a.uid === 0) {
      return { uid: this.exp.anonUid, gid: this.exp.anonGid, gids: [] };
    }
    return { uid: a.uid, gid: a.gid, gids: a.gids };
  }

  /**
   * The context the procedure layer gets for a call (exposed for relays that forward calls).
   * A call that came over UDP is answered in one datagram (`datagram`).
   */
  context(call: Pick<RpcCallInfo, 'authSys'> & { client?: ClientAddress }): NfsCallContext {
    return {
      cred: this.credentials(call),
      time: this.clock(),
      readOnly: this.exp.readOnly,
      checkPermissions: this.exp.checkPermissions,
      datagram: call.client?.transport === 'udp',
    };
  }

  allowed(address: string): boolean {
    const list = this.exp.clients;
    return !list || list.some((rule) => addressMatches(address, rule));
  }

  private nfsCall(fs: FileSystem, call: RpcCallInfo): Uint8Array {
    if (!this.allowed(call.client.address)) {
      throw new RpcError({ kind: 'auth_error', stat: AuthStat.TOOWEAK });
    }
    return executeNfsCall(
      fs,
      call.program,
      call.version,
      call.procedure,
      call.args,
      this.context(call),
    );
  }

  /** Listens on TCP and UDP on one port and registers every program with the portmapper. */
  async listen(opts: { port?: number; host?: string; udp?: boolean } = {}): Promise<number> {
    const port = await this.rpc.listen(opts);
    this.ports.push(port);
    const protocols = opts.udp === false ? [IPPROTO_TCP] : [IPPROTO_TCP, IPPROTO_UDP];
    for (const protocol of protocols) {
      this.portmapper.register({
        program: PORTMAP_PROGRAM,
        version: PORTMAP_VERSION,
        protocol,
        port,
      });
      for (const version of [1, 3])
        this.portmapper.register({ program: MOUNT_PROGRAM, version, protocol, port });
      for (const version of [2, 3])
        this.portmapper.register({ program: NFS_PROGRAM, version, protocol, port });
    }
    return port;
  }

  close(): Promise<void> {
    return this.rpc.close();
  }
}

export { NFS3_MUTATING };

export function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.');
}

/** Exact address or IPv4 CIDR match ('10.0.0.0/8'); IPv4-mapped IPv6 addresses count as IPv4. */
export function addressMatches(address: string, rule: string): boolean {
  const addr = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (rule === '*') return true;
  const slash = rule.indexOf('/');
  if (slash < 0) return addr === rule;
  const base = rule.slice(0, slash);
  const bits = Number(rule.slice(slash + 1));
  if (!net.isIPv4(base) || !net.isIPv4(addr) || !(bits >= 0 && bits <= 32)) return false;
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return (ipv4(addr) & mask) >>> 0 === (ipv4(base) & mask) >>> 0;
}

function ipv4(a: string): number {
  return a.split('.').reduce((acc, x) => ((acc << 8) | Number(x)) >>> 0, 0);
}
