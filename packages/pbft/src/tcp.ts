/**
 * TCP transport: length-prefixed frames (u32 big-endian length, then the frame), an
 * authenticated handshake (handshake.ts) before anything else on a connection, bounded frame
 * size and send queues, and reconnection with exponential backoff. Replicas dial the addresses
 * they know; nodes without an address (clients, the relay) are answered over the connection they
 * opened, once its handshake proved they hold the key of the ids they claim.
 *
 * Connections that have not completed the handshake are cheap and few: each may hold at most
 * HANDSHAKE_BUFFER_BYTES and live HANDSHAKE_TIMEOUT_MS, at most MAX_HANDSHAKES_PER_ADDRESS of
 * them come from one address and MAX_HANDSHAKES in all (a new one evicts the oldest), and at most
 * MAX_ACCEPTED_CONNECTIONS are accepted at once.
 */
import * as net from 'node:net';
import {
  FIRST_CLIENT_ID,
  MAX_FRAME_BYTES,
  MAX_REFUSED_FRAMES_PER_WINDOW,
  MAX_VIEW_CHANGE_FRAME_BYTES,
  REFUSED_FRAMES_WINDOW_MS,
  REFUSED_THROTTLE_MAX_MS,
  REFUSED_THROTTLE_MS,
} from './constants';
import { maxFrameBytes } from './codec';
import {
  type ConnectionKeys,
  HandshakeRole,
  type IdRange,
  decodeChallenge,
  decodeHello,
  decodeWelcome,
  encodeChallenge,
  encodeHello,
  encodeWelcome,
  handshakeMac,
  macEquals,
  newNonce,
} from './handshake';
import type { MessageHandler, Transport } from './transport';

/** Bytes queued toward one peer while its connection is being (re-)established. */
export const MAX_QUEUED_BYTES = 8 * 1024 * 1024;
/**
 * Bytes a connected socket may hold unsent (in Node's buffer and ours) before further frames
 * to that peer are dropped: a peer that reads slower than we write must not grow our memory
 * without bound. PBFT recovers lost frames by retransmission.
 */
export const MAX_SOCKET_BACKLOG_BYTES = 16 * 1024 * 1024;
/** Reconnection backoff bounds (ms). */
export const RECONNECT_MIN_MS = 50;
export const RECONNECT_MAX_MS = 2000;
/** Most node ids one hello may claim (a client process's id range). */
export const MAX_HELLO_IDS = 4096;
/**
 * Each step of a connection's handshake must come within this time (ms) of the previous one
 * (the dialer's first includes the TCP connect): a round trip and an HMAC, so a second is
 * generous even between continents, and it bounds how long a stranger holds a slot.
 */
export const HANDSHAKE_TIMEOUT_MS = 1000;
/** Largest frame read before the handshake completes (the HELLO, 58 bytes, is the largest). */
export const MAX_HANDSHAKE_FRAME_BYTES = 64;
/** Most bytes buffered for a connection that has not completed its handshake. */
export const HANDSHAKE_BUFFER_BYTES = 4 + MAX_HANDSHAKE_FRAME_BYTES;
/**
 * Accepted connections still in their handshake, from one remote address: a new one evicts
 * the oldest from the same address. Room for every node of a cluster on one host dialing at
 * start (three replicas and a relay with n = 4).
 */
export const MAX_HANDSHAKES_PER_ADDRESS = 16;
/**
 * Accepted connections still in their handshake, in all: a new one evicts the oldest of the
 * address that holds most, so a flood from a few addresses does not starve the others.
 */
export const MAX_HANDSHAKES = 128;
/**
 * Accepted connections at once, authenticated or not. Beyond it a new connection evicts the
 * oldest one still in its handshake, or is refused if all are authenticated (a node holds one
 * connection per id range: a newer authenticated one replaces the older).
 */
export const MAX_ACCEPTED_CONNECTIONS = 256;
/**
 * An accepted connection that delivered nothing for this long (ms) is closed; its dialer
 * redials when it next sends. Replicas talk every 100 ms and BFS relays and replicas exchange
 * NEW-KEY announcements every second, so only a dead peer gets here.
 */
export const IDLE_TIMEOUT_MS = 60_000;
/**
 * What a flood of connections that never authenticate may add to a process's resident memory;
 * the tests hold a real BFS replica to it. The limits above keep at most
 * MAX_ACCEPTED_CONNECTIONS sockets open (Node's cost of one is a few KiB), each buffering at
 * most HANDSHAKE_BUFFER_BYTES; the rest is garbage of the churn, collected as it goes, so the
 * peak depends on when the collector runs. Measured (docs/pbft.md): 28-67 MiB at the peak of a
 * flood of 3,000 connections, no higher after several.
 */
