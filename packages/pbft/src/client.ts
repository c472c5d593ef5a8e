/**
 * The client library: `invoke(op, { readOnly })` resolves with the agreed result. Concurrency
 * comes from several client ids per process (PBFT allows one outstanding request per id);
 * invocations beyond that wait in a bounded FIFO queue.
 */
import { ClientCore, ClientOutput, ReadTargets, RttEstimator } from './client-core';
import { ClientGroup } from './client-group';
import { MAX_OP_BYTES } from './constants';
import type { MacAuthenticator } from './crypto';
import { type FaultCounts, FaultLedger } from './faults';
import type { RequestSigner } from './request-signatures';
import type { Transport } from './transport';

/** Client clock tick period (ms): drives retransmission. */
export const CLIENT_TICK_MS = 5;
/** Invocations a client process queues beyond its ids before refusing more. */
export const MAX_QUEUED_INVOCATIONS = 100_000;

export interface ClientOptions {
  n: number;
  /** The transport; its ids are this client's ids (one core each). */
  transport: Transport;
  /** Authenticator (session keys with every replica) for each client id. */
  auth: (id: number) => MacAuthenticator;
  retransmitInitialMs?: number;
  largeRequestBytes?: number;
  clock?: () => number;
  /** Replies to all ids in one REPLY-BATCH per executed batch (default true; see ClientGroup). */
  batchReplies?: boolean;
  /**
   * Signs read-write requests (ClientCoreOptions.signer): needed by a cluster whose replicas
   * check request signatures, which BFS's do by default. Absent: unsigned requests.
   */
  signer?: RequestSigner;
  /** Read-write requests to every replica at once (ClientCoreOptions.requestsToAll). */
  requestsToAll?: boolean;
}

interface Invocation {
  op: Uint8Array;
  readOnly: boolean;
  resolve: (r: Uint8Array) => void;
  reject: (e: Error) => void;
}

export class Client {
  private readonly group: ClientGroup;
  private readonly free: ClientCore[] = [];
  private readonly waiting = new Map<number, Invocation>();
  private readonly queue: Invocation[] = [];
  private readonly timer: NodeJS.Timeout;
  private readonly clock: () => number;
  private closed = false;

  constructor(private readonly opts: ClientOptions) {
    this.clock = opts.clock ?? (() => performance.now());
    // Timestamps must grow across restarts of a client id: start from wall-clock microseconds.
    const t0 = Date.now() * 1000;
    const rtt = new RttEstimator();
    const readTargets = new ReadTargets(opts.n, opts.transport.ids[0]);
    const faults = new FaultLedger(opts.n);
    const ids = opts.transport.ids;
    const replyTo = opts.batchReplies === false ? undefined : ids[0];
    const cores = ids.map(
      (id) =>
        new ClientCore(
          {
            n: opts.n,
            id,
            initialTimestamp: t0,
            retransmitInitialMs: opts.retransmitInitialMs,
            largeRequestBytes: opts.largeRequestBytes,
            rtt,
            readTargets,
            replyTo,
            faults,
            signer: opts.signer,
            requestsToAll: opts.requestsToAll,
          },
          opts.auth(id),
        ),
    );
    this.group = new ClientGroup(opts.n, cores);
    this.free.push(...cores);
    opts.transport.onMessage((from, bytes) => this.onMessage(from, bytes));
    this.timer = setInterval(() => this.tick(), CLIENT_TICK_MS);
    this.timer.unref();
  }

  /** Runs `op` through the replicated service; resolves with the agreed result. */
  invoke(op: Uint8Array, options: { readOnly?: boolean } = {}): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new Error('client closed'));
    if (op.length > MAX_OP_BYTES)
      return Promise.reject(
        new RangeError(`operation of ${op.length} bytes exceeds ${MAX_OP_BYTES}`),
      );
    if (this.queue.length >= MAX_QUEUED_INVOCATIONS)
      return Promise.reject(new Error('too many queued invocations'));
    return new Promise((resolve, reject) => {
      this.queue.push({ op, readOnly: options.readOnly ?? false, resolve, reject });
      this.pump();
    });
  }

  /** What this client observed from each replica (wrong replies, bad MACs), by replica id. */
  get faults(): FaultCounts[] {
    return this.group.cores[0]!.faults.snapshot();
  }

  /** Counters summed over this client's ids. */
  get stats(): Record<string, number> {
    const s: Record<string, number> = { ...this.group.stats };
    for (const c of this.group.cores)
      for (const [k, v] of Object.entries(c.stats)) s[k] = (s[k] ?? 0) + v;
    return s;
  }

  private pump(): void {
    while (this.queue.length > 0 && this.free.length > 0) {
      const inv = this.queue.shift()!;
      const core = this.free.pop()!;
      this.waiting.set(core.id, inv);
      this.emit(core.start(inv.op, inv.readOnly, this.clock()));
    }
  }

  private emit(out: ClientOutput): void {
    for (const s of out.sends) for (const to of s.to) this.opts.transport.send(to, s.bytes);
  }

  private onMessage(from: number, bytes: Uint8Array): void {
    for (const { core, out } of this.group.handleMessage(bytes, this.clock(), from)) {
      this.emit(out);
      if (out.result) this.complete(core, out.result);
    }
  }

  private complete(core: ClientCore, result: Uint8Array): void {
    const inv = this.waiting.get(core.id)!;
    this.waiting.delete(core.id);
    this.free.push(core);
    inv.resolve(result);
    this.pump();
  }

  private tick(): void {
    const now = this.clock();
    for (const id of this.waiting.keys()) this.emit(this.group.core(id)!.tick(now));
  }

  /** Rejects everything outstanding and closes the transport. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    const err = new Error('client closed');
    for (const inv of this.waiting.values()) inv.reject(err);
    for (const inv of this.queue.splice(0)) inv.reject(err);
    this.waiting.clear();
    await this.opts.transport.close();
  }
}
