/**
 * Golden-transcript harness: drives real `Replica` cores of a rule-test `Cluster` (fixed test
 * keys, a clock moved by hand, one FIFO queue of messages) and writes each step as one line:
 *
 *   t=<ms> <receiver> <- <sender> <message> => <action>; <action>; ... ; +<counter>
 *   t=<ms> <node> tick => ...
 *
 * where a message is its kind and the fields its rules read (transcript-format.ts), an action a
 * send (`<message> ><receivers>`), an execution, a persist point ('prepared', 'stable', 'view')
 * and so on, and `+name` a counter that moved in that step. A step that returned nothing says
 * `=> -`; ticks that return nothing are left out (every replica ticks at every `tick`).
 *
 * Faults: a crashed replica takes no input and no ticks from then on; an isolated one keeps
 * ticking but everything to or from it is lost until it is healed. Messages lost to either are
 * not printed (they would repeat every STATUS interval); messages a `drop` rule removes are,
 * with `dropped`, because those are the losses a scenario is about.
 */
import { Action, ClientSend, Replica, ReplicaOptions } from '../../src';
import { Cluster, Envelope } from './cluster';
import {
  countersMoved,
  describeAction,
  describeFrame,
  describeResult,
  describeSend,
  describeSlot,
  frameKind,
  frameField,
  hex,
  node,
} from './transcript-format';

/**
 * Deliveries one `deliver` may make before the scenario is declared a livelock: the scenarios
 * need a few hundred; a scenario that never drains its queue should fail, not print forever.
 */
export const MAX_DELIVERIES_PER_STEP = 10_000;

/** A message loss a scenario asks for; an absent field matches every message. */
export interface DropRule {
  kind?: string;
  from?: number;
  to?: number;
  view?: number;
  seq?: number;
}

export class Transcript {
  readonly cluster: Cluster;
  private readonly crashed = new Set<number>();
  private readonly isolated = new Set<number>();
  private rules: DropRule[] = [];

  constructor(f: number, opts: Partial<ReplicaOptions>, clients: number) {
    this.cluster = new Cluster(f, opts, clients);
  }

  get n(): number {
    return this.cluster.n;
  }

  private prefix(who: number): string {
    return `t=${this.cluster.now} ${node(who, this.n)}`;
  }

  private line(head: string, outcomes: string[]): string {
    return `${head} => ${outcomes.length === 0 ? '-' : outcomes.join('; ')}`;
  }

  /**
   * Runs one step of replica `r` (a delivery or a tick), queues what it sends, and says what it
   * returned and which of its counters moved.
   */
  private replicaStep(r: number, step: (replica: Replica) => Action[]): string[] {
    const replica = this.cluster.replicas[r]!;
    const before = { ...replica.stats };
    const actions = step(replica);
    this.cluster.apply(r, actions);
    const said = actions.map((a) => describeAction(a, r, this.n));
    return [...said, ...countersMoved(before, replica.stats)];
  }

  /** Queues what client `id` sends and says it. */
  private clientSends(id: number, sends: ClientSend[]): string[] {
    for (const s of sends) this.cluster.post(id, s.to, s.bytes);
    return sends.map((s) => describeSend(s, id, this.n));
  }

  /** Client `id` starts a request; its sends are queued, not delivered. */
  request(id: number, op: Uint8Array, readOnly: boolean): string[] {
    const sends = this.clientById(id).start(op, readOnly, this.cluster.now).sends;
    return [this.line(`${this.prefix(id)} request`, this.clientSends(id, sends))];
  }

  private clientById(id: number) {
    const c = this.cluster.clients.find((x) => x.id === id);
    if (!c) throw new Error(`no client c${id}`);
    return c;
  }

  private replicaIndex(r: number): number {
    if (!Number.isInteger(r) || r < 0 || r >= this.n) throw new Error(`no replica r${r}`);
    return r;
  }

  crash(r: number): void {
    this.crashed.add(this.replicaIndex(r));
  }

  isolate(r: number): void {
    this.isolated.add(this.replicaIndex(r));
  }