export const FLOOD_RSS_GROWTH_BOUND_BYTES = 96 * 1024 * 1024;

export interface PeerAddress {
  host: string;
  port: number;
}

export interface TcpOptions {
  /** The node ids this endpoint answers to: a contiguous range [ids[0], ids[0] + ids.length). */
  ids: number[];
  /**
   * The key of the connection handshake with each node (by its id range), in both directions:
   * a dialed peer must prove it, and so must every node whose connection we accept before any
   * frame from it is routed or sent to it.
   */
  connectionKeys: ConnectionKeys;
  /**
   * The largest VIEW-CHANGE or NEW-VIEW accepted from replicas (default and most
   * MAX_VIEW_CHANGE_FRAME_BYTES). A replica sets its cluster's bound (`Replica.maxReplicaFrameBytes`):
   * with four replicas that is under MAX_FRAME_BYTES, and no frame above it is read at all.
   */
  maxViewChangeFrameBytes?: number;
  /** Where to listen (replicas); omit for a dial-only endpoint (clients). */
  listen?: PeerAddress;
  /** Addresses of nodes this endpoint dials (the replicas). */
  peers?: Map<number, PeerAddress>;
  /**
   * For peers that talk all the time (replicas exchange STATUS every 100 ms): a peer not heard
   * from for this long has its connections dropped and redialled. A cut link otherwise leaves
   * TCP retransmitting with exponential backoff, so a healed link could stay silent for tens of
   * seconds. Off when omitted.
   */
  peerSilenceMs?: number;
}

/** Socket reads and writes of a transport (a write carries every frame one event produced). */
export interface IoCounters {
  reads: number;
  bytesIn: number;
  writes: number;
  framesOut: number;
  bytesOut: number;
  /** Frames dropped because the peer's socket already held MAX_SOCKET_BACKLOG_BYTES unsent. */
  framesDropped: number;
  /** Times a connection was paused for holding MAX_CONNECTION_INPUT_BYTES, and resumed. */
  inputPauses: number;
  inputResumes: number;
  /** Rounds of the input scheduler (each delivers up to a quantum from every queue with input). */
  inputRounds: number;
  /** Times a client connection was not read for sending too many refused frames. */
  inputThrottles: number;
  /** The most input bytes queued at once, over every connection (MAX_INPUT_BYTES bounds it). */
  inputPeakBytes: number;
}

/**
 * What a frame counts against the queue and backlog bounds: its bytes and length prefix, or
 * nothing for a VIEW-CHANGE or NEW-VIEW above MAX_FRAME_BYTES, which may alone exceed them and
 * goes whenever what waits before it is within them.
 */
function boundedBytes(frame: Uint8Array): number {
  return frame.length > MAX_FRAME_BYTES ? 0 : 4 + frame.length;
}

/**
 * Bytes of complete frames one authenticated connection may hold waiting for delivery: beyond
 * it the socket is paused (`socket.pause()`) until the queue drains below it, so a peer that
 * sends faster than we handle its frames is held back by TCP, not by our memory. Room for a
 * few batches; a frame larger than it (a VIEW-CHANGE) is still taken, alone.
 */
export const MAX_CONNECTION_INPUT_BYTES = 1024 * 1024;
/**
 * Bytes queued on all connections together: beyond it every connection that reads more is
 * paused too, until the total drains below it. With one connection per authenticated node the
 * per-connection bound holds it already for a small cluster; this one holds with many clients.
 */
export const MAX_INPUT_BYTES = 32 * 1024 * 1024;
/**
 * Bytes of frames each connection with input may have delivered per round of the input
 * scheduler (deficit round robin over bytes, Shreedhar and Varghese 1995): one socket read.
 * A frame larger than it waits for as many rounds as it needs; rounds in which no connection
 * could deliver are skipped at once.
 */
export const INPUT_QUANTUM_BYTES = 64 * 1024;

/** Frames at least this long are written from their own buffer, not copied into the batch. */
export const UNCOPIED_FRAME_BYTES = 64 * 1024;

/** The frames, each after its u32 length, in one buffer with `spare` bytes left at the end. */
function lengthPrefixed(frames: Uint8Array[], spare = 0): Buffer {
  let bytes = spare;
  for (const f of frames) bytes += 4 + f.length;
  const buf = Buffer.allocUnsafe(bytes);
  let at = 0;
  for (const f of frames) {
    buf.writeUInt32BE(f.length, at);
    buf.set(f, at + 4);
    at += 4 + f.length;
  }
  return buf;
}

/** Where a connection stands in its handshake (absent once authenticated). */
type Handshake =
  | { step: 'awaitHello'; na: Buffer; timer: NodeJS.Timeout }
  | { step: 'awaitChallenge'; timer: NodeJS.Timeout }
  | { step: 'awaitWelcome'; na: Buffer; nd: Buffer; key: Uint8Array; timer: NodeJS.Timeout };

