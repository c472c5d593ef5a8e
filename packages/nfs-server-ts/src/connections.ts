/**
 * The TCP connections of an RpcServer and the limits that keep idle, slow or greedy clients from
 * locking others out or growing the server's memory without bound:
 *
 * - a cap on connections in total and per client address; a newcomer over either cap takes the
 *   place of an existing connection (see `pickVictim`) instead of being refused, so thousands of
 *   idle or half-sent connections cannot keep a new client out;
 * - an idle timeout, and a deadline for a record to arrive whole once it has begun;
 * - a budget for the bytes held waiting on clients (records in progress, replies not yet taken),
 *   over which the connection that has stalled longest is closed;
 * - a budget for the bytes of calls being executed, over which connections stop being read
 *   until calls finish (back pressure, as TCP itself applies).
 *
 * Memory for TCP stays under maxConnections x (socket and bookkeeping, about 2-3 KiB measured)
 * + maxBufferedBytes + maxInflightBytes, plus one record of overshoot each.
 */
import type * as net from 'node:net';
import { RecordReader } from './record';

/** Largest TCP record accepted (a 1 MiB WRITE plus headers). Larger ones are skipped. */
export const DEFAULT_MAX_RECORD_SIZE = 1024 * 1024 + 64 * 1024;
/** Calls one TCP connection may have in progress before we stop reading from it. */
export const MAX_INFLIGHT_PER_CONNECTION = 64;
/** Reply bytes a TCP client may leave unread before we stop reading its calls. */
export const MAX_UNSENT_REPLY_BYTES = 8 * 1024 * 1024;
/**
 * Simultaneous TCP connections, all clients together. A newcomer beyond it replaces an
 * existing connection with no call in progress (pickVictim); only when every connection has a
 * call in progress is it refused.
 */
export const DEFAULT_MAX_CONNECTIONS = 1024;
/**
 * Simultaneous TCP connections from one client address (IPv4-mapped IPv6 counted as IPv4). A
 * newcomer beyond it replaces one of that address's own connections, so one address can never
 * hold more than this share of DEFAULT_MAX_CONNECTIONS. Clients behind one NAT share it.
 */
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 64;
/**
 * A connection with no call in progress that has neither sent a byte nor taken a reply byte
 * for this long is closed (knfsd closes idle TCP connections after 6 minutes; NFS clients
 * reconnect on their next call). 0 disables it.
 */
export const DEFAULT_IDLE_TIMEOUT_MS = 6 * 60_000;
/**
 * Once a record's first byte has arrived, the whole record must arrive within this long, or
 * the connection is closed (a client trickling a record byte by byte). A 1 MiB WRITE then
 * needs about 17 KiB/s. 0 disables it.
 */
export const DEFAULT_RECORD_TIMEOUT_MS = 60_000;
/**
 * Bytes held waiting on TCP clients, all connections together: records partly received and
 * replies written but not yet taken by the client. Beyond it, the connection that has waited on
 * its client longest is closed until the total fits (a legitimate record arrives in
 * milliseconds; one trickled or abandoned half-way is the oldest).
 */
export const DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024 * 1024;
/**
 * Bytes of calls being executed (their arguments), all TCP connections together. Beyond it,
 * connections that deliver more calls are not read until calls finish.
 */
export const DEFAULT_MAX_INFLIGHT_BYTES = 64 * 1024 * 1024;
/**
 * A connection is closed for the buffered budget only once it has waited on its client this
 * long, so a burst of replies to a client that is reading them is never mistaken for a stall.
 * Until then a connection that would add to a full budget is not read.
 */
export const BUFFER_EVICT_GRACE_MS = 1000;
/** Timeouts are checked this often at most (more often when they are shorter). */
export const CONNECTION_SWEEP_MS = 1000;

export interface ConnectionLimits {
  maxConnections?: number;
  maxConnectionsPerAddress?: number;
  idleTimeoutMs?: number;
  recordTimeoutMs?: number;
  maxBufferedBytes?: number;
  maxInflightBytes?: number;
  maxRecordSize?: number;
}

export interface ConnectionStats {
  /** Connections open now. */
  open: number;
  accepted: number;
  /** Closed to make room for a newcomer (total or per-address cap). */
  evicted: number;
  /** Newcomers closed at once: every connection had a call in progress. */
  refused: number;
  idleClosed: number;
  /** Closed because a record did not arrive whole within the record timeout. */
  slowRecordClosed: number;
  /** Closed because the bytes waiting on clients were over maxBufferedBytes. */
  bufferEvicted: number;
  /** Times a connection stopped being read because calls in progress held maxInflightBytes. */
  throttled: number;
  /** Times a connection stopped being read because the buffered budget was full. */
  bufferPaused: number;
}

