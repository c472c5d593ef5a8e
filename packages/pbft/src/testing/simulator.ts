/**
 * Deterministic simulator: a whole cluster and its clients in one process, one seeded PRNG for
 * delay, loss, duplication, reordering and partitions, a virtual clock, and invariant checks
 * after every step. A failing run reports its seed; `new Simulator({...same, seed}).run()`
 * replays it exactly.
 */
import type { FaultCounts } from '../faults';
import { ClientCore, ClientOutput } from '../client-core';
import { ClientGroup } from '../client-group';
import { FIRST_CLIENT_ID, VIEW_CHANGE_TIMEOUT_MS, maxFaulty } from '../constants';
import { MacAuthenticator } from '../crypto';
import { mulberry32 } from '../random';
import { testSessionKey } from './keys';
import type { ByzantineMode } from '../byzantine-modes';
import { type AttackOptions, ByzantineBehaviour, attackerReplicaOptions } from './byzantine';
import { FaultyClientBehaviour, type FaultyClientMode, faultySigner } from './faulty-client';
import { TestRequestSignatures } from './request-signatures';
import { Action, PersistedCert, Replica, ReplicaOptions, RestorePoint } from '../replica';
import { PageStore, type TransferableState } from '@bfs/page-store';
import type { Service } from '../service';

/** The reference state machine, run on the committed order. */
export interface ReferenceMachine {
  apply(op: Uint8Array, clientId: number, nondet: Uint8Array): Uint8Array;
  /** Marks the end of the batch at `seq` (for read-only histories). */
  endBatch(seq: number): void;
  /** Whether `result` is what read-only `op` gives in some state at or after batch `sinceSeq`. */
  readOnlyValid(op: Uint8Array, result: Uint8Array, sinceSeq: number): boolean;
}

export interface SimOptions {
  seed: number;
  f: number;
  clients: number;
  opsPerClient: number;
  /** `restored` is set when a replica restarts from its disk: the service must use that state. */
  makeService: (replica: number, restored?: TransferableState) => Service;
  reference: ReferenceMachine;
  makeOp: (
    rand: () => number,
    client: number,
    index: number,
  ) => { op: Uint8Array; readOnly: boolean };
  /** Probability that a message is lost, duplicated. */
  loss?: number;
  duplicate?: number;
  /** Message delay bounds in virtual ms (uniform: reorders messages). */
  minDelayMs?: number;
  maxDelayMs?: number;
  /** Isolate a random replica now and then. */
  partitions?: boolean;
  /** Replicas that never send anything (crashed from the start). */
  silent?: number[];
  /**
   * Replicas silenced (crashed: they neither send nor receive any more) at a time drawn
   * uniformly from [0, withinMs) by the run's PRNG, e.g. the primary at a random moment.
   */
  crashes?: { replica: number; withinMs: number }[];
  /**
   * Byzantine replicas, any of them the primary: a bare id is mode 'lie' (wrong results and
   * result digests in replies, wrong digests in prepares, commits and checkpoints). Their own
   * executions are not checked against the others. See `SimByzantineMode` for the modes.
   */
  byzantine?: (number | SimByzantine)[];
  /**
   * A network adversary: the chance that a frame sent is followed by an old frame (any sent
   * earlier, to its original receiver, unchanged so its MACs check). Not a faulty replica.
   */
  replay?: number;
  /**
   * Replicas that crash at a time drawn from [0, withinMs) and restart `downForMs` later from
   * their "disk": the page store as of their last stable checkpoint and the restore point the
   * 'stable' and 'view' actions described (crash recovery; they catch up by state transfer).
   */
  restarts?: { replica: number; withinMs: number; downForMs: number }[];
  /**
   * Whole-cluster crashes (a power cut): `count` times drawn from [0, withinMs), every replica
   * stops at once, with whatever was in flight lost, and all restart `downForMs` later from
   * their disks (the page store at the last stable checkpoint, the prepared certificates and
   * committed batches above it: the 'prepared' and 'committed' actions, durable as the host
   * makes them). Not counted among the f faulty replicas: nothing acknowledged may be lost.
   */
  clusterRestarts?: { count: number; withinMs: number; downForMs: number };
  replicaOptions?: Partial<ReplicaOptions>;
  /**
   * What the performance attacks (slow-primary, selective-primary, flood) know and target; the
   * tolerance defaults to the replicas' view-change timeout, the flood rate to
   * SIM_FLOOD_BYTES_PER_SEC.
   */
  attack?: AttackOptions;
  /**
   * Faulty clients, one per entry, besides the `clients` correct ones (ids after theirs): each
   * issues operations without end and its requests go through a `FaultyClientBehaviour`.
   * Nothing is checked of them and the run does not wait for them.
   */
  faultyClients?: FaultyClientMode[];
  /**
   * Clients sign their read-write requests and replicas check them (ReplicaOptions.
   * requestSignatures), with the deterministic `TestRequestSignatures`. Default true, as in
   * production.
   */
  requestSignatures?: boolean;
  /** Every frame to or from `replica` (a correct one, say) takes `minMs`-`maxMs` longer. */
  slowLink?: { replica: number; minMs: number; maxMs: number };
  /**
   * Client ids per client process (default 1): each process's ids ask for their replies in
   * REPLY-BATCHes addressed to its first id (`replyTo`), as the Client library does.
   */
  idsPerClientProcess?: number;
  /** Virtual time limit; not finishing by then is a liveness failure. */
  maxTimeMs?: number;
  tickMs?: number;
  /**
   * Virtual time the run goes on after every result was checked, with no new requests, so that
   * end-state checks (a restarted replica caught up) see the replicas settled. Default 0.
   */
  settleMs?: number;
}