/**
 * Authenticated frames of one connection waiting for the input scheduler, with its deficit
 * (bytes it may deliver before its turn ends).
 */
class InputQueue {
  private frames: Buffer[] = [];
  private head = 0;
  bytes = 0;
  deficit = 0;
  /** Whether it is in its class's round (it has input, or had when the round began). */
  scheduled = false;
  get empty(): boolean {
    return this.head === this.frames.length;
  }
  /** What the next frame costs against the deficit: its bytes and length prefix. */
  get headCost(): number {
    return 4 + this.frames[this.head]!.length;
  }
  push(frame: Buffer): void {
    this.frames.push(frame);
    this.bytes += 4 + frame.length;
  }
  take(): Buffer {
    const f = this.frames[this.head]!;
    this.frames[this.head++] = EMPTY_BUFFER;
    this.bytes -= 4 + f.length;
    if (this.head === this.frames.length) {
      this.frames = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.frames.length) {
      this.frames = this.frames.slice(this.head);
      this.head = 0;
    }
    return f;
  }
  clear(): void {
    this.frames = [];
    this.head = this.bytes = this.deficit = 0;
  }
}

const EMPTY_BUFFER = Buffer.alloc(0);

class Conn {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Authenticated frames not yet delivered (see TcpTransport's input scheduler). */
  readonly input = new InputQueue();
  /** Paused for holding MAX_CONNECTION_INPUT_BYTES of input. */
  inputPaused = false;
  /** Not read, nor served, until then, for refused frames (MAX_REFUSED_FRAMES_PER_WINDOW). */
  throttled = false;
  /** Refused frames delivered since `refusedSince` (in windows of REFUSED_FRAMES_WINDOW_MS). */
  refused = 0;
  refusedSince = 0;
  /** The last throttle's length and its end (it doubles when another follows soon). */
  throttleMs = 0;
  throttleEnd = -Infinity;
  private outFrames: Uint8Array[] = [];
  private outBytes = 0;
  /** The other end's ids, set once the handshake authenticated it; nothing is routed before. */
  remoteIds: number[] | undefined;
  handshake: Handshake | undefined;
  /**
   * When this connection last delivered bytes or frames (per read and per round of the input
   * scheduler, not per frame: off the hot path).
   */
  lastRead = Date.now();
  readonly address: string;
  constructor(
    readonly socket: net.Socket,
    /** The peer we dialed; undefined for a connection we accepted. */
    readonly dialed: number | undefined,
    private readonly onFrame: (c: Conn, frame: Buffer) => void,
    /** Authenticated frames of `bytes` (with their length prefixes) were queued on `c.input`. */
    private readonly onInput: (c: Conn, bytes: number) => void,
    private readonly onBad: (c: Conn, why: string) => void,
    private readonly io: IoCounters,
    private readonly maxLongFrame: number,
  ) {
    this.address = socket.remoteAddress ?? '?';
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.onData(d));
  }

  private onData(d: Buffer): void {
    this.io.reads++;
    this.io.bytesIn += d.length;
    this.lastRead = Date.now();
    this.chunks.push(d);
    this.buffered += d.length;
    const queuedBefore = this.input.bytes;
    this.cut();
    if (this.socket.destroyed) return;
    if (this.input.bytes > queuedBefore) this.onInput(this, this.input.bytes - queuedBefore);
  }

  /** Stops reading (the scheduler holds enough of our input); TCP holds the peer back. */
  pauseInput(): void {
    if (this.inputPaused) return;
    this.inputPaused = true;
    this.io.inputPauses++;
    this.socket.pause();
  }

  resumeInput(): void {
    if (!this.inputPaused) return;
    this.inputPaused = false;
    this.io.inputResumes++;
    if (!this.socket.destroyed && !this.throttled) this.socket.resume();
  }

  throttle(): void {
    this.throttled = true;
    this.socket.pause();
  }

  unthrottle(): void {
    this.throttled = false;
    if (!this.socket.destroyed && !this.inputPaused) this.socket.resume();
  }