export interface ConnectionEvents {
  /** A whole record arrived (oversized: only its first bytes, the rest skipped). */
  record(conn: Connection, record: Uint8Array, oversized: boolean): void;
  report(what: string, conn: Connection): void;
}

export interface ClientKey {
  address: string;
  port: number;
}

/** One TCP connection and what it holds. */
export class Connection {
  readonly reader: RecordReader;
  /** Calls from it in progress, and their argument bytes. */
  inflight = 0;
  inflightBytes = 0;
  /** Replies written but not yet handed to the kernel, oldest first (time, bytes). */
  readonly unsent: { at: number; bytes: number }[] = [];
  unsentBytes = 0;
  /** Last byte received or reply byte taken (idle timeout). */
  lastActivity: number;
  /** Last whole call received, or the connection's opening (which connection to evict). */
  lastCall: number;
  calls = 0;
  /** When the record in progress began (undefined: none). */
  recordStart?: number;
  /** Held bytes already counted in the table's total. */
  countedHeld = 0;
  /** Not read until calls in progress fall under maxInflightBytes. */
  throttled = false;
  /** Not read until the bytes waiting on clients fall under maxBufferedBytes. */
  bufferPaused = false;
  closed = false;

  constructor(
    readonly socket: net.Socket,
    readonly key: ClientKey,
    readonly group: string,
    maxRecord: number,
    onRecord: (record: Uint8Array, oversized: boolean) => void,
    now: number,
  ) {
    this.reader = new RecordReader(maxRecord, onRecord);
    this.lastActivity = now;
    this.lastCall = now;
  }

  /** Since when it has been waiting on its client (a record in progress, a reply not taken). */
  stalledSince(): number | undefined {
    const r = this.recordStart;
    const u = this.unsent.length > 0 ? this.unsent[0].at : undefined;
    if (r === undefined) return u;
    return u === undefined ? r : Math.min(r, u);
  }
}