/**
 * What a Byzantine replica of the simulator does: a `ByzantineMode` of its frames (see
 * byzantine.ts), or
 * - 'twins': two instances share its identity and keys, each hearing from and reaching its own
 *   part of the other nodes (redrawn every `TWIN_EPOCH_MS`; some nodes reach both);
 * - 'corrupt-state': it writes garbage into a random page of its service state
 *   `corruptions` times, at times drawn from [0, withinMs).
 */
export type SimByzantineMode = ByzantineMode | 'twins' | 'corrupt-state';

export interface SimByzantine {
  replica: number;
  mode: SimByzantineMode;
  /** corrupt-state: how many corruptions (default 3) and within which virtual time (default 2 s). */
  corruptions?: number;
  withinMs?: number;
}

/**
 * flood in the simulator: bytes per virtual second to each receiver. The simulator charges no
 * time for handling a frame, so a flood here tests what it does to the protocol (no view change,
 * nothing displaced), not CPU; the benchmark measures that. Small, for the tests' run time.
 */
export const SIM_FLOOD_BYTES_PER_SEC = 200_000;
/** flood in the simulator: bytes of one junk batch. */
export const SIM_FLOOD_BATCH_BYTES = 4096;

/** Twins: how long one split of the other nodes between the two instances lasts (virtual ms). */
export const TWIN_EPOCH_MS = 300;
/** Network replay adversary: frames it keeps to replay (a uniform sample of all sent). */
export const NET_REPLAY_HISTORY = 512;
/** corrupt-state: garbage bytes written per corruption. */
export const CORRUPT_BYTES = 8;
const DEFAULT_CORRUPTIONS = 3;
const DEFAULT_CORRUPT_WITHIN_MS = 2000;

export interface SimResult {
  ok: boolean;
  seed: number;
  error?: string;
  /** What failed: a safety check, or liveness (not every operation completed in time). */
  violation?: 'safety' | 'liveness';
  virtualTimeMs: number;
  steps: number;
  /** Operations of the correct clients completed, and the virtual time of the last one. */
  completed: number;
  lastCompletionMs: number;
  /** Per correct client: the longest any one of its operations took, issue to result (ms). */
  clientLongestOpMs: number[];
  committedSeq: number;
  /**
   * Frames the Byzantine replicas falsified, withheld, replayed or forged, frames the network
   * adversary replayed, and state corruptions.
   */
  lies: number;
  replicaStats: Record<string, number>[];
  /** Where each replica ended (undefined for silent ones). */
  replicaEnd: (
    | {
        view: number;
        stable: number;
        lastCommitted: number;
        stableDigest: string;
        recovering: boolean;
      }
    | undefined
  )[];
  clientStats: Record<string, number>[];
  /** Fault attribution: what each replica (empty for silent ones) and each client id saw from each replica. */
  replicaFaults: FaultCounts[][];
  clientFaults: FaultCounts[][];
  /** The checkpoint digests (hex) correct replicas made stable, by seq (checked to agree). */
  stableDigests: Record<number, string>;
  /**
   * The checkpoint digests (hex) correct replicas took and still keep at the end, by seq: a
   * checkpoint may be stable at one replica before the run ends and at none of the others.
   */
  checkpointDigests: Record<number, string>;
  /** Exceptions thrown inside Byzantine replicas' cores, each of which stopped that replica. */
  byzantineCrashes: string[];
}

type Event =
  | { at: number; order: number; kind: 'deliver'; to: number; from: number; bytes: Uint8Array }
  | { at: number; order: number; kind: 'tick' }
  | { at: number; order: number; kind: 'heal' }
  | { at: number; order: number; kind: 'crash'; replica: number }
  | { at: number; order: number; kind: 'restart'; replica: number }
  | { at: number; order: number; kind: 'corrupt'; replica: number };

/** Binary min-heap on (at, order): equal times stay in insertion order, so runs replay exactly. */
class EventQueue {
  private readonly h: Event[] = [];
  get size(): number {
    return this.h.length;
  }
  push(e: Event): void {
    const h = this.h;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (less(h[p]!, h[i]!)) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
  }
  pop(): Event | undefined {
    const h = this.h;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l]!, h[m]!)) m = l;
        if (r < h.length && less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i]!, h[m]!];
        i = m;
      }
    }
    return top;
  }
}

function less(a: Event, b: Event): boolean {
  return a.at < b.at || (a.at === b.at && a.order < b.order);
}

class InvariantError extends Error {}
class LivenessError extends InvariantError {}

/** Virtual time the run goes on after the last operation completed, for commits to land. */
const DRAIN_MS = 5000;

