/**
 * The requests a replica knows of and has not seen through yet: the primary's queue of requests
 * waiting for a pre-prepare, the bodies of separately transmitted (large) requests by digest,
 * the requests each replica waits to see executed (the view-change timer runs on them), the
 * requests relayed to the primary, and reads held back by a batch in flight. Every set is
 * bounded (MAX_* in constants.ts).
 */
import {
  MAX_PENDING_READ_ONLY,
  MAX_PENDING_REQUESTS,
  MAX_STORED_REQUEST_BYTES,
  MAX_STORED_REQUESTS,
  REQUEST_RELAYS,
} from '../constants';
import type { RequestMsg } from '../codec';
import type { Outbox } from './outbox';
import type { ResolvedRequest } from './slot';

/** A request's identity for exactly-once: client and timestamp. */
export function requestKey(msg: RequestMsg): string {
  return `${msg.clientId}:${msg.timestamp}`;
}

/** A map of requests bounded by count and by frame bytes, evicting the oldest first. */
class BoundedRequests {
  private readonly map = new Map<string, ResolvedRequest>();
  private bytes = 0;

  get size(): number {
    return this.map.size;
  }

  /** Frame bytes held. */
  get byteCount(): number {
    return this.bytes;
  }

  /** Whether `req` fits without evicting anything. */
  hasRoom(req: ResolvedRequest): boolean {
    return (
      this.map.size < MAX_STORED_REQUESTS &&
      this.bytes + req.frame.length <= MAX_STORED_REQUEST_BYTES
    );
  }

  /** Evicts the oldest entries until `req` fits; returns how many went. */
  makeRoom(req: ResolvedRequest): number {
    let evicted = 0;
    while (this.map.size > 0 && !this.hasRoom(req)) {
      this.delete(this.map.keys().next().value as string);
      evicted++;
    }
    return evicted;
  }

  has(key: string): boolean {
    return this.map.has(key);
  }

  get(key: string): ResolvedRequest | undefined {
    return this.map.get(key);
  }

  set(key: string, req: ResolvedRequest): void {
    this.delete(key);
    this.map.set(key, req);
    this.bytes += req.frame.length;
  }

  delete(key: string): void {
    const old = this.map.get(key);
    if (old === undefined) return;
    this.map.delete(key);
    this.bytes -= old.frame.length;
  }

  [Symbol.iterator](): IterableIterator<[string, ResolvedRequest]> {
    return this.map.entries();
  }

  asMap(): ReadonlyMap<string, ResolvedRequest> {
    return this.map;
  }
}

export class RequestQueue {
  /** Separately transmitted (large) requests not yet executed, by hex digest. */
  private readonly store = new BoundedRequests();
  /** Primary: requests waiting for a pre-prepare, in arrival order, and their keys. */
  private readonly pending: ResolvedRequest[] = [];
  private readonly pendingKeys = new Set<string>();
  /** Primary: requests assigned a sequence number and not yet executed (no double ordering). */
  private readonly orderedKeys = new Set<string>();
  /** Backup: requests relayed to the primary once. */
  private readonly forwarded = new Set<string>();
  /**
   * Backup: awaited requests to relay to the primary while they stay awaited (its copy may have
   * been lost), by when last relayed or first heard (oldest first), with the relays left.
   */
  private readonly relays = new Map<string, { at: number; left: number }>();
  /**
   * Read-write requests a copy of which came straight from their client, oldest first (at most
   * MAX_STORED_REQUESTS): of a request first sent to all, only a second copy is a
   * retransmission. Kept past execution, for the retransmissions that come after it.
   */
  private readonly heard = new Set<string>();
  /** Requests this replica knows of and waits to see committed (by client:timestamp). */
  private readonly awaited = new BoundedRequests();
  /**
   * When this replica first learned of each awaited request, oldest first (the per-request
   * timer, PrimaryMonitor). Entries of evicted requests linger at the front until
   * `oldestAwaitedSince` passes them.
   */
  private readonly awaitedAt = new Map<string, number>();
  private readonly reads: ResolvedRequest[] = [];