  /**
   * Cuts the frames out of what was read: handshake frames are handled at once, authenticated
   * ones are queued for the scheduler.
   */
  private cut(): void {
    while (this.buffered >= 4) {
      let head = this.chunks[0]!.length >= 4 ? this.chunks[0]! : this.flatten();
      const len = head.readUInt32BE(0);
      if (this.remoteIds === undefined) {
        // Before the handshake only its frames: what waits here stays under HANDSHAKE_BUFFER_BYTES.
        if (len > MAX_HANDSHAKE_FRAME_BYTES) return this.onBad(this, `handshake frame of ${len}`);
      } else if (len > MAX_FRAME_BYTES) {
        // Only a VIEW-CHANGE or NEW-VIEW from a replica may be bigger: wait for its type byte.
        if (len > this.maxLongFrame || !this.fromReplica())
          return this.onBad(this, `frame of ${len} bytes`);
        if (this.buffered < 6) return;
        if (head.length < 6) head = this.flatten();
        if (len > maxFrameBytes(head[5])) return this.onBad(this, `frame of ${len} bytes`);
      }
      if (this.buffered < 4 + len) return;
      const all = this.chunks.length === 1 ? this.chunks[0]! : this.flatten();
      const frame = all.subarray(4, 4 + len);
      const rest = all.subarray(4 + len);
      this.chunks = rest.length > 0 ? [rest] : [];
      this.buffered = rest.length;
      if (this.remoteIds !== undefined) {
        this.input.push(frame);
        continue;
      }
      this.onFrame(this, frame);
      if (this.socket.destroyed) return;
    }
  }

  /** Whether the other end is an authenticated replica (its ids are below FIRST_CLIENT_ID). */
  fromReplica(): boolean {
    const ids = this.remoteIds;
    return ids !== undefined && ids[ids.length - 1]! < FIRST_CLIENT_ID;
  }
  private flatten(): Buffer {
    const b = Buffer.concat(this.chunks, this.buffered);
    this.chunks = [b];
    return b;
  }

  /**
   * Frames written while one event is handled leave in one socket write (a replica answers a
   * whole batch at once): a write on loopback costs the sender the receiver's TCP work too, far
   * more than copying the bytes. Flushing at setImmediate instead (after all ready input) gave
   * no measurable gain: 9,431 and 8,751 ops/s against 10,099 and 8,466 at nextTick, interleaved.
   */
  write(frame: Uint8Array): void {
    if (
      this.socket.writableLength + this.outBytes + boundedBytes(frame) >
      MAX_SOCKET_BACKLOG_BYTES
    ) {
      this.io.framesDropped++;
      return;
    }
    if (this.outFrames.length === 0) process.nextTick(this.flush);
    this.outFrames.push(frame);
    this.outBytes += 4 + frame.length;
  }

  private readonly flush = (): void => {
    const frames = this.outFrames;
    this.io.writes++;
    this.io.framesOut += frames.length;
    this.io.bytesOut += this.outBytes;
    this.outFrames = [];
    this.outBytes = 0;
    if (this.socket.destroyed) return;
    if (!frames.some((f) => f.length >= UNCOPIED_FRAME_BYTES)) {
      this.socket.write(lengthPrefixed(frames));
      return;
    }
    // Large frames go out as they are, in one writev with the rest: a relay sends each 1 MiB
    // request to every replica, and copying it into each connection's buffer cost a copy each.
    this.socket.cork();
    let run: Uint8Array[] = [];
    for (const f of frames) {
      if (f.length < UNCOPIED_FRAME_BYTES) {
        run.push(f);
        continue;
      }
      const head = lengthPrefixed(run, 4);
      head.writeUInt32BE(f.length, head.length - 4);
      this.socket.write(head);
      this.socket.write(f);
      run = [];
    }
    if (run.length > 0) this.socket.write(lengthPrefixed(run));
    this.socket.uncork();
  };
}

export class TcpTransport implements Transport {
  readonly ids: readonly number[];
  readonly stats: Record<string, number> = {};
  readonly io: IoCounters = {
    reads: 0,
    bytesIn: 0,
    writes: 0,
    framesOut: 0,
    bytesOut: 0,
    framesDropped: 0,
    inputPauses: 0,
    inputResumes: 0,
    inputRounds: 0,
    inputThrottles: 0,
    inputPeakBytes: 0,
  };
  private handler: MessageHandler | undefined;
  private server: net.Server | undefined;
  private readonly peers: Map<number, PeerAddress>;
  private readonly keys: ConnectionKeys;
  private readonly self: IdRange;
  /** Connections we dialed, by peer id. */
  private readonly outbound = new Map<number, Conn>();
  /** Authenticated connections peers dialed, by each id their hello claimed. */
  private readonly inbound = new Map<number, Conn>();
  /** Accepted connections still in their handshake, oldest first, by remote address. */
  private readonly handshaking = new Map<string, Set<Conn>>();
  private handshakingCount = 0;
  /** Every connection we accepted and have not closed. */
  private readonly accepted = new Set<Conn>();
  private readonly pending = new Map<number, Uint8Array[]>();
  private readonly backoff = new Map<number, { ms: number; retryAt: number }>();
  private readonly all = new Set<Conn>();
  private readonly dialTimers = new Map<number, NodeJS.Timeout>();
  private silenceTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly maxLongFrame: number;
  /**
   * Connections with input, by class: replicas' and everyone else's (clients, relays) are
   * served alternately, so no number of clients can starve agreement, and within a class by
   * deficit round robin, so one peer gets at most its share of its class.
   */
  private readonly rounds = { replicas: new Set<Conn>(), others: new Set<Conn>() };
  private deliverDue = false;
  /** Bytes queued on all connections, and the connections paused for a bound. */
  private inputBytes = 0;
  private readonly paused = new Set<Conn>();