export class Simulator {
  private readonly rand: () => number;
  private readonly n: number;
  private readonly replicas: (Replica | undefined)[] = [];
  private readonly clients: ClientCore[] = [];
  /** Client processes: the group of each client id, and each core's index in `clients`. */
  private readonly groupOf = new Map<number, ClientGroup>();
  private readonly clientIndex = new Map<number, number>();
  private readonly queue = new EventQueue();
  private order = 0;
  private now = 0;
  private steps = 0;
  private completed = 0;
  private lastCompletionMs = 0;
  /** Per correct client: when its current operation started, and the longest one so far. */
  private readonly opStartedAt: number[] = [];
  private readonly longestOpMs: number[] = [];
  /** Faulty clients by id: their cores (each its own process) and behaviours. */
  private readonly faultyClients = new Map<
    number,
    { core: ClientCore; group: ClientGroup; behaviour: FaultyClientBehaviour; issued: number }
  >();
  private readonly issued: number[] = [];
  private isolated = -1;
  /** seq -> batch digest executed by the first correct replica to execute it. */
  private readonly executedAt = new Map<number, string>();
  private readonly batches = new Map<number, Extract<Action, { kind: 'executed' }>>();
  private referenceSeq = 0;
  private readonly referenceResults = new Map<string, Uint8Array>();
  private readonly referenceSkipped = new Set<string>();
  private readonly unchecked = new Map<string, Uint8Array>();
  private readonly roStart = new Map<number, { op: Uint8Array; sinceSeq: number }>();
  private readonly acceptedSeq = new Map<string, number>();
  private completedWritesSeq = 0;
  /** Replicas whose executions are not checked: Byzantine ones of every mode. */
  private readonly faulty = new Set<number>();
  private readonly specs: SimByzantine[] = [];
  private readonly behaviours = new Map<number, ByzantineBehaviour>();
  /** Twins: the second instance of a replica, and which instance(s) each node talks to. */
  private readonly twins = new Map<number, Replica>();
  private readonly twinWorld = new Map<number, 0 | 1 | 2>();
  private twinEpoch = -1;
  private readonly deadInstances = new Set<string>();
  /** Checkpoint digests (hex) that correct replicas made stable, by seq. */
  private readonly stableDigests = new Map<number, string>();
  private readonly byzantineCrashes: string[] = [];
  private readonly netHistory: { to: number; from: number; bytes: Uint8Array }[] = [];
  private netSeen = 0;
  private netReplays = 0;
  private corruptions = 0;
  private readonly crashed = new Set<number>();
  /** What each replica would find on its disk after a crash. */
  private readonly disks = new Map<
    number,
    {
      point: Omit<RestorePoint, 'view'>;
      pages: { index: number; lm: number; data: Uint8Array }[];
      size: number;
      pageSize: number;
      fanout: number;
    }
  >();
  private readonly views = new Map<number, number>();
  /** Each replica's log on disk: prepared certificates and committed batches above its checkpoint. */
  private readonly logs = new Map<
    number,
    {
      prepared: Map<number, PersistedCert>;
      committed: Map<number, { prePrepare: Uint8Array; large: Uint8Array[] }>;
    }
  >();
  private authFor: ((id: number) => MacAuthenticator) | undefined;
  /** Signs the clients' requests and checks them at the replicas; undefined: signatures off. */
  readonly signatures: TestRequestSignatures | undefined;
  private readonly replicaOptions: Partial<ReplicaOptions>;
  /** Per replica: batches executed and not yet committed (tentative work may be rolled back). */
  private readonly uncommitted = new Map<
    number,
    Map<number, Extract<Action, { kind: 'executed' }>>
  >();

  constructor(private readonly o: SimOptions) {
    this.signatures = o.requestSignatures === false ? undefined : new TestRequestSignatures();
    this.replicaOptions = {
      ...(this.signatures ? { requestSignatures: this.signatures } : {}),
      ...o.replicaOptions,
    };
    this.rand = mulberry32(o.seed);
    this.n = 3 * o.f + 1;
    if (maxFaulty(this.n) !== o.f) throw new RangeError('bad f');
    for (const b of o.byzantine ?? []) {
      const spec = typeof b === 'number' ? { replica: b, mode: 'lie' as const } : b;
      if (!Number.isInteger(spec.replica) || spec.replica < 0 || spec.replica >= this.n)
        throw new RangeError(`Byzantine replica ${spec.replica} outside 0..${this.n - 1}`);
      if (this.faulty.has(spec.replica)) throw new RangeError('a replica listed twice');
      this.faulty.add(spec.replica);
      this.specs.push(spec);
    }
    if (
      this.faulty.size +
        (o.silent?.length ?? 0) +
        (o.crashes?.length ?? 0) +
        (o.restarts?.length ?? 0) >
      o.f
    )
      throw new RangeError('more than f faulty replicas');
  }

  run(): SimResult {
    try {
      this.setup();
      this.loop();
      if (this.completed < this.o.clients * this.o.opsPerClient)
        throw new LivenessError(
          `liveness: ${this.completed}/${this.o.clients * this.o.opsPerClient} operations completed by ${this.now} ms`,
        );
      this.checkClientResults(true);
      return this.result(true);
    } catch (e) {
      if (!(e instanceof InvariantError)) throw e;
      return this.result(
        false,
        `seed ${this.o.seed}: ${e.message}`,
        e instanceof LivenessError ? 'liveness' : 'safety',
      );
    }
  }

