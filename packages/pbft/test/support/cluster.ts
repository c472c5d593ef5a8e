/**
 * A deterministic in-process cluster for rule tests: FIFO delivery, no loss unless a filter
 * drops a message, and a hand-driven clock.
 */
import { randomBytes } from 'node:crypto';
import {
  Action,
  ClientCore,
  ClientGroup,
  FIRST_CLIENT_ID,
  MacAuthenticator,
  Replica,
  ReplicaOptions,
  type RequestSigner,
} from '../../src';
import { testSessionKey } from '../../src/testing';
import { KvService } from './kv';

export interface Envelope {
  from: number;
  to: number;
  bytes: Uint8Array;
}

export class Cluster {
  readonly n: number;
  readonly replicas: Replica[] = [];
  readonly services: KvService[] = [];
  readonly clients: ClientCore[] = [];
  readonly queue: Envelope[] = [];
  readonly actions: { replica: number; action: Action }[] = [];
  readonly results = new Map<number, Uint8Array[]>();
  /** Set by `oneClientProcess`: the clients as one process with batched replies. */
  group: ClientGroup | undefined;
  /** Return false to drop a message. */
  filter: (e: Envelope) => boolean = () => true;
  now = 0;

  constructor(
    f = 1,
    opts: Partial<ReplicaOptions> = {},
    clients = 1,
    /** Signs the clients' read-write requests (replicas check them with opts.requestSignatures). */
    signer?: RequestSigner,
  ) {
    // Clients and replicas must agree on what counts as a large request.
    const largeRequestBytes = opts.largeRequestBytes;
    this.n = 3 * f + 1;
    const clientIds = Array.from({ length: clients }, (_, i) => FIRST_CLIENT_ID + i);
    const all = [...Array.from({ length: this.n }, (_, i) => i), ...clientIds];
    for (let i = 0; i < this.n; i++) {
      const svc = new KvService();
      this.services.push(svc);
      // The rule tests follow the paper's message flow, a COMMIT as soon as prepared, and no
      // null batches when idle; held commits and idle checkpoints have tests of their own.
      this.replicas.push(
        new Replica(
          { n: this.n, id: i, holdCommits: false, idleCheckpointMs: 0, ...opts },
          svc,
          Cluster.auth(i, all),
        ),
      );
    }
    for (const id of clientIds) {
      this.clients.push(
        new ClientCore(
          { n: this.n, id, initialTimestamp: 0, largeRequestBytes, signer },
          Cluster.auth(id, all.slice(0, this.n)),
        ),
      );
      this.results.set(id, []);
    }
  }

  /**
   * Makes the clients one client process: every id asks for its replies batched to `replyTo`
   * (default the first id, as the Client library does) and frames reach them through a
   * ClientGroup.
   */
  oneClientProcess(replyTo = FIRST_CLIENT_ID): ClientGroup {
    const replicas = Array.from({ length: this.n }, (_, i) => i);
    this.clients.forEach((c, i) => {
      this.clients[i] = new ClientCore(
        { n: this.n, id: c.id, initialTimestamp: 0, replyTo },
        Cluster.auth(c.id, replicas),
      );
    });
    return (this.group = new ClientGroup(this.n, this.clients));
  }

  static auth(id: number, peers: number[]): MacAuthenticator {
    return new MacAuthenticator(
      id,
      peers.filter((p) => p !== id).map((p) => [p, testSessionKey('cluster', id, p)]),
    );
  }

  client(i = 0): ClientCore {
    return this.clients[i]!;
  }

  invoke(op: Uint8Array, readOnly = false, i = 0): void {
    const c = this.client(i);
    for (const s of c.start(op, readOnly, this.now).sends) this.post(c.id, s.to, s.bytes);
  }

  post(from: number, to: number[], bytes: Uint8Array): void {
    for (const t of to) this.queue.push({ from, to: t, bytes });
  }

  apply(replica: number, actions: Action[]): void {
    for (const a of actions) {
      this.actions.push({ replica, action: a });
      if (a.kind === 'send') this.post(replica, a.to, a.bytes);
    }
  }

  /** Delivers queued messages until none is left (or `limit` deliveries). */
  run(limit = 100_000): void {
    for (let k = 0; k < limit && this.queue.length > 0; k++) {
      const e = this.queue.shift()!;
      if (!this.filter(e)) continue;
      if (e.to < this.n)
        this.apply(e.to, this.replicas[e.to]!.handleMessage(e.from, e.bytes, this.now));
      else if (this.group) {
        for (const { core, out } of this.group.handleMessage(e.bytes, this.now)) {
          for (const s of out.sends) this.post(core.id, s.to, s.bytes);
          if (out.result) this.results.get(core.id)!.push(out.result);
        }
      } else {
        const c = this.clients.find((x) => x.id === e.to)!;
        const out = c.handleMessage(e.bytes);
        for (const s of out.sends) this.post(c.id, s.to, s.bytes);
        if (out.result) this.results.get(c.id)!.push(out.result);
      }
    }
  }

  tick(ms: number): void {
    this.now += ms;
    this.replicas.forEach((r, i) => this.apply(i, r.tick(this.now)));
    for (const c of this.clients)
      for (const s of c.tick(this.now).sends) this.post(c.id, s.to, s.bytes);
  }

  executed(replica: number): Extract<Action, { kind: 'executed' }>[] {
    return this.actions
      .filter((a) => a.replica === replica && a.action.kind === 'executed')
      .map((a) => a.action as Extract<Action, { kind: 'executed' }>);
  }
}

/**
 * Replica `r` chooses new keys for what each other replica sends it, `times` over, and they
 * learn each (NEW-KEY): frames MAC'd for `r` before carry its retired keys (enough times: as
 * after a restart, which forgets every key).
 */
export function refreshKeys(c: Cluster, r: number, times: number): void {
  for (let t = 0; t < times; t++)
    for (let p = 0; p < c.n; p++) {
      if (p === r) continue;
      const key = randomBytes(32);
      c.replicas[r]!.auth.setInKey(p, key);
      c.replicas[p]!.auth.setOutKey(r, key);
    }
}