  private constructor(opts: TcpOptions) {
    if (opts.ids.length < 1 || opts.ids.length > MAX_HELLO_IDS)
      throw new RangeError('bad id range');
    opts.ids.forEach((id, i) => {
      if (id !== opts.ids[0]! + i) throw new RangeError('ids must be a contiguous range');
    });
    this.ids = opts.ids;
    this.self = { first: opts.ids[0]!, count: opts.ids.length };
    this.keys = opts.connectionKeys;
    this.peers = opts.peers ?? new Map();
    this.maxLongFrame = Math.min(
      opts.maxViewChangeFrameBytes ?? MAX_VIEW_CHANGE_FRAME_BYTES,
      MAX_VIEW_CHANGE_FRAME_BYTES,
    );
    const silence = opts.peerSilenceMs;
    if (silence !== undefined) {
      this.silenceTimer = setInterval(() => this.dropSilent(silence), Math.max(100, silence / 4));
      this.silenceTimer.unref();
    }
  }

  private dropSilent(silenceMs: number): void {
    const now = Date.now();
    for (const [id, conn] of this.outbound) {
      if (conn.remoteIds === undefined) continue;
      // Peers answer over the connection they dialed: heard on either counts.
      const inb = this.inbound.get(id);
      if (now - Math.max(conn.lastRead, inb?.lastRead ?? -Infinity) < silenceMs) continue;
      this.count('dropSilentPeer');
      conn.socket.destroy();
      if (inb) inb.socket.destroy();
      // Redial now (with backoff) even if nothing is queued: the peer must hear from us again.
      this.pending.set(id, this.pending.get(id) ?? []);
      this.scheduleDial(id, RECONNECT_MIN_MS);
    }
  }

  static async open(opts: TcpOptions): Promise<TcpTransport> {
    const t = new TcpTransport(opts);
    if (opts.listen) await t.startServer(opts.listen);
    return t;
  }

  /** The port actually bound (useful with port 0). */
  get port(): number {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a.port : 0;
  }

  /** Accepted connections now open, and how many of them are still in their handshake. */
  get connections(): { accepted: number; handshaking: number } {
    return { accepted: this.accepted.size, handshaking: this.handshakingCount };
  }

  /** Adds or changes a peer's address (e.g. once every replica has bound its port). */
  setPeer(id: number, addr: PeerAddress): void {
    this.peers.set(id, addr);
  }

  onMessage(handler: MessageHandler): void {
    this.handler = handler;
  }

  send(to: number, bytes: Uint8Array): void {
    if (this.closed) return;
    if (bytes.length > maxFrameBytes(bytes[1])) return this.count('dropOversizeSend');
    const out = this.outbound.get(to);
    if (out && out.remoteIds !== undefined) return out.write(bytes);
    if (this.peers.has(to)) return this.queueAndDial(to, bytes);
    const inb = this.inbound.get(to);
    if (inb && !inb.socket.destroyed) return inb.write(bytes);
    this.count('dropNoRoute');
  }

  private queueAndDial(to: number, bytes: Uint8Array): void {
    const q = this.pending.get(to) ?? [];
    const size = q.reduce((s, b) => s + b.length, 0);
    if (size + boundedBytes(bytes) > MAX_QUEUED_BYTES) return this.count('dropQueueFull');
    q.push(bytes);
    this.pending.set(to, q);
    if (this.outbound.has(to)) return;
    const bo = this.backoff.get(to);
    const now = Date.now();
    if (bo && now < bo.retryAt) return this.scheduleDial(to, bo.retryAt - now);
    this.dial(to);
  }

  /** Dials `to` after `ms` unless a dial is already scheduled or connected by then. */
  private scheduleDial(to: number, ms: number): void {
    if (this.dialTimers.has(to)) return;
    const t = setTimeout(() => {
      this.dialTimers.delete(to);
      // An entry, even empty, asks for a dial (a silent peer is redialled with nothing queued).
      if (!this.closed && !this.outbound.has(to) && this.pending.has(to)) this.dial(to);
    }, ms);
    t.unref();
    this.dialTimers.set(to, t);
  }