  private result(ok: boolean, error?: string, violation?: SimResult['violation']): SimResult {
    return {
      ok,
      seed: this.o.seed,
      error,
      violation,
      virtualTimeMs: this.now,
      steps: this.steps,
      completed: this.completed,
      lastCompletionMs: this.lastCompletionMs,
      clientLongestOpMs: this.clients.map((_, i) => this.longestOpMs[i] ?? 0),
      committedSeq: this.referenceSeq,
      lies: [...this.behaviours.values()].reduce(
        (a, b) => a + b.lies,
        this.netReplays +
          this.corruptions +
          [...this.faultyClients.values()].reduce((a, c) => a + c.behaviour.spoiled, 0),
      ),
      replicaStats: this.replicas.map((r) => (r ? { ...r.stats } : {})),
      replicaEnd: this.replicas.map((r) =>
        r
          ? {
              view: r.view,
              stable: r.lowWater,
              lastCommitted: r.lastCommitted,
              stableDigest: Buffer.from(r.stableDigest ?? []).toString('hex'),
              recovering: r.recovering,
            }
          : undefined,
      ),
      // Per client id, then per client process (frames dropped before reaching an id).
      clientStats: [
        ...this.clients.map((c) => ({ ...c.stats })),
        ...[...new Set(this.groupOf.values())].map((g) => ({ ...g.stats })),
      ],
      replicaFaults: this.replicas.map((r) => (r ? r.faults.snapshot() : [])),
      clientFaults: this.clients.map((c) => c.faults.snapshot()),
      stableDigests: Object.fromEntries(this.stableDigests),
      checkpointDigests: this.correctCheckpointDigests(),
      byzantineCrashes: [...this.byzantineCrashes],
    };
  }

  private setup(): void {
    const seedKey = `sim-${this.o.seed}`;
    const clientIds = Array.from({ length: this.o.clients }, (_, i) => FIRST_CLIENT_ID + i);
    const faultyIds = (this.o.faultyClients ?? []).map(
      (_, i) => FIRST_CLIENT_ID + this.o.clients + i,
    );
    const all = [...Array.from({ length: this.n }, (_, i) => i), ...clientIds, ...faultyIds];
    const authFor = (id: number, peers: number[]): MacAuthenticator =>
      new MacAuthenticator(
        id,
        peers.filter((p) => p !== id).map((p) => [p, testSessionKey(seedKey, id, p)]),
      );
    this.authFor = (id) => authFor(id, all);
    const silent = new Set(this.o.silent ?? []);
    for (let i = 0; i < this.n; i++) {
      if (silent.has(i)) {
        this.replicas.push(undefined);
        continue;
      }
      const spec = this.specs.find((b) => b.replica === i);
      const own = spec && spec.mode !== 'twins' && spec.mode !== 'corrupt-state';
      this.replicas.push(
        new Replica(
          {
            n: this.n,
            id: i,
            ...this.replicaOptions,
            // An attacker's core runs as the attack wants it (e.g. one request per batch).
            ...(own ? attackerReplicaOptions(spec.mode as ByzantineMode) : {}),
          },
          this.o.makeService(i),
          authFor(i, all),
        ),
      );
    }
    this.setupByzantine();
    const replicaIds = Array.from({ length: this.n }, (_, i) => i);
    (this.o.faultyClients ?? []).forEach((mode, i) => {
      const id = faultyIds[i]!;
      const core = new ClientCore(
        { n: this.n, id, initialTimestamp: 0, signer: faultySigner(mode, this.signatures) },
        authFor(id, replicaIds),
      );
      const behaviour = new FaultyClientBehaviour(mode, this.n, this.toleranceMs);
      this.faultyClients.set(id, {
        core,
        group: new ClientGroup(this.n, [core]),
        behaviour,
        issued: 0,
      });
    });
    const perProcess = Math.max(1, this.o.idsPerClientProcess ?? 1);
    clientIds.forEach((id, i) => {
      const first = clientIds[i - (i % perProcess)]!;
      this.clients.push(
        new ClientCore(
          { n: this.n, id, initialTimestamp: 0, replyTo: first, signer: this.signatures },
          authFor(id, replicaIds),
        ),
      );
      this.clientIndex.set(id, i);
    });
    for (let i = 0; i < this.clients.length; i += perProcess) {
      const group = new ClientGroup(this.n, this.clients.slice(i, i + perProcess));
      for (const c of group.cores) this.groupOf.set(c.id, group);
    }
    clientIds.forEach((_, i) => {
      this.issued.push(0);
      this.startNext(i);
    });
    for (const id of this.faultyClients.keys()) this.startFaulty(id);
    for (const c of this.o.crashes ?? [])
      this.queue.push({
        at: this.rand() * c.withinMs,
        order: this.order++,
        kind: 'crash',
        replica: c.replica,
      });
    for (const r of this.o.restarts ?? []) {
      const at = this.rand() * r.withinMs;
      this.queue.push({ at, order: this.order++, kind: 'crash', replica: r.replica });
      this.queue.push({
        at: at + r.downForMs,
        order: this.order++,
        kind: 'restart',
        replica: r.replica,
      });
    }
    const cr = this.o.clusterRestarts;
    for (let k = 0; k < (cr?.count ?? 0); k++) {
      const at = this.rand() * cr!.withinMs;
      for (let i = 0; i < this.n; i++) {
        this.queue.push({ at, order: this.order++, kind: 'crash', replica: i });
        this.queue.push({
          at: at + cr!.downForMs,
          order: this.order++,
          kind: 'restart',
          replica: i,
        });
      }
    }
    this.queue.push({ at: 0, order: this.order++, kind: 'tick' });
  }

