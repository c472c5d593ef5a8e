import type { Action } from './api';
import type { ReplicaCounter, ReplicaStats } from './counters';

/**
 * What one step of the core (a message, a tick, the end of a burst) returns, and the clock of
 * that step. Every part writes its sends and events here, so the order of the actions is the
 * order in which the rules fired, as the host must perform them.
 */
export class Outbox {
  /** The time of the step in progress (the host's clock, handed in with each call). */
  now = 0;
  private actions: Action[] = [];
  /** Own COMMIT frames held back (`ReplicaOptions.holdCommits`), sent before the next send to a replica. */
  private held: Uint8Array[] = [];
  readonly stats: ReplicaStats = {};

  constructor(
    /** Node ids below this are replicas (held commits leave with a message to one). */
    private readonly n: number,
    private readonly otherReplicas: number[],
  ) {}

  /** Starts a step at `now`: later actions go into a fresh list. */
  begin(now: number): void {
    this.now = now;
    this.actions = [];
  }

  /** The actions of the step so far (the list `begin` started, handed to the host). */
  get list(): Action[] {
    return this.actions;
  }

  send(to: number[], bytes: Uint8Array): void {
    // Held commits go first, in the same socket write as this message (the transport writes
    // the frames of one event together).
    if (this.held.length > 0 && to[0]! < this.n) this.releaseCommits();
    this.actions.push({ kind: 'send', to, bytes });
  }

  emit(action: Action): void {
    this.actions.push(action);
  }

  holdCommit(frame: Uint8Array): void {
    this.held.push(frame);
  }

  get holdsCommits(): boolean {
    return this.held.length > 0;
  }

  /** Sends the held commits. */
  releaseCommits(): void {
    const held = this.held;
    this.held = [];
    for (const bytes of held) this.actions.push({ kind: 'send', to: this.otherReplicas, bytes });
  }

  count(reason: ReplicaCounter, k = 1): void {
    this.stats[reason] = (this.stats[reason] ?? 0) + k;
  }
}