  constructor(private readonly io: Outbox) {}

  /** Keeps a large request's body, the oldest going first when the store is full. */
  storeBody(req: ResolvedRequest): void {
    this.store.delete(req.hex);
    const evicted = this.store.makeRoom(req);
    if (evicted > 0) this.io.count('evictStoredRequest', evicted);
    this.store.set(req.hex, req);
  }

  /** Keeps a body while the store has room (restored certificates: best effort). */
  keepBody(req: ResolvedRequest): void {
    if (this.store.hasRoom(req)) this.store.set(req.hex, req);
  }

  /** Puts back the body of a request that ran here, for a re-proposal that carries its digest. */
  putBackBody(req: ResolvedRequest): void {
    this.store.set(req.hex, req);
  }

  body(hex: string): ResolvedRequest | undefined {
    return this.store.get(hex);
  }

  /** Waits for `req` to commit (bounded: the oldest is forgotten first). */
  await(key: string, req: ResolvedRequest): void {
    if (this.awaited.has(key)) return;
    const evicted = this.awaited.makeRoom(req);
    if (evicted > 0) this.io.count('evictAwaitedRequest', evicted);
    this.awaited.set(key, req);
    this.awaitedAt.delete(key);
    this.awaitedAt.set(key, this.io.now);
  }

  /** Stops waiting for one request (its client's signature on it failed). */
  unawait(key: string): void {
    this.awaited.delete(key);
    this.awaitedAt.delete(key);
  }

  /**
   * When this replica began to wait for `req`, if it waits for it: a request forgotten for a bad
   * signature must not leave the others a shorter wait than a whole timeout.
   */
  awaitedSince(req: ResolvedRequest): number | undefined {
    const key = requestKey(req.msg);
    return this.awaited.has(key) ? this.awaitedAt.get(key) : undefined;
  }

  /** When this replica first learned of the oldest request still awaited; undefined if none. */
  oldestAwaitedSince(): number | undefined {
    for (const [key, at] of this.awaitedAt) {
      if (this.awaited.has(key)) return at;
      this.awaitedAt.delete(key);
    }
    return undefined;
  }

  /** Frame bytes of the requests awaited. */
  get awaitedBytes(): number {
    return this.awaited.byteCount;
  }

  /** The requests waited for, by key (oldest first). */
  get waitedFor(): ReadonlyMap<string, ResolvedRequest> {
    return this.awaited.asMap();
  }

  /** Stops waiting for the requests `done` says need no more waiting. */
  forgetAwaited(done: (req: ResolvedRequest) => boolean): void {
    for (const [key, req] of this.awaited)
      if (done(req)) {
        this.awaited.delete(key);
        this.awaitedAt.delete(key);
      }
  }

  /** Primary: queues a request for a pre-prepare, unless queued or ordered already or full. */
  enqueue(key: string, req: ResolvedRequest): 'queued' | 'duplicate' | 'full' {
    if (this.pendingKeys.has(key) || this.orderedKeys.has(key)) return 'duplicate';
    if (this.pending.length >= MAX_PENDING_REQUESTS) return 'full';
    this.pendingKeys.add(key);
    this.pending.push(req);
    return 'queued';
  }

  /** Queues a request known from before a view change, unless queued already; false when full. */
  requeue(key: string, req: ResolvedRequest): boolean {
    if (this.pendingKeys.has(key)) return true;
    if (this.pending.length >= MAX_PENDING_REQUESTS) return false;
    this.pendingKeys.add(key);
    this.pending.push(req);
    return true;
  }

  get queued(): number {
    return this.pending.length;
  }

  /** The next queued request, without taking it. */
  peek(): ResolvedRequest | undefined {
    return this.pending[0];
  }

  /** Takes the next queued request off the queue. */
  take(): ResolvedRequest {
    const r = this.pending.shift()!;
    this.pendingKeys.delete(requestKey(r.msg));
    return r;
  }

  /** Marks a request as ordered (assigned a sequence number here). */
  markOrdered(key: string): void {
    this.orderedKeys.add(key);
  }