  private dial(to: number): void {
    const addr = this.peers.get(to)!;
    const socket = net.connect(addr.port, addr.host);
    const conn = this.track(socket, to);
    conn.handshake = { step: 'awaitChallenge', timer: this.handshakeTimer(conn) };
    this.outbound.set(to, conn);
    socket.once('close', () => {
      if (this.outbound.get(to) === conn) this.outbound.delete(to);
      if (this.closed) return;
      const prev = this.backoff.get(to)?.ms ?? RECONNECT_MIN_MS / 2;
      const ms = Math.min(RECONNECT_MAX_MS, prev * 2);
      this.backoff.set(to, { ms, retryAt: Date.now() + ms });
      this.count('reconnect');
      // Anything still queued goes out on the next attempt.
      if ((this.pending.get(to)?.length ?? 0) > 0) this.scheduleDial(to, ms);
    });
  }

  /**
   * Closes `conn` unless its handshake moves on within HANDSHAKE_TIMEOUT_MS (each step we take
   * starts a new timer). The check waits for setImmediate, after the event loop's I/O phase: a
   * process that was busy for longer than the deadline (installing a state transfer) reads what
   * its peers sent meanwhile before it judges them late.
   */
  private handshakeTimer(conn: Conn): NodeJS.Timeout {
    const t: NodeJS.Timeout = setTimeout(
      () =>
        setImmediate(() => {
          if (conn.handshake?.timer !== t || conn.socket.destroyed) return;
          this.count('dropHandshakeTimeout');
          conn.socket.destroy();
        }),
      HANDSHAKE_TIMEOUT_MS,
    );
    t.unref();
    return t;
  }

  private track(socket: net.Socket, dialed?: number): Conn {
    const conn = new Conn(
      socket,
      dialed,
      (c, f) => this.onFrame(c, f),
      (c, bytes) => this.queued(c, bytes),
      (c, why) => this.refuse(c, 'dropBadStream', `bad: ${why.split(' ')[0]}`),
      this.io,
      this.maxLongFrame,
    );
    this.all.add(conn);
    socket.on('error', () => this.count('socketError'));
    socket.on('close', () => {
      this.all.delete(conn);
      this.accepted.delete(conn);
      this.endHandshake(conn);
      for (const id of conn.remoteIds ?? [])
        if (this.inbound.get(id) === conn) this.inbound.delete(id);
    });
    return conn;
  }

  /**
   * `c` queued input: it joins its class's round, delivered at setImmediate, after the event
   * loop read every socket that had input. One turn delivers one round of every class (the
   * primary batches all requests of the turn: ReplicaNode's endOfInput runs at nextTick after
   * it); input left over waits for the next turn, after the next reads.
   */
  private queued(c: Conn, bytes: number): void {
    this.inputBytes += bytes;
    if (this.inputBytes > this.io.inputPeakBytes) this.io.inputPeakBytes = this.inputBytes;
    if (!c.input.scheduled) {
      c.input.scheduled = true;
      (c.fromReplica() ? this.rounds.replicas : this.rounds.others).add(c);
    }
    if (c.input.bytes >= MAX_CONNECTION_INPUT_BYTES || this.inputBytes >= MAX_INPUT_BYTES) {
      c.pauseInput();
      this.paused.add(c);
    }
    if (this.deliverDue) return;
    this.deliverDue = true;
    setImmediate(this.deliver);
  }

  private readonly deliver = (): void => {
    this.deliverDue = false;
    if (this.closed) return;
    this.io.inputRounds++;
    this.serve(this.rounds.replicas);
    this.serve(this.rounds.others);
    // Every paused connection is looked at after each round: one paused for the total bound
    // may have nothing queued itself.
    if (this.inputBytes < MAX_INPUT_BYTES)
      for (const c of this.paused)
        if (c.input.bytes < MAX_CONNECTION_INPUT_BYTES || c.socket.destroyed) {
          c.resumeInput();
          this.paused.delete(c);
        }
    if (this.rounds.replicas.size + this.rounds.others.size > 0 && !this.deliverDue) {
      this.deliverDue = true;
      setImmediate(this.deliver);
    }
  };

