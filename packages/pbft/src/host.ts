/**
 * Drives a pure Replica over a real Transport: feeds it frames and clock ticks, performs its
 * sends, and hands every other action (executions, stable checkpoints) to the embedder.
 */
import { REFUSED_INPUT_PENALTY_BYTES } from './constants';
import type { Action, Replica } from './replica';
import type { Transport } from './transport';

/** Replica clock tick period (ms): drives STATUS, re-sends and batching left-overs. */
export const REPLICA_TICK_MS = 10;
/**
 * Sends held behind durable writes at most (a disk that stalls must not grow memory without
 * bound): beyond it they are dropped, as a lossy network would, and retransmission recovers.
 */
export const MAX_HELD_SENDS = 65_536;

export interface ReplicaNodeOptions {
  tickMs?: number;
  /**
   * Milliseconds, monotonic within the process. The default is epoch-based (time origin plus
   * performance.now()): services such as BFS derive the wall-clock time they propose from it,
   * so it must agree across processes started at different times.
   */
  clock?: () => number;
  /**
   * Receives every non-send action, e.g. to persist the page store on 'stable'. For a
   * 'prepared' action it returns the promise of the certificate's durable write: every later
   * action waits for it (see Action 'prepared'). Writes must complete in the order they were
   * asked for (one log, one queue), so that group commit can take many certificates at once.
   */
  onAction?: (a: Exclude<Action, { kind: 'send' }>) => void | Promise<unknown>;
  /**
   * Called once when a durable write fails (a 'prepared' write rejected, `onAction` threw, or
   * `fence` was called): the node then sends nothing any more (fenced).
   */
  onPersistFailure?: (e: Error) => void;
}

/** Epoch milliseconds that never go backwards within the process (NTP steps do not show). */
export function replicaClock(): number {
  return performance.timeOrigin + performance.now();
}

export class ReplicaNode {
  private timer: NodeJS.Timeout | undefined;
  private readonly clock: () => number;
  private endOfInputDue = false;
  /** Durable writes asked for and done ('prepared' actions), in order. */
  private writesAsked = 0;
  private writesDone = 0;
  /** Actions that wait for a durable write: each with the number of writes it waits for. */
  private readonly held: { after: number; action: Action }[] = [];
  /**
   * Set when a durable write failed: what waited for it, and everything later, is never sent,
   * so no COMMIT or reply of ours claims a certificate our disk may lack.
   */
  fenced: Error | undefined;
  private heldSends = 0;
  /** Sends dropped because MAX_HELD_SENDS waited already (a stalled disk). */
  heldSendsDropped = 0;

  constructor(
    readonly replica: Replica,
    readonly transport: Transport,
    private readonly opts: ReplicaNodeOptions = {},
  ) {
    this.clock = opts.clock ?? replicaClock;
    // The transport hands over a whole round of its input scheduler within one event (TCP: one
    // setImmediate): the primary batches the requests of the whole round (after it, at
    // nextTick, before its sends are flushed).
    replica.deferPrePrepares = true;
    transport.onMessage((from, bytes) => {
      this.apply(replica.handleMessage(from, bytes, this.clock()));
      if (!this.endOfInputDue && replica.hasQueuedRequests) {
        this.endOfInputDue = true;
        process.nextTick(this.endOfInput);
      }
      // A client connection whose frames are refused is served less (REFUSED_INPUT_PENALTY_BYTES).
      return replica.lastInputRefused && from >= replica.n
        ? REFUSED_INPUT_PENALTY_BYTES
        : undefined;
    });
  }

  private readonly endOfInput = (): void => {
    this.endOfInputDue = false;
    this.apply(this.replica.endOfInput(this.clock()));
  };

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(
      () => this.apply(this.replica.tick(this.clock())),
      this.opts.tickMs ?? REPLICA_TICK_MS,
    );
  }

  /** Performs actions the embedder obtained from the core directly (e.g. `replayCommitted`). */
  perform(actions: Action[]): void {
    this.apply(actions);
  }

  private apply(actions: Action[]): void {
    for (const a of actions) {
      if (a.kind === 'prepared') {
        // Started at once, held or not: writes queued meanwhile go to disk together.
        const write = this.opts.onAction?.(a);
        if (write) this.track(write);
      } else if (this.writesDone < this.writesAsked && !this.fenced) {
        if (a.kind === 'send' && this.heldSends >= MAX_HELD_SENDS) this.heldSendsDropped++;
        else {
          if (a.kind === 'send') this.heldSends++;
          this.held.push({ after: this.writesAsked, action: a });
        }
      } else this.perform1(a);
    }
  }

  private perform1(a: Action): void {
    if (a.kind === 'send') {
      if (!this.fenced) for (const to of a.to) this.transport.send(to, a.bytes);
    } else if (a.kind !== 'prepared') {
      try {
        this.opts.onAction?.(a);
      } catch (e) {
        // A synchronous durable write of the embedder (the view before a VIEW-CHANGE) failed.
        this.fence(e);
      }
    }
  }

  private track(write: Promise<unknown>): void {
    this.writesAsked++;
    write.then(
      () => {
        this.writesDone++;
        let k = 0;
        while (k < this.held.length && this.held[k]!.after <= this.writesDone) {
          const a = this.held[k++]!.action;
          if (a.kind === 'send') this.heldSends--;
          this.perform1(a);
        }
        this.held.splice(0, k);
      },
      (e: unknown) => this.fence(e),
    );
  }

  /**
   * Sends nothing from now on: a durable write failed (a 'prepared' write, or one the embedder
   * reports: a checkpoint, the view, the keys), so what we would send may claim state our disk
   * lacks. Messages are still taken in; the embedder restarts the node from disk to rejoin.
   */
  fence(e: unknown): void {
    if (this.fenced) return;
    this.fenced = e instanceof Error ? e : new Error(String(e));
    // Non-send actions still reach the host (it may log them); sends are dropped.
    for (const h of this.held.splice(0)) this.perform1(h.action);
    this.heldSends = 0;
    this.opts.onPersistFailure?.(this.fenced);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.transport.close();
  }
}
