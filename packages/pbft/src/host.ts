/**
 * Drives a pure Replica over a real Transport: feeds it frames and clock ticks, performs its
 * sends, and hands every other action (executions, stable checkpoints) to the embedder.
 */
import type { Action, Replica } from './replica';
import type { Transport } from './transport';

/** Replica clock tick period (ms): drives STATUS, re-sends and batching left-overs. */
export const REPLICA_TICK_MS = 10;

export interface ReplicaNodeOptions {
  tickMs?: number;
  /**
   * Milliseconds, monotonic within the process. The default is epoch-based (time origin plus
   * performance.now()): services such as BFS derive the wall-clock time they propose from it,
   * so it must agree across processes started at different times.
   */
  clock?: () => number;
  /** Receives every non-send action, e.g. to persist the page store on 'stable'. */
  onAction?: (a: Exclude<Action, { kind: 'send' }>) => void;
}

/** Epoch milliseconds that never go backwards within the process (NTP steps do not show). */
export function replicaClock(): number {
  return performance.timeOrigin + performance.now();
}

export class ReplicaNode {
  private timer: NodeJS.Timeout | undefined;
  private readonly clock: () => number;
  private endOfInputDue = false;

  constructor(
    readonly replica: Replica,
    readonly transport: Transport,
    private readonly opts: ReplicaNodeOptions = {},
  ) {
    this.clock = opts.clock ?? replicaClock;
    // A socket read hands over all its frames within one event: the primary batches the requests
    // of the whole read (after it, at nextTick, before its sends are flushed).
    replica.deferPrePrepares = true;
    transport.onMessage((from, bytes) => {
      this.apply(replica.handleMessage(from, bytes, this.clock()));
      if (!this.endOfInputDue && replica.hasQueuedRequests) {
        this.endOfInputDue = true;
        process.nextTick(this.endOfInput);
      }
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
      if (a.kind === 'send') for (const to of a.to) this.transport.send(to, a.bytes);
      else this.opts.onAction?.(a);
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.transport.close();
  }
}