  private logOf(i: number): NonNullable<ReturnType<Simulator['logs']['get']>> {
    let l = this.logs.get(i);
    if (!l) this.logs.set(i, (l = { prepared: new Map(), committed: new Map() }));
    return l;
  }

  /** Brings a crashed replica back from its disk (or from nothing if it never persisted). */
  private restart(i: number): void {
    // Up already, or down for good (`crashes`, `silent`): a power cut does not revive it.
    if (!this.crashed.has(i) || this.o.crashes?.some((c) => c.replica === i)) return;
    if (this.o.silent?.includes(i)) return;
    const disk = this.disks.get(i);
    const log = this.logOf(i);
    const opts = {
      n: this.n,
      id: i,
      ...this.replicaOptions,
      prepared: [...log.prepared.values()],
      logIntact: true,
    };
    let replica: Replica;
    if (disk) {
      const state = PageStore.restore(
        { size: disk.size, pageSize: disk.pageSize, fanout: disk.fanout },
        disk.point.seq,
        disk.pages,
      );
      replica = new Replica(
        { ...opts, restore: { ...disk.point, view: this.views.get(i) ?? 0 } },
        this.o.makeService(i, state),
        this.authFor!(i),
      );
    } else {
      // It ran before without persisting a checkpoint: it may have voted in its views so far.
      replica = new Replica(
        { ...opts, rejoinAfterView: this.views.get(i) ?? 0 },
        this.o.makeService(i),
        this.authFor!(i),
      );
    }
    // Tentative work of the old incarnation died with it.
    this.uncommitted.delete(i);
    this.replicas[i] = replica;
    this.crashed.delete(i);
    const from = disk?.point.seq ?? 0;
    const replay: { prePrepare: Uint8Array; large: Uint8Array[] }[] = [];
    for (let s = from + 1; log.committed.has(s); s++) replay.push(log.committed.get(s)!);
    if (replay.length > 0) this.apply(i, replica.replayCommitted(replay, this.now));
  }

  /** The disk of a replica: what it persisted at its latest stable checkpoint. */
  private persist(i: number, a: Extract<Action, { kind: 'stable' }>): void {
    const r = this.replicas[i]!;
    const st = r.service.state;
    // The simulated disk keeps a PageStore's pages and restores them with PageStore.restore.
    // A later checkpoint of the same step may have become stable already and discarded this one.
    if (!(st instanceof PageStore) || st.digestAt(a.seq) === undefined) return;
    this.disks.set(i, {
      point: {
        seq: a.seq,
        replyTable: a.replyTable,
        results: a.results,
        proof: a.proof,
        initialDigest: r.initialDigest,
      },
      pages: st.populatedPagesAt(a.seq).map((p) => {
        const pg = st.pageAt(a.seq, p);
        return { index: pg.index, lm: pg.lm, data: new Uint8Array(pg.data) };
      }),
      size: st.size,
      pageSize: st.pageSize,
      fanout: st.fanout,
    });
    // As the host does once the checkpoint is on disk: the log keeps only what lies above it.
    const log = this.logOf(i);
    for (const m of [log.prepared, log.committed])
      for (const seq of m.keys()) if (seq <= a.seq) m.delete(seq);
  }

  private loop(): void {
    const maxTime = this.o.maxTimeMs ?? 120_000;
    const total = this.o.clients * this.o.opsPerClient;
    // Once every operation completed, run on a little so tentatively accepted results commit;
    // then settleMs more with nothing new to do.
    let drainUntil = Infinity;
    let settleUntil = Infinity;
    for (;;) {
      const busy = this.completed < total || (this.unchecked.size > 0 && this.now < drainUntil);
      if (!busy && settleUntil === Infinity) settleUntil = this.now + (this.o.settleMs ?? 0);
      if (!busy && this.now >= settleUntil) break;
      if (this.completed >= total && drainUntil === Infinity) drainUntil = this.now + DRAIN_MS;
      const e = this.queue.pop();
      if (!e) break;
      if (e.at > maxTime) break;
      this.now = e.at;
      this.steps++;
      if (e.kind === 'tick') this.onTick();
      else if (e.kind === 'heal') this.isolated = -1;
      else if (e.kind === 'crash') this.crashed.add(e.replica);
      else if (e.kind === 'restart') this.restart(e.replica);
      else if (e.kind === 'corrupt') this.corrupt(e.replica);
      else this.deliver(e.to, e.from, e.bytes);
      this.checkClientResults(false);
    }
  }

