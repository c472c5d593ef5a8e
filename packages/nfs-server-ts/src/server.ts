/**
 * ONC RPC server over TCP (record marking, RFC 5531 section 11) and UDP, with pluggable async
 * handlers per (program, version) or global, AUTH_NONE/AUTH_SYS checking and a duplicate-request
 * cache. Malformed input is counted and answered (GARBAGE_ARGS, AUTH_ERROR...) or dropped; it never
 * throws out of a socket callback.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import {
  AuthFlavor,
  AuthStat,
  type AuthSys,
  type OpaqueAuth,
  RpcError,
  decodeAuthSys,
  decodeMessage,
  encodeErrorReply,
  encodeSuccessReply,
  RPC_VERSION,
} from './rpc';
import { DuplicateRequestCache } from './drc';
import {
  type Connection,
  type ConnectionLimits,
  type ConnectionStats,
  ConnectionTable,
} from './connections';

export * from './connections';
export { RecordReader } from './record';

/** UDP calls in progress at once (async handlers); datagrams beyond it are dropped, as a full socket buffer would. */
export const MAX_UDP_INFLIGHT = 1024;
/** Replies the duplicate-request cache keeps (LRU). */
export const DEFAULT_DRC_ENTRIES = 4096;
/** Largest UDP reply we can send (IPv4 datagram limit). */
export const MAX_UDP_PAYLOAD = 65507;

export interface ClientAddress {
  address: string;
  port: number;
  transport: 'tcp' | 'udp';
}

export interface RpcCallInfo {
  xid: number;
  program: number;
  version: number;
  procedure: number;
  cred: OpaqueAuth;
  /** Parsed AUTH_SYS credentials, when the call carried them. */
  authSys?: AuthSys;
  /** XDR-encoded arguments. */
  args: Uint8Array;
  client: ClientAddress;
}

/** Returns the encoded result body, or an RpcError (returned or thrown) for a failed call. */
export type RpcHandler = (
  call: RpcCallInfo,
) => Promise<Uint8Array | RpcError> | Uint8Array | RpcError;

/** TCP connection limits (connections.ts) plus the server's own options. */
export interface RpcServerOptions extends ConnectionLimits {
  /** Entries in the duplicate-request cache (0 disables it). */
  drcEntries?: number;
  /** Which calls are non-idempotent, so their replies are cached and replayed on retransmission. */
  isNonIdempotent?: (program: number, version: number, procedure: number) => boolean;
  /** Called on every dropped or rejected input, for logs; never required. */
  onError?: (what: string, client: ClientAddress) => void;
}

export interface RpcServerStats {
  calls: number;
  replies: number;
  dropped: number;
  garbage: number;
  oversizedRecords: number;
  drcHits: number;
  handlerErrors: number;
}

/** Ports tried by listen({ port: 0 }) whose number turned out taken for UDP. */
export const LISTEN_ATTEMPTS = 8;

export class RpcServer {
  readonly stats: RpcServerStats = {
    calls: 0,
    replies: 0,
    dropped: 0,
    garbage: 0,
    oversizedRecords: 0,
    drcHits: 0,
    handlerErrors: 0,
  };
  private readonly handlers = new Map<number, Map<number, RpcHandler>>();
  private globalHandler?: RpcHandler;
  private readonly drc?: DuplicateRequestCache;
  private readonly tcpServers: net.Server[] = [];
  private readonly udpSockets: dgram.Socket[] = [];
  /** TCP connections, their caps, timeouts and byte budgets. */
  readonly connections: ConnectionTable;
  private udpInflight = 0;

  constructor(private readonly opts: RpcServerOptions = {}) {
    this.connections = new ConnectionTable(opts, {
      record: (conn, record, oversized) => this.onRecord(conn, record, oversized),
      report: (what, conn) => this.report(what, tcpClient(conn)),
    });
    const entries = opts.drcEntries ?? DEFAULT_DRC_ENTRIES;
    if (entries > 0) this.drc = new DuplicateRequestCache(entries);
  }

  /** Serves (program, version) with `handler`, replacing any earlier one. */
  setHandler(program: number, version: number, handler: RpcHandler): void {
    let m = this.handlers.get(program);
    if (!m) this.handlers.set(program, (m = new Map()));
    m.set(version, handler);
  }

  /** Serves every call no (program, version) handler takes (a relay forwarding all). */
  setGlobalHandler(handler: RpcHandler | undefined): void {
    this.globalHandler = handler;
  }