  /**
   * One round of deficit round robin over `round`'s connections: each may deliver frames worth
   * its deficit plus INPUT_QUANTUM_BYTES. Rounds in which none could deliver a frame (all wait
   * for a frame larger than the quantum) are skipped at once: their quanta are added together.
   */
  private serve(round: Set<Conn>): void {
    if (round.size === 0) return;
    let short = Infinity;
    for (const c of round)
      if (!c.input.empty) short = Math.min(short, c.input.headCost - c.input.deficit);
    const quanta = short === Infinity ? 1 : Math.max(1, Math.ceil(short / INPUT_QUANTUM_BYTES));
    // Deleting the current entry of a Set while iterating it is safe: no copy per round.
    for (const c of round) {
      const q = c.input;
      const before = q.bytes;
      q.deficit += quanta * INPUT_QUANTUM_BYTES;
      while (!q.empty && q.headCost <= q.deficit && !c.socket.destroyed && !c.throttled) {
        q.deficit -= q.headCost;
        // A refused frame's penalty may leave the deficit below zero for rounds to come.
        const penalty = this.handler?.(c.remoteIds![0]!, q.take());
        if (penalty) {
          q.deficit -= penalty;
          if (!c.fromReplica()) this.noteRefused(c);
        }
      }
      // A peer whose frames wait here (paused, or behind others) is not silent.
      c.lastRead = Date.now();
      if (c.socket.destroyed) q.clear();
      this.inputBytes -= before - q.bytes;
      if (q.empty || c.throttled) {
        // A queue that ran dry keeps no credit (classic DRR), but keeps the debt of its
        // refused frames: emptying its queue must not forgive a client what it was charged.
        if (q.empty) q.deficit = Math.min(0, q.deficit);
        q.scheduled = false;
        round.delete(c);
      }
    }
  }

  /**
   * A frame of client connection `c` was refused: past MAX_REFUSED_FRAMES_PER_WINDOW in a window
   * it is neither read nor served for REFUSED_THROTTLE_MS, doubling while throttles follow each
   * other. Never a replica's: a correct replica's stale frames after a view change are refused
   * by the hundred, and its other frames must not wait behind them.
   */
  private noteRefused(c: Conn): void {
    const now = Date.now();
    if (now - c.refusedSince >= REFUSED_FRAMES_WINDOW_MS) {
      c.refusedSince = now;
      c.refused = 0;
    }
    if (++c.refused <= MAX_REFUSED_FRAMES_PER_WINDOW) return;
    c.throttleMs =
      now - c.throttleEnd < REFUSED_THROTTLE_MAX_MS
        ? Math.min(2 * c.throttleMs, REFUSED_THROTTLE_MAX_MS)
        : REFUSED_THROTTLE_MS;
    c.throttleEnd = now + c.throttleMs;
    c.refused = 0;
    c.throttle();
    this.io.inputThrottles++;
    this.count('inputThrottled');
    const t = setTimeout(() => {
      c.unthrottle();
      if (c.socket.destroyed || this.closed) return;
      c.lastRead = Date.now();
      if (!c.input.empty) this.queued(c, 0);
    }, c.throttleMs);
    t.unref();
  }

  private refuse(c: Conn, ...reasons: string[]): void {
    for (const r of reasons) this.count(r);
    c.socket.destroy();
  }

  /** A handshake frame (authenticated frames go through the input scheduler). */
  private onFrame(c: Conn, frame: Buffer): void {
    const hs = c.handshake;
    if (hs?.step === 'awaitHello') this.onHello(c, hs.na, frame);
    else if (hs?.step === 'awaitChallenge') this.onChallenge(c, frame);
    else if (hs?.step === 'awaitWelcome') this.onWelcome(c, hs, frame);
    else this.refuse(c, 'dropBadHandshake');
  }

  /** Dialer: the acceptor's nonce; we answer with our ids and our proof of their key. */
  private onChallenge(c: Conn, frame: Buffer): void {
    const na = decodeChallenge(frame);
    if (!na) return this.refuse(c, 'dropBadHandshake');
    const key = this.keys(c.dialed!, 1);
    if (!key) return this.refuse(c, 'dropNoConnectionKey');
    const nd = newNonce();
    const acceptor = { first: c.dialed!, count: 1 };
    const mac = handshakeMac(key, HandshakeRole.Dialer, this.self, acceptor, na, nd);
    clearTimeout(c.handshake!.timer);
    c.handshake = { step: 'awaitWelcome', na, nd, key, timer: this.handshakeTimer(c) };
    c.write(encodeHello(this.self, nd, mac));
  }

  /** Dialer: the acceptor proved the key of the replica we dialed; what waited goes out now. */
  private onWelcome(
    c: Conn,
    hs: Extract<Handshake, { step: 'awaitWelcome' }>,
    frame: Buffer,
  ): void {
    const to = c.dialed!;
    const mac = decodeWelcome(frame);
    const want = handshakeMac(
      hs.key,
      HandshakeRole.Acceptor,
      this.self,
      { first: to, count: 1 },
      hs.na,
      hs.nd,
    );
    if (!mac || !macEquals(mac, want)) return this.refuse(c, 'dropBadWelcome');
    this.endHandshake(c);
    c.remoteIds = [to];
    this.backoff.delete(to);
    const q = this.pending.get(to) ?? [];
    this.pending.delete(to);
    for (const b of q) c.write(b);
  }