  private onTick(): void {
    for (const r of this.replicas)
      if (r && !this.crashed.has(r.id) && !this.twins.has(r.id))
        this.apply(
          r.id,
          this.guarded(r.id, 0, () => r.tick(this.now)),
        );
    for (const [id, t] of this.twins) {
      const a = this.replicas[id];
      if (a && !this.crashed.has(id))
        this.apply(
          id,
          this.guarded(id, 0, () => a.tick(this.now)),
        );
      this.apply(
        id,
        this.guarded(id, 1, () => t.tick(this.now)),
        1,
      );
    }
    this.clients.forEach((c) => {
      for (const s of c.tick(this.now).sends) this.sendAll(c.id, s.to, s.bytes);
    });
    for (const [id, fc] of this.faultyClients) {
      this.sendFaulty(id, fc.core.tick(this.now).sends);
      for (const s of fc.behaviour.due()) this.sendAll(id, s.to, s.bytes);
    }
    for (const [id, b] of this.behaviours)
      if (b.acts && !this.crashed.has(id))
        for (const s of b.due(this.now)) this.sendAll(id, s.to, s.bytes);
    if (this.o.partitions && this.isolated < 0 && this.rand() < 0.02) {
      this.isolated = Math.floor(this.rand() * this.n);
      this.queue.push({ at: this.now + 50 + this.rand() * 500, order: this.order++, kind: 'heal' });
    }
    this.queue.push({ at: this.now + (this.o.tickMs ?? 10), order: this.order++, kind: 'tick' });
  }

  private deliver(to: number, from: number, bytes: Uint8Array): void {
    if (to < this.n) {
      const r = this.replicas[to];
      const twin = this.twins.get(to);
      if (twin) {
        // Each instance hears from its own part of the nodes.
        const w = this.worldOf(from);
        if (w !== 1 && r && !this.crashed.has(to))
          this.apply(
            to,
            this.guarded(to, 0, () => r.handleMessage(from, bytes, this.now)),
          );
        if (w !== 0)
          this.apply(
            to,
            this.guarded(to, 1, () => twin.handleMessage(from, bytes, this.now)),
            1,
          );
        return;
      }
      if (this.behaviours.get(to)?.observe(bytes, this.now) === false) return;
      if (r && !this.crashed.has(to))
        this.apply(
          to,
          this.guarded(to, 0, () => r.handleMessage(from, bytes, this.now)),
        );
      return;
    }
    const fc = this.faultyClients.get(to);
    if (fc) {
      fc.behaviour.observe(bytes, this.now);
      for (const { out } of fc.group.handleMessage(bytes, this.now, from)) {
        this.sendFaulty(to, out.sends);
        if (out.result) this.startFaulty(to);
      }
      return;
    }
    for (const { core, out } of this.groupOf.get(to)!.handleMessage(bytes, this.now, from)) {
      for (const s of out.sends) this.sendAll(core.id, s.to, s.bytes);
      if (out.result) this.onClientResult(this.clientIndex.get(core.id)!, out);
    }
  }

  private onClientResult(idx: number, out: ClientOutput): void {
    const c = this.clients[idx]!;
    if (out.readOnly) {
      const ro = this.roStart.get(c.id)!;
      if (!this.o.reference.readOnlyValid(ro.op, out.result!, ro.sinceSeq))
        throw new InvariantError(
          `client ${c.id} ts ${out.timestamp}: read-only result matches no state since seq ${ro.sinceSeq}`,
        );
    } else {
      this.unchecked.set(`${c.id}:${out.timestamp}`, out.result!);
      this.checkClientResults(false);
    }
    this.completed++;
    this.lastCompletionMs = this.now;
    const took = this.now - (this.opStartedAt[idx] ?? 0);
    this.longestOpMs[idx] = Math.max(this.longestOpMs[idx] ?? 0, took);
    this.startNext(idx);
  }

  /** A faulty client's next operation (they go on without end; their results are not checked). */
  private startFaulty(id: number): void {
    const fc = this.faultyClients.get(id)!;
    const { op } = this.o.makeOp(this.rand, this.o.clients, fc.issued++);
    this.sendFaulty(id, fc.core.start(op, false, this.now).sends);
  }

  private sendFaulty(id: number, sends: ClientOutput['sends']): void {
    const fc = this.faultyClients.get(id)!;
    for (const s of sends)
      for (const t of s.to) this.sendAll(id, [t], fc.behaviour.send(s.bytes, this.now));
  }

  /** What the attackers take as the backups' view-change timeout. */
  private get toleranceMs(): number {
    return this.o.replicaOptions?.viewChangeTimeoutMs ?? VIEW_CHANGE_TIMEOUT_MS;
  }

  private startNext(idx: number): void {
    const c = this.clients[idx]!;
    const i = this.issued[idx]!;
    if (i >= this.o.opsPerClient) return;
    this.issued[idx] = i + 1;
    this.opStartedAt[idx] = this.now;
    const { op, readOnly } = this.o.makeOp(this.rand, idx, i);
    // Linearizability bound: a read must reflect every write completed before it started.
    if (readOnly) this.roStart.set(c.id, { op, sinceSeq: this.completedWritesSeq });
    const out = c.start(op, readOnly, this.now);
    for (const s of out.sends) this.sendAll(c.id, s.to, s.bytes);
  }

  private sendAll(from: number, to: number[], bytes: Uint8Array): void {
    for (const t of to) {
      if (this.o.replay) this.networkReplay(from, t, bytes);
      if (this.isolated >= 0 && (t === this.isolated || from === this.isolated)) continue;
      if (this.rand() < (this.o.loss ?? 0)) continue;
      const copies = this.rand() < (this.o.duplicate ?? 0) ? 2 : 1;
      const slow = this.o.slowLink;
      const extra =
        slow && (t === slow.replica || from === slow.replica)
          ? slow.minMs + this.rand() * (slow.maxMs - slow.minMs)
          : 0;
      for (let k = 0; k < copies; k++) {
        const lo = this.o.minDelayMs ?? 1;
        const hi = this.o.maxDelayMs ?? 5;
        const at = this.now + extra + lo + this.rand() * (hi - lo);
        this.queue.push({ at, order: this.order++, kind: 'deliver', to: t, from, bytes });
      }
    }
  }