/** Address a connection counts against for the per-address cap. */
export function addressGroup(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

export class ConnectionTable {
  readonly stats: ConnectionStats = {
    open: 0,
    accepted: 0,
    evicted: 0,
    refused: 0,
    idleClosed: 0,
    slowRecordClosed: 0,
    bufferEvicted: 0,
    throttled: 0,
    bufferPaused: 0,
  };
  readonly limits: Required<ConnectionLimits>;
  private readonly all = new Set<Connection>();
  private readonly byGroup = new Map<string, Set<Connection>>();
  /** Bytes waiting on clients (records in progress, unsent replies), all connections. */
  private buffered = 0;
  /** Argument bytes of calls in progress, all connections. */
  private inflightBytes = 0;
  /** Connections not read for a budget (inflight or buffered) until it has room. */
  private readonly heldBack = new Set<Connection>();
  private sweeper?: NodeJS.Timeout;

  constructor(
    limits: ConnectionLimits,
    private readonly events: ConnectionEvents,
    private readonly now: () => number = Date.now,
  ) {
    this.limits = {
      maxConnections: limits.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
      maxConnectionsPerAddress:
        limits.maxConnectionsPerAddress ?? DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
      idleTimeoutMs: limits.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      recordTimeoutMs: limits.recordTimeoutMs ?? DEFAULT_RECORD_TIMEOUT_MS,
      maxBufferedBytes: limits.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES,
      maxInflightBytes: limits.maxInflightBytes ?? DEFAULT_MAX_INFLIGHT_BYTES,
      maxRecordSize: limits.maxRecordSize ?? DEFAULT_MAX_RECORD_SIZE,
    };
    for (const [k, v] of Object.entries(this.limits)) {
      if (!(Number.isFinite(v) && v >= 0)) throw new RangeError(`bad connection limit ${k}=${v}`);
    }
    if (this.limits.maxConnections < 1 || this.limits.maxConnectionsPerAddress < 1) {
      throw new RangeError('connection caps must be at least 1');
    }
  }

  /** Bytes held now: waiting on clients, and of calls in progress (for tests and metrics). */
  held(): { buffered: number; inflight: number } {
    return { buffered: this.buffered, inflight: this.inflightBytes };
  }

  connections(): readonly Connection[] {
    return [...this.all];
  }

  /** Takes a new socket in, making room by evicting if a cap is reached; undefined: refused. */
  admit(socket: net.Socket): Connection | undefined {
    const key = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
    const group = addressGroup(key.address);
    const mine = this.byGroup.get(group);
    if (mine && mine.size >= this.limits.maxConnectionsPerAddress) {
      if (!this.evictFor(mine)) return this.refuse(socket);
    }
    if (this.all.size >= this.limits.maxConnections && !this.evictFor(this.all)) {
      return this.refuse(socket);
    }
    const conn: Connection = new Connection(
      socket,
      key,
      group,
      this.limits.maxRecordSize,
      (record, oversized) => this.onRecord(conn, record, oversized),
      this.now(),
    );
    this.all.add(conn);
    let set = this.byGroup.get(group);
    if (!set) this.byGroup.set(group, (set = new Set()));
    set.add(conn);
    this.stats.accepted++;
    this.stats.open = this.all.size;
    socket.on('data', (chunk: Buffer) => this.onData(conn, chunk));
    socket.on('close', () => this.onClose(conn));
    this.startSweeper();
    return conn;
  }

  private refuse(socket: net.Socket): undefined {
    this.stats.refused++;
    socket.destroy();
    return undefined;
  }

  /**
   * Closes one connection of `among` to make room for a newcomer; false if none may go. Only a
   * connection with no call in progress may go. Preferred, in order: one from the address with
   * the most connections (so one address's flood evicts its own first), one that never
   * completed a call, the one whose last call is oldest.
   */
  private evictFor(among: Set<Connection>): boolean {
    const victim = pickVictim(among, (g) => this.byGroup.get(g)?.size ?? 0);
    if (!victim) return false;
    this.stats.evicted++;
    this.close(victim, 'evicted to admit a new connection');
    return true;
  }

  private onData(conn: Connection, chunk: Buffer): void {
    if (conn.closed) return;
    const now = this.now();
    conn.lastActivity = now;
    conn.reader.push(chunk);
    if (conn.closed) return;
    if (!conn.reader.partial) conn.recordStart = undefined;
    else if (conn.recordStart === undefined) conn.recordStart = now;
    this.recount(conn);
    this.enforceBuffered(conn, conn.countedHeld > 0);
  }

  private onRecord(conn: Connection, record: Uint8Array, oversized: boolean): void {
    conn.calls++;
    conn.lastCall = this.now();
    // A record that began in an earlier read: the next one starts now, if at all.
    conn.recordStart = undefined;
    this.events.record(conn, record, oversized);
  }

  /** Counts a call's arguments as in progress until `done` is called. */
  beginCall(conn: Connection, bytes: number): () => void {
    conn.inflight++;
    conn.inflightBytes += bytes;
    this.inflightBytes += bytes;
    if (this.inflightBytes > this.limits.maxInflightBytes && !conn.throttled) {
      conn.throttled = true;
      this.heldBack.add(conn);
      this.stats.throttled++;
    }
    this.updateFlow(conn);
    let finished = false;
    return () => {
      if (finished) return;
      finished = true;
      conn.inflight--;
      conn.inflightBytes -= bytes;
      this.inflightBytes -= bytes;
      this.updateFlow(conn);
      this.releaseHeldBack();
    };
  }

  /** Writes one reply, counting its bytes as waiting on the client until the kernel has them. */
  write(conn: Connection, bytes: Buffer): void {
    if (conn.closed || conn.socket.destroyed) return;
    const entry = { at: this.now(), bytes: bytes.length };
    conn.unsent.push(entry);
    conn.unsentBytes += bytes.length;
    this.buffered += bytes.length;
    conn.socket.write(bytes, () => {
      if (conn.closed) return;
      const i = conn.unsent.indexOf(entry);
      if (i >= 0) conn.unsent.splice(i, 1);
      conn.unsentBytes -= entry.bytes;
      this.buffered -= entry.bytes;
      conn.lastActivity = this.now();
      this.updateFlow(conn);
      this.releaseHeldBack();
    });
    this.updateFlow(conn);
    this.enforceBuffered(conn, true);
  }

  /** Reads from the connection only while it has room for more calls and replies. */
  private updateFlow(conn: Connection): void {
    if (conn.closed) return;
    const hold =
      conn.inflight >= MAX_INFLIGHT_PER_CONNECTION ||
      conn.unsentBytes > MAX_UNSENT_REPLY_BYTES ||
      conn.throttled ||
      conn.bufferPaused;
    if (hold && !conn.socket.isPaused()) conn.socket.pause();
    else if (!hold && conn.socket.isPaused()) conn.socket.resume();
  }

  /** Reads again from connections held back for a budget that now has room. */
  private releaseHeldBack(): void {
    if (this.heldBack.size === 0) return;
    const inflightRoom = this.inflightBytes <= this.limits.maxInflightBytes;
    const bufferRoom = this.buffered <= this.limits.maxBufferedBytes;
    for (const c of [...this.heldBack]) {
      if (inflightRoom) c.throttled = false;
      if (bufferRoom) c.bufferPaused = false;
      if (!c.throttled && !c.bufferPaused) this.heldBack.delete(c);
      this.updateFlow(c);
    }
  }

  private recount(conn: Connection): void {
    const held = conn.reader.held;
    const shrank = held < conn.countedHeld;
    this.buffered += held - conn.countedHeld;
    conn.countedHeld = held;
    if (shrank) this.releaseHeldBack();
  }

  /**
   * Over the buffered budget: closes the connections that have waited on their clients longest
   * (and at least BUFFER_EVICT_GRACE_MS) until the total fits; if it still does not, `conn`
   * (which just added to it) is not read until it does.
   */
  private enforceBuffered(conn?: Connection, added = false): void {
    const now = this.now();
    while (this.buffered > this.limits.maxBufferedBytes) {
      let victim: Connection | undefined;
      let since = now - BUFFER_EVICT_GRACE_MS;
      for (const c of this.all) {
        if (c.countedHeld + c.unsentBytes === 0) continue;
        const s = c.stalledSince();
        // Strictly earlier only, once one is chosen: of connections stalled in the same
        // millisecond the oldest goes.
        if (s !== undefined && (s < since || (victim === undefined && s === since))) {
          since = s;
          victim = c;
        }
      }
      if (!victim) break;
      this.stats.bufferEvicted++;
      this.close(victim, 'over the buffered-bytes budget, waiting on its client longest');
    }
    if (this.buffered > this.limits.maxBufferedBytes && conn && added && !conn.closed) {
      if (!conn.bufferPaused) this.stats.bufferPaused++;
      conn.bufferPaused = true;
      this.heldBack.add(conn);
      this.updateFlow(conn);
    }
  }

  /** Closes idle connections and those whose record is overdue. */
  sweep(): void {
    const now = this.now();
    const { idleTimeoutMs, recordTimeoutMs } = this.limits;
    for (const c of [...this.all]) {
      if (
        recordTimeoutMs > 0 &&
        c.recordStart !== undefined &&
        now - c.recordStart >= recordTimeoutMs
      ) {
        this.stats.slowRecordClosed++;
        this.close(c, 'record not complete within the record timeout');
      } else if (idleTimeoutMs > 0 && c.inflight === 0 && now - c.lastActivity >= idleTimeoutMs) {
        this.stats.idleClosed++;
        this.close(c, 'idle');
      }
    }
    this.enforceBuffered();
    this.releaseHeldBack();
    if (this.all.size === 0) this.stopSweeper();
  }

  private startSweeper(): void {
    if (this.sweeper) return;
    const timeouts = [this.limits.idleTimeoutMs, this.limits.recordTimeoutMs].filter((t) => t > 0);
    if (timeouts.length === 0) return;
    const every = Math.max(10, Math.min(CONNECTION_SWEEP_MS, Math.min(...timeouts) / 4));
    this.sweeper = setInterval(() => this.sweep(), every);
    this.sweeper.unref();
  }

  private stopSweeper(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  close(conn: Connection, why: string): void {
    if (conn.closed) return;
    this.events.report(`connection closed: ${why}`, conn);
    conn.socket.destroy();
    this.onClose(conn);
  }

  private onClose(conn: Connection): void {
    if (conn.closed) return;
    conn.closed = true;
    conn.reader.release();
    this.buffered -= conn.countedHeld + conn.unsentBytes;
    conn.countedHeld = 0;
    conn.unsentBytes = 0;
    conn.unsent.length = 0;
    this.all.delete(conn);
    const set = this.byGroup.get(conn.group);
    set?.delete(conn);
    if (set?.size === 0) this.byGroup.delete(conn.group);
    this.heldBack.delete(conn);
    this.stats.open = this.all.size;
    this.releaseHeldBack();
  }

  closeAll(): void {
    for (const c of [...this.all]) {
      c.socket.destroy();
      this.onClose(c);
    }
    this.stopSweeper();
  }
}

/**
 * The connection to close for a newcomer, among those with no call in progress: from the
 * address holding the most connections, then one that never completed a call, then the one
 * whose last call is oldest.
 */
export function pickVictim(
  among: Iterable<Connection>,
  groupSize: (group: string) => number,
): Connection | undefined {
  let best: Connection | undefined;
  let bestSize = -1;
  for (const c of among) {
    if (c.inflight > 0 || c.closed) continue;
    const size = groupSize(c.group);
    if (
      !best ||
      size > bestSize ||
      (size === bestSize &&
        ((c.calls === 0 && best.calls > 0) ||
          ((c.calls === 0) === (best.calls === 0) && c.lastCall < best.lastCall)))
    ) {
      best = c;
      bestSize = size;
    }
  }
  return best;
}