  /**
   * Acceptor: the dialer names its ids and proves their key over our fresh nonce. Only then do
   * its ids route to this connection, replacing any older connection of theirs (a restarted
   * client takes its ids back; an unauthenticated connection never gets one).
   */
  private onHello(c: Conn, na: Buffer, frame: Buffer): void {
    const h = decodeHello(frame);
    if (!h) return this.refuse(c, 'dropBadHello');
    const { first, count } = h.dialer;
    const last = first + count - 1;
    if (count < 1 || count > MAX_HELLO_IDS || last >= 2 ** 32)
      return this.refuse(c, 'dropBadHello');
    if (first <= this.self.first + this.self.count - 1 && last >= this.self.first)
      return this.refuse(c, 'dropBadHello');
    const key = this.keys(first, count);
    if (!key) return this.refuse(c, 'dropUnknownHello');
    const want = handshakeMac(key, HandshakeRole.Dialer, h.dialer, this.self, na, h.nd);
    if (!macEquals(h.mac, want)) return this.refuse(c, 'dropBadHello');
    this.endHandshake(c);
    c.remoteIds = Array.from({ length: count }, (_, i) => first + i);
    const replaced = new Set<Conn>();
    for (const id of c.remoteIds) {
      const old = this.inbound.get(id);
      if (old && old !== c) replaced.add(old);
      this.inbound.set(id, c);
    }
    for (const old of replaced) this.refuse(old, 'routeReplaced');
    c.write(
      encodeWelcome(handshakeMac(key, HandshakeRole.Acceptor, h.dialer, this.self, na, h.nd)),
    );
  }

  /** Forgets `c`'s handshake state: its deadline and its slot among the unauthenticated. */
  private endHandshake(c: Conn): void {
    if (!c.handshake) return;
    clearTimeout(c.handshake.timer);
    c.handshake = undefined;
    const set = this.handshaking.get(c.address);
    if (set?.delete(c)) {
      this.handshakingCount--;
      if (set.size === 0) this.handshaking.delete(c.address);
    }
  }

  /**
   * Admits a connection we accepted into the handshake, within the limits: the oldest
   * unauthenticated connection of the same address, or of the address holding most, makes room.
   */
  private admit(socket: net.Socket): void {
    const conn = this.track(socket);
    const mine = this.handshaking.get(conn.address);
    if (mine && mine.size >= MAX_HANDSHAKES_PER_ADDRESS) this.evictOldest(mine);
    else if (this.handshakingCount >= MAX_HANDSHAKES) this.evictOldest(this.busiestAddress());
    if (this.accepted.size >= MAX_ACCEPTED_CONNECTIONS) {
      if (this.handshakingCount === 0) return this.refuse(conn, 'connectionRefused');
      this.evictOldest(this.busiestAddress());
    }
    this.accepted.add(conn);
    const na = newNonce();
    conn.handshake = { step: 'awaitHello', na, timer: this.handshakeTimer(conn) };
    let set = this.handshaking.get(conn.address);
    if (!set) this.handshaking.set(conn.address, (set = new Set()));
    set.add(conn);
    this.handshakingCount++;
    conn.write(encodeChallenge(na));
  }

  private busiestAddress(): Set<Conn> {
    let most: Set<Conn> | undefined;
    for (const set of this.handshaking.values()) if (!most || set.size > most.size) most = set;
    return most!;
  }

  private evictOldest(set: Set<Conn>): void {
    const oldest = set.values().next().value as Conn;
    // Out of the counts now: its 'close' event comes later.
    this.endHandshake(oldest);
    this.accepted.delete(oldest);
    this.refuse(oldest, 'handshakeEvicted');
  }

  /** Closes accepted connections that delivered nothing for IDLE_TIMEOUT_MS. */
  private dropIdle(): void {
    const now = Date.now();
    for (const c of this.accepted)
      if (now - c.lastRead >= IDLE_TIMEOUT_MS) this.refuse(c, 'dropIdle');
  }

  private startServer(addr: PeerAddress): Promise<void> {
    const server = net.createServer((socket) => {
      if (this.closed) return void socket.destroy();
      this.admit(socket);
    });
    this.server = server;
    this.idleTimer = setInterval(() => this.dropIdle(), Math.max(1000, IDLE_TIMEOUT_MS / 10));
    this.idleTimer.unref();
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(addr.port, addr.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  private count(reason: string): void {
    this.stats[reason] = (this.stats[reason] ?? 0) + 1;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.silenceTimer) clearInterval(this.silenceTimer);
    if (this.idleTimer) clearInterval(this.idleTimer);
    for (const t of this.dialTimers.values()) clearTimeout(t);
    for (const c of this.all) {
      if (c.handshake) clearTimeout(c.handshake.timer);
      c.socket.destroy();
    }
    if (this.server) await new Promise<void>((r) => this.server!.close(() => r()));
  }
}