  /** `instance` 1 is the second of twins: only its sends matter. */
  private apply(replica: number, actions: Action[], instance: 0 | 1 = 0): void {
    for (const a of actions) {
      if (instance === 1) {
        if (a.kind === 'send') this.sendFrom(replica, a.to, a.bytes, 1);
        continue;
      }
      if (a.kind === 'stable') this.persist(replica, a);
      if (a.kind === 'view') this.views.set(replica, a.view);
      if (a.kind === 'prepared') {
        const prepared = this.logOf(replica).prepared;
        const had = prepared.get(a.seq);
        if (!had || had.view <= a.view) prepared.set(a.seq, a);
        continue;
      }
      if (a.kind === 'committed')
        this.logOf(replica).committed.set(a.seq, { prePrepare: a.prePrepare, large: a.large });
      if (a.kind === 'executed' && !this.faulty.has(replica)) {
        // Agreement is checked on commit: tentative execution may differ until a view change
        // rolls it back.
        let m = this.uncommitted.get(replica);
        if (!m) this.uncommitted.set(replica, (m = new Map()));
        m.set(a.seq, a);
        continue;
      }
      if (a.kind === 'send') {
        this.sendFrom(replica, a.to, a.bytes, 0);
      } else if (this.faulty.has(replica)) {
        continue;
      } else if (a.kind === 'committed') {
        const m = this.uncommitted.get(replica);
        const ex = m?.get(a.seq);
        if (!ex || Buffer.compare(Buffer.from(ex.digest), Buffer.from(a.digest)) !== 0)
          throw new InvariantError(
            `replica ${replica} committed seq ${a.seq} without executing it`,
          );
        m!.delete(a.seq);
        this.checkCommitted(replica, ex);
      } else if (a.kind === 'stable') {
        this.checkStable(replica, a.seq, a.digest);
      }
    }
  }

  private correctCheckpointDigests(): Record<number, string> {
    const out: Record<number, string> = {};
    const faulty = new Set(this.specs.map((s) => s.replica));
    this.replicas.forEach((r, i) => {
      if (!r || faulty.has(i)) return;
      for (const [seq, d] of r.checkpointDigests) out[seq] ??= Buffer.from(d).toString('hex');
    });
    return out;
  }

  /** No two correct replicas make different states stable at a checkpoint. */
  private checkStable(replica: number, seq: number, digest: Uint8Array): void {
    const hex = Buffer.from(digest).toString('hex');
    const seen = this.stableDigests.get(seq);
    if (seen !== undefined && seen !== hex)
      throw new InvariantError(`replica ${replica} made another state stable at seq ${seq}`);
    this.stableDigests.set(seq, hex);
  }

  /** No two correct replicas commit different batches (or skip different requests) at a seq. */
  private checkCommitted(replica: number, a: Extract<Action, { kind: 'executed' }>): void {
    const hex = Buffer.from(a.digest).toString('hex');
    const seen = this.executedAt.get(a.seq);
    if (seen !== undefined && seen !== hex)
      throw new InvariantError(`replica ${replica} committed a different batch at seq ${a.seq}`);
    if (seen === undefined) {
      this.executedAt.set(a.seq, hex);
      this.batches.set(a.seq, a);
      this.advanceReference();
    } else {
      const first = this.batches.get(a.seq);
      if (first) this.checkSameSkips(replica, first, a);
    }
  }

  // ---- Byzantine replicas and the network adversary --------------------------------------------

  /** Behaviours, twins' second instances and state corruptions of the Byzantine replicas. */
  private setupByzantine(): void {
    for (const s of this.specs) {
      const r = this.replicas[s.replica];
      if (!r) continue;
      if (s.mode === 'twins') {
        // Same identity and keys; its own copy of the service.
        this.twins.set(
          s.replica,
          new Replica(
            { n: this.n, id: s.replica, ...this.replicaOptions },
            this.o.makeService(s.replica),
            r.auth,
          ),
        );
      } else if (s.mode === 'corrupt-state') {
        for (let k = 0; k < (s.corruptions ?? DEFAULT_CORRUPTIONS); k++)
          this.queue.push({
            at: this.rand() * (s.withinMs ?? DEFAULT_CORRUPT_WITHIN_MS),
            order: this.order++,
            kind: 'corrupt',
            replica: s.replica,
          });
      } else {
        this.behaviours.set(
          s.replica,
          new ByzantineBehaviour(s.mode, r.auth, this.n, this.rand, {
            toleranceMs: this.toleranceMs,
            floodBytesPerSec: SIM_FLOOD_BYTES_PER_SEC,
            floodBatchBytes: SIM_FLOOD_BATCH_BYTES,
            ...this.o.attack,
          }),
        );
      }
    }
  }