  /** Drops queued requests with these keys (a re-proposed batch that holds them arrived). */
  unqueue(keys: Set<string>): void {
    const queued = this.pending.splice(0);
    for (const r of queued) {
      const k = requestKey(r.msg);
      if (keys.has(k)) this.pendingKeys.delete(k);
      else this.pending.push(r);
    }
  }

  /**
   * A copy of a read-write request came from its client: whether it is a retransmission (a copy
   * came before, or the client sent the first one to the primary alone).
   */
  hear(key: string, toAll: boolean): boolean {
    const before = this.heard.has(key);
    if (!before) {
      if (this.heard.size >= MAX_STORED_REQUESTS)
        this.heard.delete(this.heard.values().next().value as string);
      this.heard.add(key);
    }
    return before || !toAll;
  }

  /** Backup: whether to relay a request to the primary (once, and small ones only). */
  relayOnce(key: string, small: boolean): boolean {
    if (this.forwarded.size >= MAX_STORED_REQUESTS) this.forwarded.clear();
    if (this.forwarded.has(key) || !small) return false;
    this.forwarded.add(key);
    return true;
  }

  /**
   * Backup: relay request `key` to the primary while it is awaited, `afterMs` from now and then
   * every `afterMs` (`relayDue`), REQUEST_RELAYS times at most.
   */
  relayWhileAwaited(key: string): void {
    if (this.relays.has(key)) return;
    if (this.relays.size >= MAX_STORED_REQUESTS)
      this.relays.delete(this.relays.keys().next().value as string);
    this.relays.set(key, { at: this.io.now, left: REQUEST_RELAYS });
  }

  /** Backup: the requests of `relayWhileAwaited` due again (`afterMs` since the last time). */
  relayDue(afterMs: number): ResolvedRequest[] {
    const due: ResolvedRequest[] = [];
    for (const [key, r] of this.relays) {
      if (this.io.now - r.at < afterMs) break;
      this.relays.delete(key);
      const req = this.awaited.get(key);
      if (!req) continue;
      due.push(req);
      // Re-armed at the end; the loop stops when it gets there.
      if (r.left > 1) this.relays.set(key, { at: this.io.now, left: r.left - 1 });
    }
    return due;
  }

  /** Marks a request as relayed (re-sent to a new primary). */
  markRelayed(key: string): void {
    this.forwarded.add(key);
  }

  /** A request of a batch ran (or was skipped): it is no longer queued, relayed or stored. */
  executed(req: ResolvedRequest): void {
    // Each set is empty on a backup that got its requests inside pre-prepares: no key then.
    if (this.forwarded.size > 0 || this.orderedKeys.size > 0) {
      const key = requestKey(req.msg);
      this.forwarded.delete(key);
      this.orderedKeys.delete(key);
    }
    if (this.store.size > 0) this.store.delete(req.hex);
  }

  /**
   * A request committed: tentative execution can no longer be lost, so it is no longer awaited.
   * Returns whether it was.
   */
  committed(req: ResolvedRequest): boolean {
    if (this.awaited.size === 0) return false;
    const key = requestKey(req.msg);
    if (!this.awaited.has(key)) return false;
    this.awaited.delete(key);
    this.awaitedAt.delete(key);
    this.relays.delete(key);
    return true;
  }

  /** A new view (or a view change): the queue, orders and relays of the old one are void. */
  resetForView(): void {
    this.pending.length = 0;
    this.pendingKeys.clear();
    this.orderedKeys.clear();
    this.forwarded.clear();
    this.relays.clear();
  }

  /** Holds a read until nothing is in flight; false when the queue of reads is full. */
  holdRead(req: ResolvedRequest): boolean {
    if (this.reads.length >= MAX_PENDING_READ_ONLY) return false;
    this.reads.push(req);
    return true;
  }

  get readsHeld(): number {
    return this.reads.length;
  }

  takeReads(): ResolvedRequest[] {
    return this.reads.splice(0);
  }
}