  /** Starts a TCP listener, and a UDP socket on the same port unless `udp` is false. */
  async listen(opts: { port?: number; host?: string; udp?: boolean } = {}): Promise<number> {
    // A free TCP port's number may be taken for UDP by another process: with port 0, try again.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.listenOnce(opts);
      } catch (e) {
        const inUse = (e as NodeJS.ErrnoException).code === 'EADDRINUSE';
        if (!inUse || (opts.port ?? 0) !== 0 || attempt >= LISTEN_ATTEMPTS) throw e;
      }
    }
  }

  private async listenOnce(opts: { port?: number; host?: string; udp?: boolean }): Promise<number> {
    const host = opts.host ?? '127.0.0.1';
    // No net.Server maxConnections: the table admits every newcomer, making room by eviction.
    const server = net.createServer((s) => this.onConnection(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const port = (server.address() as net.AddressInfo).port;
    if (opts.udp !== false) {
      const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
      try {
        await new Promise<void>((resolve, reject) => {
          sock.once('error', reject);
          sock.bind(port, host, () => {
            sock.off('error', reject);
            resolve();
          });
        });
      } catch (e) {
        sock.close();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        throw e;
      }
      sock.on('error', (e) => this.report(`udp: ${e.message}`, anon('udp')));
      sock.on('message', (msg, rinfo) => this.onDatagram(sock, msg, rinfo));
      this.udpSockets.push(sock);
    }
    server.on('error', (e) => this.report(`tcp server: ${e.message}`, anon('tcp')));
    this.tcpServers.push(server);
    return port;
  }

  async close(): Promise<void> {
    this.connections.closeAll();
    await Promise.all(
      this.tcpServers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
    );
    await Promise.all(
      this.udpSockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
    );
    this.tcpServers.length = 0;
    this.udpSockets.length = 0;
  }

  private report(what: string, client: ClientAddress): void {
    this.opts.onError?.(what, client);
  }

  private onDatagram(sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const client: ClientAddress = { address: rinfo.address, port: rinfo.port, transport: 'udp' };
    if (this.udpInflight >= MAX_UDP_INFLIGHT) {
      this.stats.dropped++;
      return;
    }
    this.udpInflight++;
    void this.handleMessage(msg, client).then((reply) => {
      this.udpInflight--;
      if (!reply) return;
      if (reply.length > MAX_UDP_PAYLOAD) {
        this.report('reply too large for UDP', client);
        reply = encodeErrorReply(xidOf(msg), { kind: 'system_err' });
      }
      try {
        sock.send(reply, rinfo.port, rinfo.address, (err) => {
          if (err) this.report(`udp send: ${err.message}`, client);
        });
        this.stats.replies++;
      } catch (e) {
        // The socket was closed while the call ran (server shutting down).
        this.report(`udp send: ${e instanceof Error ? e.message : String(e)}`, client);
      }
    });
  }

  /** TCP connection statistics: open, evicted, refused, closed idle or slow. */
  get connectionStats(): ConnectionStats {
    return this.connections.stats;
  }

  private onConnection(s: net.Socket): void {
    const conn = this.connections.admit(s);
    if (!conn) {
      this.report('connection refused: every connection has a call in progress', {
        address: s.remoteAddress ?? '',
        port: s.remotePort ?? 0,
        transport: 'tcp',
      });
      return;
    }
    s.setNoDelay(true);
    const client = tcpClient(conn);
    s.on('error', (e) => this.report(`tcp: ${e.message}`, client));
  }

  private onRecord(conn: Connection, record: Uint8Array, oversized: boolean): void {
    const client = tcpClient(conn);
    if (oversized) {
      this.stats.oversizedRecords++;
      this.report('record over the size limit', client);
      // Answer the call if its header survived, so the client fails fast instead of hanging.
      if (record.length >= 12)
        this.sendTcp(conn, encodeErrorReply(xidOf(record), { kind: 'garbage_args' }));
      return;
    }
    const done = this.connections.beginCall(conn, record.length);
    void this.handleMessage(record, client).then((reply) => {
      done();
      if (reply) this.sendTcp(conn, reply);
    });
  }

  private sendTcp(conn: Connection, reply: Uint8Array): void {
    if (conn.closed) return;
    const out = Buffer.allocUnsafe(4 + reply.length);
    out.writeUInt32BE((0x80000000 | reply.length) >>> 0, 0);
    out.set(reply, 4);
    this.connections.write(conn, out);
    this.stats.replies++;
  }

  /** Decodes, dispatches and encodes one call; undefined means "send nothing". Never rejects. */
  async handleMessage(msg: Uint8Array, client: ClientAddress): Promise<Uint8Array | undefined> {
    try {
      return await this.handleMessageUnsafe(msg, client);
    } catch (e) {
      this.stats.dropped++;
      this.report(`internal error: ${e instanceof Error ? e.message : String(e)}`, client);
      return undefined;
    }
  }

  private async handleMessageUnsafe(
    msg: Uint8Array,
    client: ClientAddress,
  ): Promise<Uint8Array | undefined> {
    let decoded;
    try {
      decoded = decodeMessage(msg);
    } catch {
      this.stats.garbage++;
      this.stats.dropped++;
      this.report('undecodable RPC header', client);
      return undefined;
    }
    if (decoded.type === 'reply') {
      this.stats.dropped++;
      return undefined;
    }
    if (decoded.type === 'rpc_mismatch') {
      this.stats.garbage++;
      return encodeErrorReply(decoded.xid, {
        kind: 'rpc_mismatch',
        low: RPC_VERSION,
        high: RPC_VERSION,
      });
    }
    const call = decoded.call;
    this.stats.calls++;
    let authSys: AuthSys | undefined;
    if (call.cred.flavor === AuthFlavor.SYS) {
      try {
        authSys = decodeAuthSys(call.cred.body);
      } catch {
        this.stats.garbage++;
        return encodeErrorReply(call.xid, { kind: 'auth_error', stat: AuthStat.BADCRED });
      }
    } else if (call.cred.flavor !== AuthFlavor.NONE) {
      return encodeErrorReply(call.xid, { kind: 'auth_error', stat: AuthStat.TOOWEAK });
    }
    const cacheable =
      this.drc !== undefined &&
      (this.opts.isNonIdempotent?.(call.program, call.version, call.procedure) ?? false);
    const key = cacheable ? DuplicateRequestCache.key(client.address, call) : '';
    if (cacheable) {
      const hit = this.drc!.lookup(key);
      if (hit !== undefined) {
        this.stats.drcHits++;
        // In progress: drop the retransmission; the original's reply is on its way.
        return hit === 'in-progress' ? undefined : hit;
      }
      this.drc!.begin(key);
    }
    const info: RpcCallInfo = {
      xid: call.xid,
      program: call.program,
      version: call.version,
      procedure: call.procedure,
      cred: call.cred,
      authSys,
      args: call.args,
      client,
    };
    const reply = await this.dispatch(info);
    if (cacheable) this.drc!.complete(key, reply);
    return reply;
  }

  private async dispatch(call: RpcCallInfo): Promise<Uint8Array> {
    const versions = this.handlers.get(call.program);
    const handler = versions?.get(call.version) ?? this.globalHandler;
    if (!handler) {
      if (versions && versions.size > 0) {
        const vs = [...versions.keys()];
        return encodeErrorReply(call.xid, {
          kind: 'prog_mismatch',
          low: Math.min(...vs),
          high: Math.max(...vs),
        });
      }
      return encodeErrorReply(call.xid, { kind: 'prog_unavail' });
    }
    try {
      const result = await handler(call);
      if (result instanceof RpcError) return encodeErrorReply(call.xid, result.reply);
      return encodeSuccessReply(call.xid, result);
    } catch (e) {
      if (e instanceof RpcError) {
        if (e.reply.kind === 'garbage_args') this.stats.garbage++;
        return encodeErrorReply(call.xid, e.reply);
      }
      this.stats.handlerErrors++;
      this.report(`handler failed: ${e instanceof Error ? e.message : String(e)}`, call.client);
      return encodeErrorReply(call.xid, { kind: 'system_err' });
    }
  }
}

function tcpClient(conn: Connection): ClientAddress {
  return { address: conn.key.address, port: conn.key.port, transport: 'tcp' };
}

function anon(transport: 'tcp' | 'udp'): ClientAddress {
  return { address: '', port: 0, transport };
}

function xidOf(msg: Uint8Array): number {
  return msg.length >= 4 ? ((msg[0] << 24) | (msg[1] << 16) | (msg[2] << 8) | msg[3]) >>> 0 : 0;
}