  /** Sends a replica's frame, through its Byzantine behaviour or its twin's part of the network. */
  private sendFrom(replica: number, to: number[], bytes: Uint8Array, instance: 0 | 1): void {
    const b = this.behaviours.get(replica);
    if (b) {
      for (const s of b.send(to, bytes, this.now)) this.sendAll(replica, s.to, s.bytes);
      return;
    }
    if (this.twins.has(replica)) {
      this.sendAll(
        replica,
        to.filter((t) => this.worldOf(t) !== 1 - instance),
        bytes,
      );
      return;
    }
    this.sendAll(replica, to, bytes);
  }

  /**
   * Runs one step of a replica (instance 1: the second of twins). An exception in a correct
   * replica's core ends the run; in a Byzantine one's it stops that instance for good and is
   * recorded in the result (`byzantineCrashes`), since a faulty replica may fail any way.
   */
  private guarded(id: number, instance: 0 | 1, step: () => Action[]): Action[] {
    if (!this.faulty.has(id)) return step();
    if (this.deadInstances.has(`${id}:${instance}`)) return [];
    try {
      return step();
    } catch (e) {
      this.deadInstances.add(`${id}:${instance}`);
      this.byzantineCrashes.push(`replica ${id}.${instance} at ${this.now} ms: ${String(e)}`);
      return [];
    }
  }

  /** Twins: which instance a node talks to (0, 1 or 2 for both), redrawn every epoch. */
  private worldOf(node: number): 0 | 1 | 2 {
    const epoch = Math.floor(this.now / TWIN_EPOCH_MS);
    if (epoch !== this.twinEpoch) {
      this.twinEpoch = epoch;
      const nodes = [
        ...Array.from({ length: this.n }, (_, i) => i),
        ...this.clients.map((c) => c.id),
      ];
      for (const id of nodes) this.twinWorld.set(id, Math.floor(this.rand() * 3) as 0 | 1 | 2);
    }
    return this.twinWorld.get(node) ?? 2;
  }

  /** Writes garbage into a random page of a replica's service state, between two steps. */
  private corrupt(replica: number): void {
    const r = this.replicas[replica];
    if (!r || this.crashed.has(replica)) return;
    const st = r.service.state;
    const page = Math.floor(this.rand() * Math.floor(st.size / st.pageSize));
    const at = page * st.pageSize + Math.floor(this.rand() * (st.pageSize - CORRUPT_BYTES));
    const junk = Buffer.alloc(CORRUPT_BYTES);
    for (let i = 0; i < CORRUPT_BYTES; i++) junk[i] = Math.floor(this.rand() * 256);
    st.write(at, junk);
    this.corruptions++;
  }

  /** Network adversary: remembers a uniform sample of frames and now and then re-delivers one. */
  private networkReplay(from: number, to: number, bytes: Uint8Array): void {
    if (this.netHistory.length > 0 && this.rand() < this.o.replay!) {
      const old = this.netHistory[Math.floor(this.rand() * this.netHistory.length)]!;
      const lo = this.o.minDelayMs ?? 1;
      const at = this.now + lo + this.rand() * ((this.o.maxDelayMs ?? 5) - lo);
      this.queue.push({ at, order: this.order++, kind: 'deliver', ...old });
      this.netReplays++;
    }
    this.netSeen++;
    if (this.netHistory.length < NET_REPLAY_HISTORY) this.netHistory.push({ to, from, bytes });
    else {
      const i = Math.floor(this.rand() * this.netSeen);
      if (i < NET_REPLAY_HISTORY) this.netHistory[i] = { to, from, bytes };
    }
  }

  private checkSameSkips(
    replica: number,
    a: Extract<Action, { kind: 'executed' }>,
    b: Extract<Action, { kind: 'executed' }>,
  ): void {
    const sa = a.requests.map((r) => r.skipped).join();
    const sb = b.requests.map((r) => r.skipped).join();
    if (sa !== sb)
      throw new InvariantError(`replica ${replica} skipped other requests at seq ${a.seq}`);
  }

  /** Runs the reference machine over every batch known in sequence order. */
  private advanceReference(): void {
    for (;;) {
      const b = this.batches.get(this.referenceSeq + 1);
      if (!b) return;
      this.referenceSeq++;
      for (const r of b.requests) {
        const key = `${r.clientId}:${r.timestamp}`;
        if (r.skipped) {
          this.referenceSkipped.add(key);
          continue;
        }
        if (this.referenceResults.has(key))
          throw new InvariantError(`request ${key} executed twice (seq ${this.referenceSeq})`);
        this.referenceResults.set(key, this.o.reference.apply(r.op, r.clientId, b.nondet));
        this.acceptedSeq.set(key, this.referenceSeq);
      }
      this.o.reference.endBatch(this.referenceSeq);
      // Keep memory bounded on long runs: only the digests are needed for agreement checks.
      this.batches.delete(this.referenceSeq - 1);
    }
  }

  private checkClientResults(final: boolean): void {
    for (const [key, result] of this.unchecked) {
      const ref = this.referenceResults.get(key);
      if (ref === undefined) {
        if (final) throw new InvariantError(`client result for ${key} never committed`);
        continue;
      }
      if (Buffer.compare(Buffer.from(ref), Buffer.from(result)) !== 0)
        throw new InvariantError(`client result for ${key} differs from the reference machine`);
      this.completedWritesSeq = Math.max(this.completedWritesSeq, this.acceptedSeq.get(key)!);
      this.unchecked.delete(key);
    }
  }
}