  heal(r: number): void {
    this.isolated.delete(this.replicaIndex(r));
  }

  drop(rule: DropRule): void {
    this.rules.push(rule);
  }

  clearDrops(): void {
    this.rules = [];
  }

  private lost(e: Envelope): boolean {
    return this.crashed.has(e.to) || this.isolated.has(e.to) || this.isolated.has(e.from);
  }

  private dropped(e: Envelope): boolean {
    return this.rules.some(
      (r) =>
        (r.from === undefined || r.from === e.from) &&
        (r.to === undefined || r.to === e.to) &&
        (r.kind === undefined || r.kind === frameKind(e.bytes)) &&
        (r.view === undefined || r.view === frameField(e.bytes, 'view')) &&
        (r.seq === undefined || r.seq === frameField(e.bytes, 'seq')),
    );
  }

  /** Delivers queued messages in order until none is left (or `limit` were delivered). */
  deliver(limit?: number): string[] {
    const lines: string[] = [];
    const queue = this.cluster.queue;
    for (let k = 0; queue.length > 0 && (limit === undefined || k < limit); k++) {
      if (k >= MAX_DELIVERIES_PER_STEP)
        throw new Error(`more than ${MAX_DELIVERIES_PER_STEP} deliveries: a livelock`);
      const e = queue.shift()!;
      if (this.lost(e)) continue;
      const head = `${this.prefix(e.to)} <- ${node(e.from, this.n)} ${describeFrame(e.bytes, this.n, e.from)}`;
      if (this.dropped(e)) lines.push(`${head} dropped`);
      else lines.push(this.line(head, this.handle(e)));
    }
    return lines;
  }

  private handle(e: Envelope): string[] {
    const c = this.cluster;
    if (e.to < this.n)
      return this.replicaStep(e.to, (r) => r.handleMessage(e.from, e.bytes, c.now));
    const out = this.clientById(e.to).handleMessage(e.bytes, c.now, e.from);
    const told = this.clientSends(e.to, out.sends);
    if (out.result) {
      c.results.get(e.to)!.push(out.result);
      told.push(`result #${out.timestamp} ${describeResult(out.result)}`);
    }
    return told;
  }

  /** Moves the clock by `ms` and ticks every running replica, then every client. */
  tick(ms: number): string[] {
    const c = this.cluster;
    c.now += ms;
    const lines: string[] = [];
    for (let i = 0; i < this.n; i++) {
      if (this.crashed.has(i)) continue;
      const out = this.replicaStep(i, (r) => r.tick(c.now));
      if (out.length > 0) lines.push(this.line(`${this.prefix(i)} tick`, out));
    }
    for (const client of c.clients) {
      const out = this.clientSends(client.id, client.tick(c.now).sends);
      if (out.length > 0) lines.push(this.line(`${this.prefix(client.id)} tick`, out));
    }
    return lines;
  }

  /** `ms` of time in ticks of `stepMs`, delivering everything after each. */
  run(ms: number, stepMs: number): string[] {
    if (!(stepMs > 0)) throw new Error('run needs a step above 0 ms');
    const lines: string[] = [];
    for (let t = 0; t < ms; t += stepMs) lines.push(...this.tick(stepMs), ...this.deliver());
    return lines;
  }

  /** One line per replica: view, water marks, progress, log and stable checkpoint. */
  state(): string[] {
    return this.cluster.replicas.map((r, i) => {
      if (this.crashed.has(i)) return `r${i} crashed`;
      const slots = [...r.log.values()].sort((a, b) => a.seq - b.seq);
      const log = slots.length === 0 ? '-' : slots.map(describeSlot).join(',');
      const stable = r.stableDigest ? ` d:${hex(r.stableDigest)}` : '';
      const status = r.active ? 'active' : 'changing view';
      const isolated = this.isolated.has(i) ? ' isolated' : '';
      return (
        `r${i} v${r.view} ${status}${isolated} h=${r.lowWater}${stable} H=${r.highWater} ` +
        `committed=${r.lastCommitted} executed=${r.lastExecuted} log=${log}`
      );
    });
  }
}
