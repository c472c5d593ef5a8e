/**
 * The PBFT replica core for the normal case (OSDI 1999 section 4; TOCS 2002 sections 2-5):
 * a pure, synchronous state machine. Messages and clock ticks go in; frames to send and events
 * (executions, stable checkpoints) come out. No sockets, timers, promises or Date inside.
 */
import {
  PageStore,
  StateTransfer,
  decodeTransferMessage,
  encodeTransferMessage,
  serveFetch,
} from '@bfs/page-store';
import {
  CHECKPOINT_INTERVAL,
  FETCH_TIMEOUT_MS,
  MAX_FETCH_TIMEOUT_MS,
  MAX_CHECKPOINT_VOTES_PER_SENDER,
  MAX_FETCH_PIECES,
  MAX_FRAME_BYTES,
  MAX_FETCH_REPLY_BYTES,
  STATE_TRANSFER_DELAY_MS,
  LARGE_REQUEST_BYTES,
  LOG_WINDOW,
  MAX_BATCH_BYTES,
  MAX_BATCH_REQUESTS,
  MAX_OUTSTANDING_PREPREPARES,
  MAX_PENDING_READ_ONLY,
  MAX_PENDING_REQUESTS,
  MAX_RESEND_SLOTS,
  MAX_REPLY_BATCH_BYTES,
  MAX_RESULT_BYTES,
  MAX_RESTORED_RESULT_BYTES,
  IDLE_CHECKPOINT_MS,
  MAX_STORED_REQUESTS,
  MAX_VIEW_CHANGE_FRAME_BYTES,
  PROOF_REFRESH_INTERVAL_MS,
  RESEND_INTERVAL_MS,
  STATUS_INTERVAL_MS,
  VIEW_CHANGE_TIMEOUT_MS,
  maxFaulty,
  primaryOf,
  quorum,
} from './constants';
import {
  BatchEntry,
  BatchFetchMsg,
  BatchedReply,
  Body,
  CheckpointMsg,
  DecodeError,
  FETCH_HAS_META,
  FETCH_MISSING,
  FetchMsg,
  FetchReplyMsg,
  ForwardedNewViewMsg,
  Frame,
  MsgType,
  NewViewMsg,
  PrePrepareMsg,
  PreparedCert,
  PrepareMsg,
  REPLY_DIGEST_ONLY,
  REPLY_READ_ONLY,
  REPLY_BATCH_HEAD_BYTES,
  REPLY_TENTATIVE,
  ReplyBatchMsg,
  ReplyMsg,
  RequestMsg,
  StatusMsg,
  ViewChangeMsg,
  batchedReplySize,
  decodeFrame,
  forwardedNewViewBytes,
  maxNewViewBytes,
  maxViewChangeBytes,
  reframe,
  tryDecodeFrame,
} from './codec';
import {
  MacAuthenticator,
  batchDigest,
  prePrepareAuthDigest,
  requestDigests,
  sha256,
} from './crypto';
import { FaultLedger } from './faults';
import type { Service } from './service';

export interface ReplicaOptions {
  n: number;
  id: number;
  checkpointInterval?: number;
  logWindow?: number;
  maxBatchRequests?: number;
  maxBatchBytes?: number;
  maxOutstandingPrePrepares?: number;
  largeRequestBytes?: number;
  /** Execute once prepared, before commit (tentative execution). Default true. */
  tentative?: boolean;
  /** See IDLE_CHECKPOINT_MS (the default); 0 turns the null batches off. */
  idleCheckpointMs?: number;
  /**
   * Hold back a COMMIT while its batch is the only one in flight, to leave with this replica's
   * next message to the replicas (the next PRE-PREPARE or PREPARE) in one socket write, or at
   * the next tick. Default true. See docs/pbft.md, "Held commits".
   */
  holdCommits?: boolean;
  statusIntervalMs?: number;
  resendIntervalMs?: number;
  /** Committed slots kept below the stable checkpoint for lagging peers (default L). */
  retainBelowStable?: number;
  /** Initial view-change timeout (doubles after each view change that fails). */
  viewChangeTimeoutMs?: number;
  /** A log-based catch-up that has not reached a known stable checkpoint after this long fetches its state. */
  stateTransferDelayMs?: number;
  fetchTimeoutMs?: number;
  /**
   * Restart from a persisted stable checkpoint (crash recovery): `service.state` must hold
   * checkpoint `seq` as its latest kept one. See `Replica.recovering` for what the replica
   * refrains from until it has caught up.
   */
  restore?: RestorePoint;
  /**
   * Restart without a persisted checkpoint (the replica ran before, in views up to this one, but
   * never persisted a stable checkpoint): start from the initial state, recovering.
   */
  rejoinAfterView?: number;
  /**
   * After a restart (with `restore` or `rejoinAfterView`): the prepared certificates this
   * replica persisted ('prepared' actions) above its restored checkpoint, in any order.
   */
  prepared?: PersistedCert[];
  /**
   * The host vouches that `prepared` holds every certificate this replica persisted above its
   * restored checkpoint (its log is intact and was kept from before any of them): it does not
   * count as `recovering`, since its VIEW-CHANGE can vouch for everything it acted on.
   */
  logIntact?: boolean;
}

/** A prepared certificate as persisted ('prepared' action), with its batch's large requests. */
export interface PersistedCert {
  seq: number;
  view: number;
  prePrepare: Uint8Array;
  prepares: Uint8Array[];
  large: Uint8Array[];
}

/** What a replica persists to restart from its own disk (with the page store at `seq`). */
export interface RestorePoint {
  seq: number;
  /** The last-reply table as of `seq` (`Action` 'stable' carries it). */
  replyTable: Uint8Array;
  /** The 2f + 1 CHECKPOINT frames that made `seq` stable (may be empty: liveness only). */
  proof: Uint8Array[];
  /** The last view the replica was in (the 'view' action); it sends nothing in views up to it. */
  view: number;
  /** Digest of checkpoint 0 (`Replica.initialDigest`), which VIEW-CHANGEs from 0 are checked against. */
  initialDigest: Uint8Array;
  /**
   * The last results themselves, of the table's entries that had them and are at most
   * MAX_RESTORED_RESULT_BYTES: after a restart of every replica, a client whose reply was lost
   * still gets it in full on retransmission (the table alone carries digests).
   */
  results?: { clientId: number; result: Uint8Array }[];
}

/** What the core asks its host to do. */
export type Action =
  | { kind: 'send'; to: number[]; bytes: Uint8Array }
  /** A batch executed at `seq` (tentative until `committed` for the same seq follows). */
  | {
      kind: 'executed';
      seq: number;
      digest: Uint8Array;
      nondet: Uint8Array;
      requests: { clientId: number; timestamp: number; op: Uint8Array; skipped: boolean }[];
      tentative: boolean;
    }
  /**
   * The batch at `seq` committed. `prePrepare` and `large` (its separately transmitted request
   * frames) are what `replayCommitted` needs to re-run it after a restart.
   */
  | {
      kind: 'committed';
      seq: number;
      digest: Uint8Array;
      prePrepare: Uint8Array;
      large: Uint8Array[];
    }
  /**
   * A checkpoint became stable: persist the page store at `seq` with `replyTable`; `proof`
   * holds 2f+1 frames.
   */
  | {
      kind: 'stable';
      seq: number;
      digest: Uint8Array;
      proof: Uint8Array[];
      replyTable: Uint8Array;
      /** See RestorePoint.results. */
      results: { clientId: number; result: Uint8Array }[];
    }
  /**
   * This replica prepared the batch at `seq` in `view` (OSDI 1999 section 4.3: the pre-prepare,
   * whole, and 2f matching prepares), the certificate a VIEW-CHANGE of ours would carry for it.
   * The durable point of an operation: the host writes it to stable storage before it performs
   * any later action, of this list or of later ones (our COMMIT and our tentative replies come
   * after it), and hands it back as `ReplicaOptions.prepared` after a restart. 2f + 1 tentative
   * replies (or f + 1 committed ones) thus prove that 2f + 1 replicas hold it on disk.
   */
  | {
      kind: 'prepared';
      seq: number;
      view: number;
      prePrepare: Uint8Array;
      prepares: Uint8Array[];
      large: Uint8Array[];
    }
  /** The replica moved to `view`: persist it before anything later in the same list is sent. */
  | { kind: 'view'; view: number }
  /** State transfer installed stable checkpoint `seq` (pages and bytes fetched for it). */
  | { kind: 'transferred'; seq: number; pages: number; bytes: number; ms: number };

/** Counters of everything dropped or noteworthy, by reason. */
export type ReplicaStats = Record<string, number>;

/** An authenticated client request with its digest. */
class ResolvedRequest {
  private hexDigest: string | undefined;
  constructor(
    readonly msg: RequestMsg,
    readonly frame: Uint8Array,
    readonly digest: Buffer,
  ) {}

  /**
   * The digest in hex, the request store's key: computed once, and only when asked (a backup
   * that gets its requests inside pre-prepares never needs it).
   */
  get hex(): string {
    return (this.hexDigest ??= this.digest.toString('hex'));
  }
}

function resolved(msg: RequestMsg, frame: Uint8Array, digest: Buffer): ResolvedRequest {
  return new ResolvedRequest(msg, frame, digest);
}

/** The separately transmitted request frames of a batch, in entry order. */
function largeFrames(pp: NonNullable<Slot['pp']>): Uint8Array[] {
  const large: Uint8Array[] = [];
  pp.msg.entries.forEach((e, i) => {
    if ('digest' in e) large.push(pp.requests[i]!.frame);
  });
  return large;
}

/** A slot's pre-prepare, with its batch digest in hex computed once. */
function prePrepared(
  msg: PrePrepareMsg,
  frame: Uint8Array,
  digest: Buffer,
  requestDigests: Buffer[],
  requests: (ResolvedRequest | undefined)[],
): NonNullable<Slot['pp']> {
  return { msg, frame, digest, hex: digest.toString('hex'), requestDigests, requests };
}

/** One sequence number's slice of the log: its pre-prepare and the certificates built on it. */
export interface Slot {
  seq: number;
  view: number;
  pp?: {
    msg: PrePrepareMsg;
    /** The primary's frame, kept so it can be re-sent to lagging replicas as is. */
    frame: Uint8Array;
    digest: Buffer;
    /** `digest` in hex, as prepares and commits record it. */
    hex: string;
    requestDigests: Buffer[];
    requests: (ResolvedRequest | undefined)[];
  };
  /** Prepares and commits by replica, as hex digests (view-change certificates use these). */
  prepares: Map<number, string>;
  commits: Map<number, string>;
  prepareFrames: Map<number, Uint8Array>;
  sentPrepare: boolean;
  sentCommit: boolean;
  prepared: boolean;
  committed: boolean;
  executed: boolean;
  lastProgress: number;
  /** A pre-prepare whose nondet value our checker refused, kept in case others vouch for it. */
  refused?: Slot['pp'];
  /**
   * A batch a NEW-VIEW re-proposed by digest that we hold no body for: the new primary's
   * stripped PRE-PREPARE, filled in when a body with this digest arrives (BATCH-FETCH).
   */
  header?: { frame: Uint8Array; digest: Buffer; sources: number[] };
}

/** A batch's request digests and batch digest, computed once per PRE-PREPARE received. */
interface BatchDigests {
  digests: Buffer[];
  digest: Buffer;
}

interface ClientRecord {
  lastTimestamp: number;
  /** Unknown after a state transfer (the table carries digests only): replies send the digest. */
  result: Uint8Array | undefined;
  resultDigest: Buffer;
  view: number;
  tentative: boolean;
}

const EMPTY = new Uint8Array(0);

/** A VIEW-CHANGE whose proofs checked out: the prepared certificates it holds, by sequence number. */
interface CheckedViewChange {
  sender: number;
  view: number;
  stable: number;
  stableDigest: Buffer;
  proof: Uint8Array[];
  /** seq -> view prepared in and batch digest. */
  certs: Map<number, { view: number; digest: Buffer }>;
  frame: Uint8Array;
}

/** A state transfer in progress towards stable checkpoint `seq` (proved by `proof`). */
interface Transfer {
  seq: number;
  digest: Buffer;
  proof: { sender: number; frame: Uint8Array }[];
  /** Replicas asked in turn: those that vouched for the checkpoint. */
  sources: number[];
  source: number;
  sentAt: number;
  /** Current wait for a reply: doubles on each timeout (a loaded server), back to the base on progress. */
  timeoutMs: number;
  startedAt: number;
  /** From the meta reply: page-store root and reply table. */
  root?: Buffer;
  table?: Map<number, ClientRecord>;
  st?: StateTransfer;
  /** Fetch from nothing instead of from our stable checkpoint (it failed to verify). */
  full: boolean;
  bytes: number;
  rejected: number;
}

/** What a NEW-VIEW must re-propose: the checkpoint it starts from and one digest per sequence number. */
interface NewViewPlan {
  minS: number;
  stableDigest: Buffer;
  proof: Uint8Array[];
  /** `sources`: the replicas whose certificates name the digest, so hold the body. */
  slots: { seq: number; digest: Buffer; sources: number[] }[];
}

export class Replica {
  readonly n: number;
  readonly f: number;
  readonly id: number;
  readonly stats: ReplicaStats = {};
  /** What this replica observed from each replica, by sender (docs/operations.md, "Faults"). */
  readonly faults: FaultLedger;
  view = 0;
  /** Low water mark h: the last stable checkpoint. */
  lowWater = 0;
  lastExecuted = 0;
  lastCommitted = 0;
  private lastAssigned = 0;
  readonly log = new Map<number, Slot>();
  private readonly clients = new Map<number, ClientRecord>();
  /** Client tables as of each kept checkpoint (part of the checkpointed state). */
  private readonly clientSnapshots = new Map<number, Map<number, ClientRecord>>();
  private readonly checkpointVotes = new Map<
    number,
    Map<number, { hex: string; frame: Uint8Array }>
  >();
  private readonly ownCheckpoints = new Map<number, Buffer>();
  /** Proof of the stable checkpoint: 2f+1 matching CHECKPOINT frames. */
  stableProof: { sender: number; frame: Uint8Array }[] = [];
  /** Separately transmitted (large) requests not yet executed, by hex digest. */
  private readonly requestStore = new Map<string, ResolvedRequest>();
  private readonly pending: ResolvedRequest[] = [];
  private readonly pendingKeys = new Set<string>();
  private readonly forwarded = new Set<string>();
  /** Primary: requests assigned a sequence number and not yet executed (no double ordering). */
  private readonly orderedKeys = new Set<string>();
  private readonly pendingReadOnly: ResolvedRequest[] = [];
  /** Slots whose pre-prepare waits for a separately transmitted request. */
  private readonly waiting = new Set<number>();
  private lastStatusAt = -Infinity;
  /** False between sending a VIEW-CHANGE for `view` and accepting its NEW-VIEW. */
  active = true;
  /** Views changed to without success since the last active view (timeout doubles with each). */
  private failedViewChanges = 0;
  private viewChangeDeadline: number | undefined;
  private readonly viewChangeTimeoutMs: number;
  /** Backup: requests it knows about and waits to see executed (by client:timestamp). */
  private readonly awaited = new Map<string, ResolvedRequest>();
  /** The latest checked VIEW-CHANGE of each replica (only the highest view: bounded by n). */
  private readonly viewChanges = new Map<number, CheckedViewChange>();
  /**
   * Own prepared certificates above h, the highest view per sequence number; the pre-prepare
   * whole (VIEW-CHANGEs carry it stripped), so its body can serve a later re-proposal.
   */
  private readonly certs = new Map<number, { view: number; digest: Buffer; cert: PreparedCert }>();
  private lastBatchFetch = -Infinity;
  /** The NEW-VIEW each replica last forwarded us (its view and digest), while we are behind. */
  private readonly newViewVouches = new Map<number, { view: number; hex: string }>();
  /**
   * Set while a NEW-VIEW that f + 1 replicas vouch for, or our own VIEW-CHANGE, is checked: the
   * MACs of the frames it quotes are not.
   */
  private skipQuotedMacs = false;
  private batchFetchRound = 0;
  /**
   * Slots of this view re-proposed by digest whose bodies we lack. A new primary orders nothing
   * new until they are in: it cannot tell which queued requests they already hold.
   */
  private readonly bodiesMissing = new Set<number>();
  /** When we last answered each peer's BATCH-FETCH (one answer per re-send interval). */
  private readonly batchFetchAnsweredAt = new Map<number, number>();
  private ownViewChange: Uint8Array | undefined;
  /** The NEW-VIEW that started the current view, forwarded to peers still behind. */
  private newViewFrame: Uint8Array | undefined;
  private readonly newViewSentAt = new Map<number, number>();
  private lastViewChangeResend = -Infinity;
  /** Slots up to here may still commit in an earlier view (catch-up below the new view's start). */
  private catchUpTo = 0;
  /** Digest of checkpoint 0, the initial state: stable without proof. */
  readonly initialDigest: Buffer;
  /** A quorum-proved checkpoint above what we executed, and since when we know of it. */
  private behind:
    | { seq: number; digest: Buffer; proof: { sender: number; frame: Uint8Array }[]; since: number }
    | undefined;
  private transfer: Transfer | undefined;
  /** Views up to this one were (maybe) active before a restart: send nothing in them. */
  private readonly passiveThroughView: number;
  /**
   * Restarted from disk, this replica may have prepared things before the crash that its log no
   * longer holds; until the stable checkpoint passes everything it could have prepared (the
   * recovery horizon) it holds its VIEW-CHANGE back, so that it does not vouch for an incomplete
   * log while the others can change views without it. Only when no view change completes
   * without it for two timeouts (several replicas restarted at once) does it send it: it then
   * counts as the faulty replica until it has recovered.
   */
  recovering: boolean;
  /**
   * A checkpoint every replica voted for without 2f + 1 matching digests: replicas executed
   * different histories up to it (data of a version whose restarts were unsafe), so it can never
   * become stable. For operators; undefined while none was seen.
   */
  splitAt: number | undefined;
  private withheldViewChange: { frame: Uint8Array; msg: ViewChangeMsg; since: number } | undefined;
  private recoveryHorizon: number | undefined;
  private readonly recoveryReports = new Map<number, number>();
  /** When each peer last reported, in our view, execution beyond ours. */
  private readonly peersAheadAt = new Map<number, number>();
  /** What we last re-sent to each lagging peer: from which sequence number, and when. */
  private readonly resentTo = new Map<number, { from: number; at: number }>();
  /** The last execution point each peer reported in a STATUS of our view. */
  private readonly reportedExecuted = new Map<number, number>();
  private lastProofRefresh = -Infinity;
  private lastStuckScan = -Infinity;
  /** Sequence numbers of slots that became prepared and may not have executed (read-only rule). */
  private readonly preparedAhead = new Set<number>();
  private readonly stateTransferDelayMs: number;
  private readonly fetchTimeoutMs: number;
  private out: Action[] = [];
  private now = 0;

  private readonly K: number;
  private readonly L: number;
  /** The largest VIEW-CHANGE a correct replica sends (codec.ts); bigger ones are refused. */
  private readonly maxViewChangeBytes: number;
  /**
   * The largest frame one replica of this cluster sends another (a forwarded NEW-VIEW): what a
   * transport between replicas must carry.
   */
  readonly maxReplicaFrameBytes: number;
  private readonly maxBatchRequests: number;
  private readonly maxBatchBytes: number;
  private readonly maxOutstanding: number;
  private readonly largeRequestBytes: number;
  private readonly tentative: boolean;
  private readonly holdCommits: boolean;
  private readonly idleCheckpointMs: number;
  /** When this primary last ordered a request; null batches follow up to `fillTo`. */
  private lastBatchAt = 0;
  private fillTo = 0;
  /** Own COMMIT frames held back (see `holdCommits`), sent before the next send to a replica. */
  private heldCommits: Uint8Array[] = [];
  private readonly statusIntervalMs: number;
  private readonly resendIntervalMs: number;
  private readonly retainBelowStable: number;
  private readonly allReplicas: number[];
  private readonly otherReplicas: number[];

  constructor(
    opts: ReplicaOptions,
    readonly service: Service,
    readonly auth: MacAuthenticator,
  ) {
    this.n = opts.n;
    this.faults = new FaultLedger(opts.n);
    this.f = maxFaulty(opts.n);
    this.id = opts.id;
    if (!Number.isInteger(opts.id) || opts.id < 0 || opts.id >= opts.n)
      throw new RangeError(`replica id ${opts.id} outside 0..${opts.n - 1}`);
    if (auth.self !== opts.id) throw new RangeError('authenticator belongs to another node');
    this.K = opts.checkpointInterval ?? CHECKPOINT_INTERVAL;
    this.L = opts.logWindow ?? LOG_WINDOW;
    if (this.L < 2 * this.K) throw new RangeError('log window must hold two checkpoint intervals');
    this.maxViewChangeBytes = maxViewChangeBytes(this.n, this.L, 2 * this.f);
    const newView = maxNewViewBytes(this.n, this.L, quorum(this.n), this.maxViewChangeBytes);
    this.maxReplicaFrameBytes = Math.max(MAX_FRAME_BYTES, forwardedNewViewBytes(newView));
    if (this.maxReplicaFrameBytes > MAX_VIEW_CHANGE_FRAME_BYTES)
      throw new RangeError(
        `n = ${this.n} with a log window of ${this.L}: a NEW-VIEW may take ` +
          `${newView} bytes, above MAX_VIEW_CHANGE_FRAME_BYTES ` +
          `(${MAX_VIEW_CHANGE_FRAME_BYTES})`,
      );
    this.maxBatchRequests = Math.min(
      opts.maxBatchRequests ?? MAX_BATCH_REQUESTS,
      MAX_BATCH_REQUESTS,
    );
    this.maxBatchBytes = opts.maxBatchBytes ?? MAX_BATCH_BYTES;
    this.maxOutstanding = opts.maxOutstandingPrePrepares ?? MAX_OUTSTANDING_PREPREPARES;
    this.largeRequestBytes = opts.largeRequestBytes ?? LARGE_REQUEST_BYTES;
    this.tentative = opts.tentative ?? true;
    this.holdCommits = opts.holdCommits ?? true;
    this.idleCheckpointMs = opts.idleCheckpointMs ?? IDLE_CHECKPOINT_MS;
    this.statusIntervalMs = opts.statusIntervalMs ?? STATUS_INTERVAL_MS;
    this.resendIntervalMs = opts.resendIntervalMs ?? RESEND_INTERVAL_MS;
    this.retainBelowStable = opts.retainBelowStable ?? this.L;
    this.viewChangeTimeoutMs = opts.viewChangeTimeoutMs ?? VIEW_CHANGE_TIMEOUT_MS;
    this.allReplicas = Array.from({ length: this.n }, (_, i) => i);
    this.otherReplicas = this.allReplicas.filter((i) => i !== this.id);
    this.stateTransferDelayMs = opts.stateTransferDelayMs ?? STATE_TRANSFER_DELAY_MS;
    this.fetchTimeoutMs = opts.fetchTimeoutMs ?? FETCH_TIMEOUT_MS;
    const r = opts.restore;
    if (!r) {
      // Checkpoint 0 is the initial state, stable by definition.
      const info = service.state.checkpoint(0);
      const d = this.stateDigest(info.digest);
      this.initialDigest = d;
      this.ownCheckpoints.set(0, d);
      this.clientSnapshots.set(0, new Map());
      this.passiveThroughView = opts.rejoinAfterView ?? -1;
      this.view = Math.max(0, this.passiveThroughView);
      this.recovering = opts.rejoinAfterView !== undefined && !opts.logIntact;
      this.restorePrepared(opts.prepared ?? []);
      return;
    }
    const kept = service.state.checkpoints();
    const root = service.state.digestAt(r.seq);
    if (!root || kept[kept.length - 1] !== r.seq || r.seq % this.K !== 0)
      throw new RangeError(`restore point ${r.seq} is not the state's latest checkpoint`);
    const table = decodeReplyTable(r.replyTable, r.view);
    if (!table) throw new RangeError('malformed reply table in the restore point');
    for (const [id, rec] of table) this.clients.set(id, rec);
    for (const { clientId, result } of r.results ?? []) {
      const rec = this.clients.get(clientId);
      if (rec && sha256(result).equals(rec.resultDigest)) rec.result = result;
    }
    const d = this.stateDigest(root);
    this.initialDigest = Buffer.from(r.initialDigest);
    this.ownCheckpoints.set(r.seq, d);
    this.clientSnapshots.set(r.seq, copyTable(this.clients));
    this.lowWater = this.lastExecuted = this.lastCommitted = this.lastAssigned = r.seq;
    this.view = r.view;
    this.passiveThroughView = r.view;
    this.recovering = !opts.logIntact;
    for (const p of r.proof) {
      const f = this.embedded(p);
      if (f?.body.type === MsgType.Checkpoint && f.body.seq === r.seq && d.equals(f.body.digest))
        this.stableProof.push({ sender: f.sender, frame: p });
    }
    if (this.stableProof.length < quorum(this.n)) this.stableProof = [];
    this.restorePrepared(opts.prepared ?? []);
  }

  /**
   * Takes back the prepared certificates persisted before a restart, so that a VIEW-CHANGE of
   * ours carries them and their bodies serve re-proposals (BATCH-FETCH). Our own records: the
   * frames are not re-checked here, their MACs (under keys of before the restart) are checked
   * by whoever receives them quoted. One that does not parse makes the log incomplete.
   */
  private restorePrepared(records: PersistedCert[]): void {
    for (const c of records) {
      if (c.seq <= this.lowWater || c.seq > this.lowWater + this.L) continue;
      const had = this.certs.get(c.seq);
      if (had && had.view >= c.view) continue;
      try {
        const f = decodeFrame(c.prePrepare);
        const pp = f.body;
        if (pp.type !== MsgType.PrePrepare || pp.seq !== c.seq || pp.view !== c.view)
          throw new DecodeError('not the pre-prepare of its slot');
        const digests = requestDigests(pp);
        for (const fr of c.large) {
          const lf = decodeFrame(fr);
          if (lf.body.type !== MsgType.Request) throw new DecodeError('not a request');
          const req = resolved(lf.body, fr, sha256(lf.signed));
          if (this.requestStore.size < MAX_STORED_REQUESTS) this.requestStore.set(req.hex, req);
        }
        const cert = { prePrepare: c.prePrepare, prepares: c.prepares };
        this.certs.set(c.seq, { view: c.view, digest: batchDigest(pp.nondet, digests), cert });
        this.count('preparedRestored');
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
        this.count('preparedRestoreMalformed');
        this.recovering = true;
      }
    }
  }

  get primary(): number {
    return primaryOf(this.view, this.n);
  }

  /**
   * After a restart: re-runs batches this replica saw commit before the crash (its own
   * write-ahead record, from the 'committed' actions), in order from the restored checkpoint.
   * Stops at the first entry that does not follow on or does not parse. Returns the actions
   * (replies, checkpoints) the re-execution produced.
   */
  replayCommitted(
    entries: { prePrepare: Uint8Array; large: Uint8Array[] }[],
    now: number,
  ): Action[] {
    this.now = now;
    this.out = [];
    for (const e of entries) {
      let pp: PrePrepareMsg;
      const requests: ResolvedRequest[] = [];
      try {
        const f = decodeFrame(e.prePrepare);
        if (f.body.type !== MsgType.PrePrepare) break;
        pp = f.body;
        const large = new Map<string, ResolvedRequest>();
        for (const fr of e.large) {
          const lf = decodeFrame(fr);
          if (lf.body.type !== MsgType.Request) throw new DecodeError('not a request');
          const d = sha256(lf.signed);
          large.set(d.toString('hex'), resolved(lf.body, fr, d));
        }
        for (const entry of pp.entries) {
          if ('digest' in entry) {
            const r = large.get(Buffer.from(entry.digest).toString('hex'));
            if (!r) throw new DecodeError('separately transmitted request missing');
            requests.push(r);
          } else {
            const rf = decodeFrame(entry.inline);
            if (rf.body.type !== MsgType.Request) throw new DecodeError('not a request');
            requests.push(resolved(rf.body, entry.inline, sha256(rf.signed)));
          }
        }
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
        this.count('replayMalformed');
        break;
      }
      if (pp.seq !== this.lastCommitted + 1 || this.lastExecuted !== this.lastCommitted) break;
      const slot = this.slot(pp.seq, pp.view);
      const digests = requests.map((r) => r.digest);
      slot.pp = prePrepared(pp, e.prePrepare, batchDigest(pp.nondet, digests), digests, requests);
      slot.prepared = slot.committed = true;
      this.preparedAhead.add(slot.seq);
      this.tryExecute();
      if (this.lastCommitted !== pp.seq) break;
      this.count('replayedBatches');
    }
    this.lastAssigned = Math.max(this.lastAssigned, this.lastCommitted);
    return this.out;
  }

  get isPrimary(): boolean {
    return this.primary === this.id;
  }

  /** Highest sequence number accepted: H = h + L. */
  get highWater(): number {
    return this.lowWater + this.L;
  }

  /** Handles one frame from the network. Never throws on bad input: drops and counts it. */
  handleMessage(from: number, bytes: Uint8Array, now: number): Action[] {
    this.now = now;
    this.out = [];
    const frame = tryDecodeFrame(bytes);
    if (!frame) {
      this.count('dropMalformed');
      return this.out;
    }
    if (!this.auth.hasKey(frame.sender)) {
      this.count('dropUnknownSender');
      return this.out;
    }
    // A request's digest is also what its authenticator's MACs cover: hash it once. A
    // pre-prepare's authenticator covers its batch digest: hash its requests once, here.
    const b = frame.body;
    let digest: Buffer | undefined;
    let batch: BatchDigests | undefined;
    if (b.type === MsgType.Request) digest = sha256(frame.signed);
    else if (b.type === MsgType.PrePrepare && !b.batch && frame.macs.length > 1) {
      batch = this.batchDigests(b);
      if (!batch) {
        this.count('dropMalformed');
        return this.out;
      }
      digest = prePrepareAuthDigest(frame.sender, b.view, b.seq, batch.digest);
    }
    if (!this.auth.verifyFrame(frame.sender, frame.signed, frame.macs, digest)) {
      this.count('dropBadMac');
      // Blamed on the connection it came by (the transport authenticated that peer), not on
      // the id it claims: a frame whose MACs fail may be an impersonation.
      this.faults.note(from, 'badMac');
      return this.out;
    }
    this.dispatch(frame, bytes, digest, batch);
    return this.out;
  }

  /**
   * Whether requests wait in the primary's queue for `endOfInput` (or a tick) instead of going
   * into a pre-prepare as each arrives. A host that hands the core frames in bursts (one socket
   * read) sets it and calls `endOfInput` after each burst: otherwise the first request of a
   * burst takes a free slot of the window alone and the rest wait for the next. Measured under
   * load with the window of 2: 69% of all pre-prepares carried a single request.
   */
  deferPrePrepares = false;

  /** The end of a burst of input (see `deferPrePrepares`): batches what the primary queued. */
  endOfInput(now: number): Action[] {
    this.now = now;
    this.out = [];
    this.maybePrePrepare();
    return this.out;
  }

  /** Whether the primary holds requests a pre-prepare could take (for `endOfInput`). */
  get hasQueuedRequests(): boolean {
    return this.pending.length > 0;
  }

  /** Clock tick: status exchange, re-sends for stuck slots, batching left-overs. */
  tick(now: number): Action[] {
    this.now = now;
    this.out = [];
    // A held commit waits at most one tick.
    if (this.heldCommits.length > 0) this.releaseCommits();
    if (now - this.lastStatusAt >= this.statusIntervalMs) {
      this.lastStatusAt = now;
      const status: StatusMsg = {
        type: MsgType.Status,
        view: this.view,
        lastExecuted: this.lastCommitted,
        stable: this.lowWater,
      };
      this.multicast(status);
    }
    if (now - this.lastProofRefresh >= PROOF_REFRESH_INTERVAL_MS) {
      // Our vote for the stable checkpoint again, under our current keys: the proof every
      // replica keeps (and quotes in VIEW-CHANGEs) must verify after keys are refreshed or a
      // replica restarted with a proof from its disk. And our votes for checkpoints not stable
      // yet: CHECKPOINT is sent once, and a vote lost (a restart re-runs its commit log before
      // its peers listen) left a checkpoint one vote short for good, the log window full.
      this.lastProofRefresh = now;
      for (const [seq, digest] of this.ownCheckpoints) {
        if (seq === 0 || seq < this.lowWater) continue;
        const msg: CheckpointMsg = { type: MsgType.Checkpoint, seq, digest };
        const frame = this.auth.sealMulticast(msg, this.n);
        this.send(this.otherReplicas, frame);
        if (seq === this.lowWater) this.refreshProofEntry(this.id, frame);
        else this.count('checkpointVoteResent');
      }
    }
    this.viewChangeTimer();
    this.stateTransferTimer();
    // Reads held back by a prepared batch that a view change then dropped.
    if (this.pendingReadOnly.length > 0 && this.readOnlyReady())
      for (const r of this.pendingReadOnly.splice(0)) this.executeReadOnly(r);
    const w = this.withheldViewChange;
    if (w && (this.active || w.msg.view !== this.view)) this.withheldViewChange = undefined;
    else if (w && now - w.since >= 2 * this.viewChangeTimeoutMs) {
      this.count('viewChangeSentRecovering');
      this.sendViewChange(w.msg, w.frame);
    }
    if (!this.active) {
      // VIEW-CHANGE messages get lost too: repeat ours until the NEW-VIEW arrives.
      if (this.ownViewChange && now - this.lastViewChangeResend >= this.resendIntervalMs) {
        this.lastViewChangeResend = now;
        this.send(this.otherReplicas, this.ownViewChange);
      }
      return this.out;
    }
    // Only while a re-proposed body is missing: the scan walks the whole log.
    if (this.bodiesMissing.size > 0 && now - this.lastBatchFetch >= this.resendIntervalMs)
      this.fetchBatches();
    this.maybeFillToCheckpoint();
    // Slots count as stuck after resendIntervalMs without progress: looking every quarter of
    // that is enough, where a look every tick cost a loaded replica several percent of its CPU
    // (the log holds up to two windows of slots).
    if (now - this.lastStuckScan < this.resendIntervalMs / 4) {
      this.maybePrePrepare();
      return this.out;
    }
    this.lastStuckScan = now;
    for (const slot of this.log.values()) {
      if (slot.seq <= this.lowWater || now - slot.lastProgress < this.resendIntervalMs) continue;
      // Messages of an earlier view are dropped by every replica in this one. And after a restart
      // we send nothing in views we may have voted in: the slots our commit log re-ran are among
      // them (re-sending those, large requests and all, every interval once flooded the links
      // and starved the restarted replica's own state transfer).
      if (slot.view !== this.view || slot.view <= this.passiveThroughView) continue;
      // A slot a NEW-VIEW re-proposed may be committed here from the earlier view while the
      // others still need our messages of this view to commit it.
      if (slot.committed && this.matchingCommits(slot) >= quorum(this.n)) continue;
      slot.lastProgress = now;
      this.count('resendStuckSlot');
      if (slot.pp && this.id === primaryOf(slot.view, this.n)) {
        this.send(this.otherReplicas, this.prePrepareFrameFor(slot));
        this.sendLargeRequests(this.otherReplicas, slot);
      }
      if (slot.sentPrepare) this.multicast(this.phaseMsg(MsgType.Prepare, slot));
      if (slot.sentCommit) this.multicast(this.phaseMsg(MsgType.Commit, slot));
    }
    this.maybePrePrepare();
    return this.out;
  }

  /** Every decoded message type ends up here after authentication. */
  private dispatch(
    frame: Frame,
    bytes: Uint8Array,
    digest: Buffer | undefined,
    batch: BatchDigests | undefined,
  ): void {
    const b = frame.body;
    const s = frame.sender;
    const fromReplica = s < this.n;
    switch (b.type) {
      case MsgType.Request:
        // Only clients issue requests; forwarded ones keep the client's sender and authenticator.
        if (fromReplica) return this.count('dropRequestFromReplica');
        if (b.clientId !== s) {
          this.count('dropRequestClientMismatch');
          return;
        }
        return this.onRequest(b, bytes, digest!); // handleMessage hashes every request
      case MsgType.PrePrepare:
        if (!fromReplica) return this.count('dropNotReplica');
        // The stripped form only travels inside VIEW-CHANGE and NEW-VIEW.
        if (b.batch) return this.count('dropStrippedPrePrepare');
        return this.onPrePrepareFrame(s, b, bytes, frame.macs.length === this.n, batch);
      case MsgType.Prepare:
      case MsgType.Commit:
        if (!fromReplica) return this.count('dropNotReplica');
        return this.onPhase(s, b, bytes);
      case MsgType.Checkpoint:
        if (!fromReplica) return this.count('dropNotReplica');
        return this.onCheckpoint(s, b, bytes);
      case MsgType.Status:
        if (!fromReplica) return this.count('dropNotReplica');
        return this.onStatus(s, b);
      case MsgType.ViewChange:
        if (!fromReplica) return this.count('dropNotReplica');
        return this.onViewChange(s, b, bytes);
      case MsgType.NewView:
        if (!fromReplica) return this.count('dropNotReplica');
        return this.onNewView(s, b, bytes);
      case MsgType.Fetch:
        if (!fromReplica || s === this.id) return this.count('dropNotReplica');
        return this.onFetch(s, b);
      case MsgType.FetchReply:
        if (!fromReplica || s === this.id) return this.count('dropNotReplica');
        return this.onFetchReply(s, b);
      case MsgType.BatchFetch:
        if (!fromReplica || s === this.id) return this.count('dropNotReplica');
        return this.onBatchFetch(s, b);
      case MsgType.ForwardedNewView:
        if (!fromReplica || s === this.id) return this.count('dropNotReplica');
        return this.onForwardedNewView(s, b.newView);
      case MsgType.Reply:
      case MsgType.ReplyBatch:
        return this.count('dropUnexpectedReply');
    }
  }

  // ---- Requests ------------------------------------------------------------------------------

  private onRequest(msg: RequestMsg, frame: Uint8Array, digest: Buffer): void {
    const rec = this.clients.get(msg.clientId);
    if (msg.readOnly) {
      const req = resolved(msg, frame, digest);
      if (this.readOnlyReady()) this.executeReadOnly(req);
      else if (this.pendingReadOnly.length < MAX_PENDING_READ_ONLY) {
        this.pendingReadOnly.push(req);
        // The read waits for a commit: ours must not wait for a next batch too.
        if (this.heldCommits.length > 0) this.releaseCommits();
      } else this.count('dropReadOnlyQueueFull');
      return;
    }
    const req = resolved(msg, frame, digest);
    // Only separately transmitted requests are ever looked up by digest (pre-prepares carry the
    // others whole): small ones skip the store, and with it their hex digest.
    const large = frame.length > this.largeRequestBytes;
    if (large && this.waiting.size > 0) this.resolveWaiting(req.hex, req);
    if (rec && msg.timestamp < rec.lastTimestamp) return this.count('dropOldTimestamp');
    if (rec && msg.timestamp === rec.lastTimestamp) {
      // A retransmission of the last executed request: re-send its reply, in full since the
      // client evidently lacks it (the designated replier may be faulty).
      this.count('resendReply');
      if (rec.tentative) this.await(`${msg.clientId}:${msg.timestamp}`, req);
      this.sendReply(msg.clientId, msg.timestamp, rec, -1, false);
      return;
    }
    if (large) {
      if (this.requestStore.size >= MAX_STORED_REQUESTS) {
        const oldest = this.requestStore.keys().next().value as string;
        this.requestStore.delete(oldest);
        this.count('evictStoredRequest');
      }
      this.requestStore.set(req.hex, req);
    }
    const key = `${msg.clientId}:${msg.timestamp}`;
    // Every replica waits for the requests it knows about, the primary too: one whose
    // pre-prepares cannot commit (its backups moved on) joins the view change instead of
    // holding the others back.
    this.await(key, req);
    if (this.isPrimary) {
      if (this.pendingKeys.has(key) || this.orderedKeys.has(key))
        return this.count('dupPendingRequest');
      if (this.pending.length >= MAX_PENDING_REQUESTS) return this.count('dropPendingQueueFull');
      this.pendingKeys.add(key);
      this.pending.push(req);
      if (!this.deferPrePrepares) this.maybePrePrepare();
    } else {
      // Relay to the primary once (OSDI 1999 section 4.4), and see whether a pre-prepare waits.
      if (this.forwarded.size >= MAX_STORED_REQUESTS) this.forwarded.clear();
      if (!this.forwarded.has(key) && frame.length <= this.largeRequestBytes) {
        this.forwarded.add(key);
        this.send([this.primary], frame);
      }
    }
  }

  private await(key: string, req: ResolvedRequest): void {
    if (this.awaited.has(key)) return;
    if (this.awaited.size >= MAX_STORED_REQUESTS) {
      this.awaited.delete(this.awaited.keys().next().value as string);
      this.count('evictAwaitedRequest');
    }
    this.awaited.set(key, req);
  }

  /**
   * Read-only requests run on committed state with nothing in flight that we know of: no
   * tentative execution, and no prepared batch above it. A write whose client already has its
   * result is prepared at f + 1 correct replicas at least, so one of any 2f + 1 read replies comes
   * from a replica that waits for it (otherwise a Byzantine replica and lagging correct ones
   * could agree on a state from before the write).
   */
  private readOnlyReady(): boolean {
    if (this.lastExecuted !== this.lastCommitted) return false;
    // Entries are checked here rather than removed everywhere a slot is executed, replaced or
    // dropped; the set stays as small as the batches in flight.
    for (const seq of this.preparedAhead) {
      const slot = this.log.get(seq);
      if (seq > this.lastCommitted && slot?.prepared && !slot.executed) return false;
      this.preparedAhead.delete(seq);
    }
    return true;
  }

  private executeReadOnly(req: ResolvedRequest): void {
    const m = req.msg;
    const result = this.runService(m.op, m.clientId, EMPTY, true);
    const rec: ClientRecord = {
      lastTimestamp: m.timestamp,
      result,
      resultDigest: sha256(result),
      view: this.view,
      tentative: true,
    };
    this.sendReply(m.clientId, m.timestamp, rec, m.replier, true);
  }

  private runService(
    op: Uint8Array,
    clientId: number,
    nondet: Uint8Array,
    ro: boolean,
  ): Uint8Array {
    let result: Uint8Array;
    try {
      result = this.service.execute(op, clientId, nondet, ro);
    } catch {
      // The op came from the network; services should answer errors themselves, but a throw
      // is deterministic on every correct replica, so an empty result keeps them in agreement.
      this.count('serviceError');
      result = EMPTY;
    }
    if (result.length > MAX_RESULT_BYTES) {
      this.count('resultTooLarge');
      result = EMPTY;
    }
    return result;
  }

  private sendReply(
    clientId: number,
    timestamp: number,
    rec: ClientRecord,
    replier: number,
    readOnly: boolean,
  ): void {
    this.sealReply(this.replyFor(clientId, timestamp, rec, replier, readOnly));
  }

  /** The reply for `rec`: the full result from the designated replier, else its digest. */
  private replyFor(
    clientId: number,
    timestamp: number,
    rec: ClientRecord,
    replier: number,
    readOnly: boolean,
  ): BatchedReply {
    const full = (replier === -1 || replier === this.id) && rec.result !== undefined;
    let flags = full ? 0 : REPLY_DIGEST_ONLY;
    if (rec.tentative) flags |= REPLY_TENTATIVE;
    if (readOnly) flags |= REPLY_READ_ONLY;
    return {
      view: rec.view,
      timestamp,
      clientId,
      flags,
      result: full ? rec.result! : rec.resultDigest,
    };
  }

  private sealReply(r: BatchedReply): void {
    const msg: ReplyMsg = { type: MsgType.Reply, replica: this.id, ...r };
    this.send([r.clientId], this.auth.sealTo(msg, r.clientId));
  }

  /**
   * The replies of one batch to one client process: REPLY-BATCH frames of at most
   * MAX_REPLY_BATCH_BYTES under one MAC each, for the process's group id; a lone reply (or one
   * too big to share a frame) goes as a REPLY.
   */
  private sendReplyBatches(group: number, replies: BatchedReply[]): void {
    let start = 0;
    while (start < replies.length) {
      let end = start;
      let bytes = REPLY_BATCH_HEAD_BYTES;
      while (end < replies.length) {
        const size = batchedReplySize(replies[end]!);
        if (bytes + size > MAX_REPLY_BATCH_BYTES) break;
        bytes += size;
        end++;
      }
      if (end - start <= 1) {
        this.sealReply(replies[start]!);
        start++;
        continue;
      }
      const msg: ReplyBatchMsg = {
        type: MsgType.ReplyBatch,
        replica: this.id,
        group,
        replies: replies.slice(start, end),
      };
      this.send([group], this.auth.sealTo(msg, group));
      this.count('replyBatchSent');
      start = end;
    }
  }

  // ---- Primary: batching and pre-prepares ------------------------------------------------------

  private maybePrePrepare(): void {
    if (!this.isPrimary || !this.active || this.view <= this.passiveThroughView) return;
    if (this.bodiesMissing.size > 0) return;
    while (
      (this.pending.length > 0 || this.lastAssigned < this.fillTo) &&
      this.lastAssigned - this.lastCommitted < this.maxOutstanding &&
      this.lastAssigned + 1 <= this.highWater
    ) {
      const entries: BatchEntry[] = [];
      const reqs: ResolvedRequest[] = [];
      let bytes = 0;
      while (this.pending.length > 0 && reqs.length < this.maxBatchRequests) {
        const r = this.pending[0]!;
        const large = r.frame.length > this.largeRequestBytes;
        const cost = large ? 0 : r.frame.length;
        if (reqs.length > 0 && bytes + cost > this.maxBatchBytes) break;
        this.pending.shift();
        this.pendingKeys.delete(`${r.msg.clientId}:${r.msg.timestamp}`);
        const rec = this.clients.get(r.msg.clientId);
        if (rec && r.msg.timestamp <= rec.lastTimestamp) continue;
        bytes += cost;
        this.orderedKeys.add(`${r.msg.clientId}:${r.msg.timestamp}`);
        reqs.push(r);
        entries.push(large ? { digest: r.digest } : { inline: r.frame });
      }
      if (reqs.length === 0 && (this.pending.length > 0 || this.lastAssigned >= this.fillTo))
        continue;
      if (reqs.length > 0) this.lastBatchAt = this.now;
      else this.count('idleNullBatch');
      const seq = ++this.lastAssigned;
      const nondet = this.service.proposeNondet(this.now);
      const msg: PrePrepareMsg = {
        type: MsgType.PrePrepare,
        view: this.view,
        seq,
        nondet,
        entries,
      };
      const digests = reqs.map((r) => r.digest);
      const digest = batchDigest(nondet, digests);
      const auth = prePrepareAuthDigest(this.id, this.view, seq, digest);
      const frame = this.auth.sealMulticast(msg, this.n, auth);
      this.send(this.otherReplicas, frame);
      const slot = this.slot(seq);
      slot.pp = prePrepared(msg, frame, digest, digests, reqs);
      slot.lastProgress = this.now;
      this.count('prePrepareSent');
      this.count('requestsOrdered', reqs.length);
      this.checkPrepared(slot);
    }
  }

  /**
   * Primary, idle for `idleCheckpointMs` with its last batch above a checkpoint boundary: null
   * batches up to the boundary (see IDLE_CHECKPOINT_MS), which then becomes stable.
   */
  private maybeFillToCheckpoint(): void {
    if (this.idleCheckpointMs <= 0 || !this.isPrimary || this.view <= this.passiveThroughView)
      return;
    if (this.fillTo > this.lastAssigned || this.pending.length > 0) return;
    if (this.lastAssigned !== this.lastCommitted || this.lastCommitted % this.K === 0) return;
    if (this.now - this.lastBatchAt < this.idleCheckpointMs) return;
    this.fillTo = Math.ceil(this.lastCommitted / this.K) * this.K;
    this.count('idleCheckpointFill');
    this.maybePrePrepare();
  }

  // ---- Backups: pre-prepare, prepare, commit ---------------------------------------------------

  private inWindow(view: number, seq: number): boolean {
    if (view !== this.view || !this.active) {
      // Below the start of the current view a slot may still commit in the view it was
      // ordered in: a replica that lagged behind the new view's checkpoint catches up so.
      if (view < this.view && seq <= this.catchUpTo && seq > this.lastCommitted) {
        const slot = this.log.get(seq);
        if (!slot || slot.view === view) return true;
        if (slot.view < view && !slot.committed) {
          this.log.delete(seq);
          return true;
        }
      }
      this.count('dropWrongView');
      return false;
    }
    // Below h only slots still kept and of this view: a replica ahead helps the others commit
    // what a NEW-VIEW re-proposed below its own stable checkpoint.
    const kept = seq <= this.lowWater && this.log.get(seq)?.view === view;
    if ((seq <= this.lowWater && !kept) || seq > this.highWater) {
      this.count('dropOutsideWaterMarks');
      return false;
    }
    return true;
  }

  /** Request digests and batch digest of a full pre-prepare; undefined if one is malformed. */
  private batchDigests(msg: PrePrepareMsg): BatchDigests | undefined {
    try {
      const digests = requestDigests(msg);
      return { digests, digest: batchDigest(msg.nondet, digests) };
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      return undefined;
    }
  }

  /**
   * A PRE-PREPARE frame: the primary's proposal, or the body of a batch we wait for (a NEW-VIEW
   * re-proposed it by digest), which anyone may send us: the digest vouches for it.
   */
  private onPrePrepareFrame(
    sender: number,
    msg: PrePrepareMsg,
    frame: Uint8Array,
    multicast: boolean,
    known: BatchDigests | undefined,
  ): void {
    const batch = known ?? this.batchDigests(msg);
    if (!batch) {
      if (sender === primaryOf(msg.view, this.n)) this.faults.note(sender, 'rejectedProposal');
      return this.count('dropPrePrepareBadRequest');
    }
    const slot = this.log.get(msg.seq);
    if (slot?.header && !slot.pp && slot.view === msg.view) {
      if (!slot.header.digest.equals(batch.digest)) return this.count('dropBatchBodyMismatch');
      const body: PrePrepareMsg = { ...msg, view: slot.view, seq: slot.seq };
      const full = reframe(slot.header.frame, body);
      slot.header = undefined;
      this.count('batchBodyFilled');
      return this.installReproposal(slot, body, full, batch);
    }
    // Only the primary proposes, and to everyone: its frame may end up in a certificate.
    if (sender !== primaryOf(msg.view, this.n) || sender === this.id || !multicast) {
      if (slot?.pp?.digest.equals(batch.digest)) return this.count('dupBatchBody');
      return this.count('dropPrePrepareNotFromPrimary');
    }
    this.onPrePrepare(msg, frame, false, batch);
  }

  private onPrePrepare(
    msg: PrePrepareMsg,
    frame: Uint8Array,
    fromNewView: boolean,
    batch: BatchDigests,
  ): void {
    if (!fromNewView && !this.inWindow(msg.view, msg.seq)) return;
    const agreed = fromNewView || msg.view < this.view;
    const requests: (ResolvedRequest | undefined)[] = [];
    const digests = batch.digests;
    for (let i = 0; i < msg.entries.length; i++) {
      const e = msg.entries[i]!;
      if ('inline' in e) {
        const r = agreed
          ? this.agreedInlineRequest(e.inline, digests[i]!)
          : this.checkInlineRequest(e.inline, digests[i]);
        if (!r) {
          if (!fromNewView) this.faults.note(primaryOf(msg.view, this.n), 'rejectedProposal');
          return this.count('dropPrePrepareBadRequest');
        }
        requests.push(r);
      } else requests.push(this.requestStore.get(digests[i]!.toString('hex')));
    }
    const digest = batch.digest;
    const slot = this.slot(msg.seq, msg.view);
    if (slot.pp) {
      if (!slot.pp.digest.equals(digest)) {
        this.count('dropConflictingPrePrepare');
        if (!fromNewView && slot.view === msg.view)
          this.faults.note(primaryOf(msg.view, this.n), 'equivocation');
      } else this.count('dupPrePrepare');
      return;
    }
    // Re-proposals (NEW-VIEW) and catch-up in an earlier view carry values agreed long ago.
    const pp = prePrepared(msg, frame, digest, digests, requests);
    if (!agreed && !this.service.checkNondet(msg.nondet, this.now) && !this.vouched(slot, digest)) {
      // Late for it (we lagged), or a faulty primary: if f + 1 replicas commit it or 2f prepare
      // it, a correct one accepted the value in time; wait for that.
      slot.refused = pp;
      this.faults.note(primaryOf(msg.view, this.n), 'rejectedProposal');
      return this.count('dropNondetRejected');
    }
    slot.refused = undefined;
    slot.pp = pp;
    slot.lastProgress = this.now;
    this.afterPrePrepare(slot);
  }

  /** Decodes and authenticates a client request carried inside a pre-prepare. */
  private checkInlineRequest(bytes: Uint8Array, known?: Buffer): ResolvedRequest | undefined {
    const f = tryDecodeFrame(bytes);
    if (!f) return undefined;
    const m = f.body;
    if (m.type !== MsgType.Request || m.readOnly || m.clientId !== f.sender) return undefined;
    if (f.sender < this.n) return undefined;
    const digest = known ?? sha256(f.signed);
    if (!this.auth.verifyFrame(f.sender, f.signed, f.macs, digest)) return undefined;
    return resolved(m, bytes, digest);
  }

  /**
   * A client request inside a batch whose digest was agreed already (re-proposed by a NEW-VIEW,
   * or of an earlier view: it executes only once committed there): the replicas that prepared
   * it checked its client MAC, under keys that may be gone since (a restart), so only its form
   * is checked here.
   */
  private agreedInlineRequest(bytes: Uint8Array, digest: Buffer): ResolvedRequest | undefined {
    const f = tryDecodeFrame(bytes);
    if (!f) return undefined;
    const m = f.body;
    if (m.type !== MsgType.Request || m.readOnly || m.clientId !== f.sender) return undefined;
    if (f.sender < this.n) return undefined;
    return resolved(m, bytes, digest);
  }

  /** A large request arrived: fill it into any pre-prepare that carried only its digest. */
  private resolveWaiting(hex: string, req: ResolvedRequest): void {
    for (const seq of this.waiting) {
      const slot = this.log.get(seq);
      const pp = slot?.pp;
      if (!slot || !pp) {
        this.waiting.delete(seq);
        continue;
      }
      let filled = false;
      pp.requestDigests.forEach((d, i) => {
        if (pp.requests[i] === undefined && d.toString('hex') === hex) {
          pp.requests[i] = req;
          filled = true;
        }
      });
      if (filled) this.afterPrePrepare(slot);
    }
  }

  private afterPrePrepare(slot: Slot): void {
    if (!slot.pp || slot.pp.requests.some((r) => r === undefined)) {
      this.waiting.add(slot.seq);
      this.count('waitingForLargeRequest');
      return;
    }
    this.waiting.delete(slot.seq);
    if (
      !slot.sentPrepare &&
      this.id !== primaryOf(slot.view, this.n) &&
      slot.view > this.passiveThroughView
    ) {
      slot.sentPrepare = true;
      slot.prepares.set(this.id, slot.pp.hex);
      // Kept: our own prepare may be part of our prepared certificate in a VIEW-CHANGE.
      const own = this.auth.sealMulticast(this.phaseMsg(MsgType.Prepare, slot), this.n);
      slot.prepareFrames.set(this.id, own);
      this.send(this.otherReplicas, own);
    }
    this.checkPrepared(slot);
  }

  private phaseMsg(type: MsgType.Prepare | MsgType.Commit, slot: Slot): PrepareMsg {
    return { type, view: slot.view, seq: slot.seq, digest: slot.pp!.digest };
  }

  private onPhase(sender: number, msg: PrepareMsg, frame: Uint8Array): void {
    if (!this.inWindow(msg.view, msg.seq)) return;
    const slot = this.slot(msg.seq, msg.view);
    const hex = Buffer.from(msg.digest).toString('hex');
    if (msg.type === MsgType.Prepare) {
      if (sender === primaryOf(msg.view, this.n)) return this.count('dropPrepareFromPrimary');
      const had = slot.prepares.get(sender);
      if (had === hex) return this.count('dupPrepare');
      this.noteVote(slot, sender, msg.view, had, hex);
      slot.prepares.set(sender, hex);
      slot.prepareFrames.set(sender, frame);
      this.checkPrepared(slot);
    } else {
      const had = slot.commits.get(sender);
      if (had === hex) return this.count('dupCommit');
      this.noteVote(slot, sender, msg.view, had, hex, true);
      slot.commits.set(sender, hex);
      this.checkCommitted(slot);
    }
    const r = slot.refused;
    if (r && !slot.pp && this.vouched(slot, r.digest)) {
      slot.refused = undefined;
      slot.pp = r;
      slot.lastProgress = this.now;
      this.count('nondetVouched');
      this.afterPrePrepare(slot);
    }
  }

  /**
   * Whether other replicas vouch for a batch: f + 1 commits or 2f prepares (from backups) of its
   * digest include a correct replica, which checked the nondet value when it was proposed.
   */
  private vouched(slot: Slot, digest: Buffer): boolean {
    const hex = digest.toString('hex');
    let commits = 0;
    for (const [r, d] of slot.commits) if (r !== this.id && d === hex) commits++;
    if (commits >= this.f + 1) return true;
    let prepares = 0;
    const primary = primaryOf(slot.view, this.n);
    for (const [r, d] of slot.prepares) if (r !== this.id && r !== primary && d === hex) prepares++;
    return prepares >= 2 * this.f;
  }

  private checkPrepared(slot: Slot): void {
    const pp = slot.pp;
    if (slot.prepared || !pp || pp.requests.some((r) => r === undefined)) return;
    const hex = pp.hex;
    const primary = primaryOf(slot.view, this.n);
    const matching: Uint8Array[] = [];
    for (const [r, d] of slot.prepares) {
      const fr = slot.prepareFrames.get(r);
      if (r !== primary && d === hex && fr) matching.push(fr);
    }
    if (matching.length < 2 * this.f) return;
    slot.prepared = true;
    this.preparedAhead.add(slot.seq);
    const had = this.certs.get(slot.seq);
    if (slot.seq > this.lowWater && (!had || had.view <= slot.view)) {
      const cert = { prePrepare: pp.frame, prepares: matching.slice(0, 2 * this.f) };
      this.certs.set(slot.seq, { view: slot.view, digest: pp.digest, cert });
      // The durable point: our COMMIT and tentative replies below leave only once the host
      // has this certificate on disk (see Action 'prepared').
      this.out.push({
        kind: 'prepared',
        seq: slot.seq,
        view: slot.view,
        ...cert,
        large: largeFrames(pp),
      });
    }
    slot.lastProgress = this.now;
    // After a restart, views we may have voted in before the crash get no vote of ours: we
    // commit on the others' 2f + 1 commits alone.
    if (slot.view > this.passiveThroughView) {
      slot.sentCommit = true;
      slot.commits.set(this.id, hex);
      const commit = this.auth.sealMulticast(this.phaseMsg(MsgType.Commit, slot), this.n);
      if (this.holdCommits && this.onlyBatchInFlight(slot)) {
        this.heldCommits.push(commit);
        this.count('commitHeld');
      } else this.send(this.otherReplicas, commit);
    }
    this.checkCommitted(slot);
    this.tryExecute();
  }

  /**
   * Whether a commit for `slot` may wait for this replica's next message to the replicas: no
   * later batch is in flight here and, at the primary, no request waits for a pre-prepare. Under
   * load the next batch is already out, and commits go at once (a full window of uncommitted
   * batches would otherwise wait for the tick).
   */
  private onlyBatchInFlight(slot: Slot): boolean {
    if (this.pending.length > 0) return false;
    for (let s = slot.seq + 1; s <= slot.seq + this.maxOutstanding; s++)
      if (this.log.get(s)?.pp) return false;
    return true;
  }

  /** Sends the held commits (see `holdCommits`). */
  private releaseCommits(): void {
    const held = this.heldCommits;
    this.heldCommits = [];
    for (const bytes of held) this.out.push({ kind: 'send', to: this.otherReplicas, bytes });
  }

  private matchingCommits(slot: Slot): number {
    if (!slot.pp) return 0;
    const hex = slot.pp.hex;
    let k = 0;
    for (const d of slot.commits.values()) if (d === hex) k++;
    return k;
  }

  private checkCommitted(slot: Slot): void {
    if (slot.committed || !slot.prepared) return;
    if (this.matchingCommits(slot) < quorum(this.n)) return;
    slot.committed = true;
    slot.lastProgress = this.now;
    // Commits already in for another digest than the one that committed (prepares are not
    // counted: a correct backup an equivocating primary misled prepares the other digest, but
    // never commits it without 2f prepares to match).
    const agreed = slot.pp!.digest.toString('hex');
    for (const [sender, hex] of slot.commits)
      if (hex !== agreed && sender !== this.id) this.faults.note(sender, 'digestMismatch');
    this.tryExecute();
  }

  /**
   * Fault attribution for a PREPARE or COMMIT of `sender` in `view` (before it is recorded): a
   * second digest for the same slot and view is an equivocation; a COMMIT for another digest than
   * the one already committed is a mismatching digest (those in before the commit are counted by
   * checkCommitted).
   */
  private noteVote(
    slot: Slot,
    sender: number,
    view: number,
    had: string | undefined,
    hex: string,
    commit = false,
  ): void {
    if (slot.view !== view) return;
    if (had !== undefined) this.faults.note(sender, 'equivocation');
    else if (commit && slot.committed && slot.pp && slot.pp.digest.toString('hex') !== hex)
      this.faults.note(sender, 'digestMismatch');
  }

  // ---- Execution -----------------------------------------------------------------------------

  /**
   * Executes in sequence order. A batch runs tentatively once prepared and every earlier batch
   * committed (OSDI 1999 section 5.1); it never runs tentatively across a checkpoint boundary, so
   * checkpoints always hold committed state and a rollback never goes below one.
   */
  private tryExecute(): void {
    for (;;) {
      const next = this.log.get(this.lastCommitted + 1);
      if (next && next.executed && next.committed) {
        this.lastCommitted = next.seq;
        this.markCommitted(next);
        continue;
      }
      if (this.lastExecuted !== this.lastCommitted) break;
      const slot = this.log.get(this.lastExecuted + 1);
      if (!slot || !slot.pp) break;
      if (slot.committed) {
        if (slot.pp.requests.some((r) => r === undefined)) break;
        this.executeSlot(slot, false);
        this.lastCommitted = slot.seq;
        this.markCommitted(slot);
        continue;
      }
      if (
        this.tentative &&
        this.active &&
        slot.view === this.view &&
        slot.prepared &&
        slot.seq % this.K !== 0
      ) {
        this.executeSlot(slot, true);
        continue;
      }
      break;
    }
    if (this.pendingReadOnly.length > 0 && this.readOnlyReady()) {
      for (const r of this.pendingReadOnly.splice(0)) this.executeReadOnly(r);
    }
    this.maybePrePrepare();
  }

  private executeSlot(slot: Slot, tentative: boolean): void {
    const pp = slot.pp!;
    const executed: Extract<Action, { kind: 'executed' }>['requests'] = [];
    // Replies to client processes that asked for them batched (replyTo), by process.
    let grouped: Map<number, BatchedReply[]> | undefined;
    for (const r of pp.requests) {
      const m = r!.msg;
      const rec = this.clients.get(m.clientId);
      // Each set is empty on a backup that got its requests inside pre-prepares: no key then.
      if (this.forwarded.size > 0 || this.orderedKeys.size > 0) {
        const key = `${m.clientId}:${m.timestamp}`;
        this.forwarded.delete(key);
        this.orderedKeys.delete(key);
      }
      if (this.requestStore.size > 0) this.requestStore.delete(r!.hex);
      if (rec && m.timestamp <= rec.lastTimestamp) {
        // A faulty primary may order a request twice; every correct replica skips it alike.
        executed.push({ clientId: m.clientId, timestamp: m.timestamp, op: m.op, skipped: true });
        continue;
      }
      const result = this.runService(m.op, m.clientId, pp.msg.nondet, false);
      const nrec: ClientRecord = {
        lastTimestamp: m.timestamp,
        result,
        resultDigest: sha256(result),
        view: this.view,
        tentative,
      };
      this.clients.set(m.clientId, nrec);
      executed.push({ clientId: m.clientId, timestamp: m.timestamp, op: m.op, skipped: false });
      const reply = this.replyFor(m.clientId, m.timestamp, nrec, m.replier, false);
      const g = m.replyTo;
      if (g !== undefined && g !== m.clientId && g >= this.n && this.auth.hasKey(g)) {
        grouped ??= new Map();
        const list = grouped.get(g);
        if (list) list.push(reply);
        else grouped.set(g, [reply]);
      } else this.sealReply(reply);
    }
    if (grouped) for (const [g, list] of grouped) this.sendReplyBatches(g, list);
    slot.executed = true;
    this.lastExecuted = slot.seq;
    this.out.push({
      kind: 'executed',
      seq: slot.seq,
      digest: pp.digest,
      nondet: pp.msg.nondet,
      requests: executed,
      tentative,
    });
  }

  private markCommitted(slot: Slot): void {
    // Tentative replies already went out; later retransmissions get the committed reply.
    for (const r of slot.pp!.requests) {
      const rec = this.clients.get(r!.msg.clientId);
      if (rec && rec.lastTimestamp === r!.msg.timestamp) rec.tentative = false;
      // Awaited until committed: tentative execution can still be lost to a view change.
      if (this.awaited.size > 0) this.awaited.delete(`${r!.msg.clientId}:${r!.msg.timestamp}`);
    }
    // Progress: the view-change timer restarts while other requests are still awaited.
    if (this.viewChangeDeadline !== undefined && this.active)
      this.viewChangeDeadline =
        this.awaited.size > 0 ? this.now + this.viewChangeTimeoutMs : undefined;
    const pp = slot.pp!;
    this.out.push({
      kind: 'committed',
      seq: slot.seq,
      digest: pp.digest,
      prePrepare: pp.frame,
      large: largeFrames(pp),
    });
    if (slot.seq % this.K === 0) this.takeCheckpoint(slot.seq);
  }

  // ---- Checkpoints and garbage collection ----------------------------------------------------

  /**
   * The checkpoint digest covers the page-store root and the last-reply table (which PBFT keeps
   * as part of the service state so exactly-once survives state transfer).
   */
  private stateDigest(root: Uint8Array): Buffer {
    return sha256(root, encodeReplyTable(this.clients));
  }

  private takeCheckpoint(seq: number): void {
    const info = this.service.state.checkpoint(seq);
    const digest = this.stateDigest(info.digest);
    this.ownCheckpoints.set(seq, digest);
    this.clientSnapshots.set(seq, copyTable(this.clients));
    const msg: CheckpointMsg = { type: MsgType.Checkpoint, seq, digest };
    const frame = this.auth.sealMulticast(msg, this.n);
    this.send(this.otherReplicas, frame);
    this.recordCheckpointVote(this.id, seq, digest, frame);
  }

  private onCheckpoint(sender: number, msg: CheckpointMsg, frame: Uint8Array): void {
    if (msg.seq === this.lowWater && this.ownCheckpoints.get(this.lowWater)?.equals(msg.digest))
      return this.refreshProofEntry(sender, frame);
    if (msg.seq === this.lowWater && this.ownCheckpoints.has(this.lowWater))
      this.faults.note(sender, 'digestMismatch');
    if (msg.seq <= this.lowWater) return this.count('dropOldCheckpoint');
    if (msg.seq % this.K !== 0) return this.count('dropCheckpointOutOfRange');
    // Far above our window too: that is how a replica that fell behind learns it must fetch
    // state. Each sender has a bounded number of pending votes; its lowest goes first.
    const mine = [...this.checkpointVotes].filter(([, v]) => v.has(sender)).map(([q]) => q);
    if (mine.length >= MAX_CHECKPOINT_VOTES_PER_SENDER && !mine.includes(msg.seq)) {
      const lowest = Math.min(...mine);
      if (msg.seq < lowest) return this.count('dropCheckpointOutOfRange');
      this.checkpointVotes.get(lowest)!.delete(sender);
      this.count('evictCheckpointVote');
    }
    this.recordCheckpointVote(sender, msg.seq, msg.digest, frame);
  }

  private recordCheckpointVote(
    sender: number,
    seq: number,
    digest: Uint8Array,
    frame: Uint8Array,
  ): void {
    let votes = this.checkpointVotes.get(seq);
    if (!votes) this.checkpointVotes.set(seq, (votes = new Map()));
    const hex = Buffer.from(digest).toString('hex');
    votes.set(sender, { hex, frame });
    this.noteCheckpointVote(votes, sender, hex);
    const matching = [...votes].filter(([, v]) => v.hex === hex);
    if (
      matching.length < quorum(this.n) &&
      votes.size === this.n &&
      (this.splitAt === undefined || seq < this.splitAt)
    ) {
      const counts = new Map<string, number>();
      for (const v of votes.values()) counts.set(v.hex, (counts.get(v.hex) ?? 0) + 1);
      if (Math.max(...counts.values()) < quorum(this.n)) {
        // Every replica voted and no digest can reach 2f + 1: the histories forked, which no
        // protocol step mends (docs/operations.md, "Replicas whose histories forked").
        this.splitAt = seq;
        this.count('checkpointSplit');
      }
    }
    if (matching.length < quorum(this.n)) {
      // f + 1 votes include a correct replica's: a state some correct replica committed. Where
      // our log window ends there, the log cannot bring us to it and the checkpoint cannot
      // become stable without our vote (the others' commit logs outran ours before a restart of
      // every replica): fetch it, then vote (finishTransfer).
      if (
        matching.length >= this.f + 1 &&
        seq >= this.highWater &&
        seq > this.lastExecuted &&
        !this.ownCheckpoints.has(seq) &&
        (!this.behind || this.behind.seq < seq) &&
        (!this.transfer || this.transfer.seq < seq)
      ) {
        const proof = matching.map(([s, v]) => ({ sender: s, frame: v.frame }));
        this.behind = { seq, digest: Buffer.from(digest), proof, since: this.now };
        this.count('behindOnWeakCheckpoint');
      }
      return;
    }
    // 2f + 1 replicas vouch for this digest at seq: a stable checkpoint.
    const proof = matching.map(([s, v]) => ({ sender: s, frame: v.frame }));
    const own = this.ownCheckpoints.get(seq);
    if (own && own.toString('hex') === hex) return this.makeStable(seq, own, proof);
    const agreed = Buffer.from(digest);
    if (own) {
      // Our state at seq differs from what a quorum computed: it is corrupt. Repair it.
      this.count('checkpointDigestMismatch');
      this.startTransfer(seq, agreed, proof);
    } else if (!this.behind || this.behind.seq < seq) {
      this.behind = { seq, digest: agreed, proof, since: this.now };
    }
  }

  /**
   * Fault attribution for the checkpoint vote `sender` just cast: once 2f + 1 replicas vouch for
   * one digest, every vote for another is a mismatching digest, counted once per vote.
   */
  private noteCheckpointVote(
    votes: Map<number, { hex: string }>,
    sender: number,
    hex: string,
  ): void {
    const tally = new Map<string, number>();
    for (const v of votes.values()) tally.set(v.hex, (tally.get(v.hex) ?? 0) + 1);
    const agreed = [...tally].find(([, c]) => c >= quorum(this.n))?.[0];
    if (agreed === undefined) return;
    if (hex !== agreed) {
      if (sender !== this.id) this.faults.note(sender, 'digestMismatch');
    } else if (tally.get(agreed) === quorum(this.n)) {
      for (const [s, v] of votes)
        if (v.hex !== agreed && s !== this.id) this.faults.note(s, 'digestMismatch');
    }
  }

  private makeStable(
    seq: number,
    digest: Buffer,
    proof: { sender: number; frame: Uint8Array }[],
  ): void {
    if (seq <= this.lowWater) return;
    this.lowWater = seq;
    this.stableProof = proof;
    if (this.behind && this.behind.seq <= seq) this.behind = undefined;
    // A transfer towards an older checkpoint, or one built on the base we now discard, is moot.
    if (this.transfer && (this.transfer.seq <= seq || this.transfer.st)) {
      const t = this.transfer;
      if (t.seq > seq)
        this.behind ??= { seq: t.seq, digest: t.digest, proof: t.proof, since: -Infinity };
      this.transfer = undefined;
      this.count('stateTransferAbandoned');
    }
    if (this.recovering && this.recoveryHorizon !== undefined && seq >= this.recoveryHorizon) {
      this.recovering = false;
      this.count('recovered');
    }
    // Committed slots stay a while below h so a lagging peer can still catch up from them.
    for (const s of this.log.keys()) if (s <= seq - this.retainBelowStable) this.log.delete(s);
    for (const s of this.checkpointVotes.keys()) if (s < seq) this.checkpointVotes.delete(s);
    for (const s of this.ownCheckpoints.keys()) if (s < seq) this.ownCheckpoints.delete(s);
    for (const s of this.clientSnapshots.keys()) if (s < seq) this.clientSnapshots.delete(s);
    for (const s of this.certs.keys()) if (s <= seq) this.certs.delete(s);
    for (const s of this.bodiesMissing) if (s <= seq) this.bodiesMissing.delete(s);
    // Only reads prune this set as they go: a write-only load would otherwise grow it forever.
    for (const s of this.preparedAhead) if (s <= seq) this.preparedAhead.delete(s);
    this.service.state.discardBelow(seq);
    this.count('stableCheckpoints');
    const table = this.clientSnapshots.get(seq) ?? this.clients;
    this.out.push({
      kind: 'stable',
      seq,
      digest,
      proof: proof.map((p) => p.frame),
      replyTable: encodeReplyTable(table),
      results: keptResults(table),
    });
    this.maybePrePrepare();
  }

  /** A fresher CHECKPOINT frame of `sender` for our stable checkpoint replaces its old one. */
  private refreshProofEntry(sender: number, frame: Uint8Array): void {
    const i = this.stableProof.findIndex((p) => p.sender === sender);
    if (i >= 0) this.stableProof[i] = { sender, frame };
    else this.stableProof.push({ sender, frame });
    this.count('proofRefreshed');
  }

  /**
   * Seam for view changes (issue 6): undo tentative execution back to the latest checkpoint at
   * or below `seq` that is kept, restoring the page store and the last-reply table.
   */
  rollback(seq: number): number {
    const kept = [...this.clientSnapshots.keys()].filter((s) => s <= seq).sort((a, b) => b - a);
    const to = kept[0];
    if (to === undefined || to < this.lowWater)
      throw new RangeError(`no checkpoint at or below ${seq}`);
    this.service.state.rollback(to);
    this.service.stateReplaced?.();
    this.clients.clear();
    for (const [id, r] of this.clientSnapshots.get(to)!) this.clients.set(id, { ...r });
    this.lastExecuted = this.lastCommitted = to;
    for (const slot of this.log.values()) if (slot.seq > to) slot.executed = false;
    return to;
  }

  // ---- View changes (OSDI 1999 section 4.4, with MAC-authenticated proofs) ----------------------

  /** Starts a view change on timeout; a failed one moves on to the next view with twice the wait. */
  private viewChangeTimer(): void {
    for (const [key, req] of this.awaited) {
      // Executed before we heard of it (a late copy), or rolled back and re-run: not awaited.
      const rec = this.clients.get(req.msg.clientId);
      if (
        rec &&
        (req.msg.timestamp < rec.lastTimestamp ||
          (req.msg.timestamp === rec.lastTimestamp && !rec.tentative))
      )
        this.awaited.delete(key);
    }
    if (this.active) {
      if (this.awaited.size === 0) this.viewChangeDeadline = undefined;
      else if (this.viewChangeDeadline === undefined)
        this.viewChangeDeadline = this.now + this.viewChangeTimeoutMs;
    }
    if (this.viewChangeDeadline !== undefined && this.now >= this.viewChangeDeadline) {
      if (this.active && this.catchingUp()) {
        // The primary is making progress with the others; we are the one behind. A view change
        // we started alone would leave us stuck in a view nobody else enters.
        this.count('viewChangeDeferredCatchingUp');
        this.viewChangeDeadline = this.now + this.viewChangeTimeoutMs;
        return;
      }
      this.count('viewChangeTimeout');
      this.startViewChange(this.view + 1);
    }
  }

  /**
   * f + 1 peers (one of them correct) last reported execution beyond ours in our view, within a
   * view-change timeout, or we fetch state. The window is that long, not a few STATUS
   * intervals, because a replica busy installing a fetched checkpoint (seconds of CPU under
   * load) runs its timer before the reports queued meanwhile: with 300 ms a restarted replica
   * timed out alone into a view nobody else entered. A report of not being ahead clears it.
   */
  private catchingUp(): boolean {
    if (this.transfer || this.behind) return true;
    const window = Math.max(3 * this.statusIntervalMs, this.viewChangeTimeoutMs);
    let ahead = 0;
    for (const at of this.peersAheadAt.values()) if (this.now - at <= window) ahead++;
    return ahead >= this.f + 1;
  }

  /** Moves to view `v` (> view): rolls back tentative work and multicasts VIEW-CHANGE. */
  private startViewChange(v: number): void {
    if (v <= this.view && !this.active) return;
    if (v < this.view) return;
    this.failedViewChanges = this.active ? 0 : this.failedViewChanges + 1;
    this.view = v;
    this.out.push({ kind: 'view', view: v });
    this.active = false;
    this.viewChangeDeadline = undefined;
    this.count('viewChangeStarted');
    this.abortTentative();
    this.pending.length = 0;
    this.fillTo = 0;
    this.bodiesMissing.clear();
    this.pendingKeys.clear();
    this.orderedKeys.clear();
    this.forwarded.clear();
    const certs: PreparedCert[] = [];
    // Only within our window: a NEW-VIEW that started above our stable checkpoint may have had
    // us prepare beyond it before we fetched that checkpoint; such certificates are not ours to give.
    for (const [seq, c] of [...this.certs].sort((a, b) => a[0] - b[0]))
      if (seq > this.lowWater && seq <= this.lowWater + this.L)
        certs.push({
          prePrepare: stripped(c.cert.prePrepare, c.view, seq, c.digest),
          prepares: c.cert.prepares,
        });
    const msg: ViewChangeMsg = {
      type: MsgType.ViewChange,
      view: v,
      stable: this.lowWater,
      stableDigest: this.stableDigest!,
      proof: this.stableProof.map((p) => p.frame),
      certs,
    };
    const frame = this.auth.sealMulticast(msg, this.n);
    if (this.recovering) {
      // Our log may lack what we prepared before the crash: vouch for nothing yet (see recovering).
      this.count('viewChangeWithheldRecovering');
      this.withheldViewChange = { frame, msg, since: this.now };
      this.armNewViewTimer();
      this.maybeNewView();
      return;
    }
    this.sendViewChange(msg, frame);
  }

  private sendViewChange(msg: ViewChangeMsg, frame: Uint8Array): void {
    this.withheldViewChange = undefined;
    // What our own log holds must hold together; the MACs the quoted frames carry for us may
    // have gone stale with our keys (the others check their own entries).
    const checked = this.withoutQuotedMacs(() => this.checkViewChange(this.id, msg, frame));
    if (!checked) {
      // Our own log does not hold up (a bug, or state damaged in memory): vouch for nothing
      // rather than send what every correct replica would reject. Counted, never thrown: the
      // certificates came from the network.
      this.count('ownViewChangeInvalid');
      return;
    }
    this.ownViewChange = frame;
    this.lastViewChangeResend = this.now;
    this.send(this.otherReplicas, frame);
    this.viewChanges.set(this.id, checked);
    this.armNewViewTimer();
    this.maybeNewView();
  }

  /**
   * The wait for NEW-VIEW starts only once 2f + 1 replicas asked for the view (OSDI 1999
   * section 4.5.2): a replica that timed out alone does not race ahead through views.
   */
  private armNewViewTimer(): void {
    if (this.active || this.viewChangeDeadline !== undefined) return;
    let asking = 0;
    for (const c of this.viewChanges.values()) if (c.view === this.view) asking++;
    if (asking >= quorum(this.n))
      this.viewChangeDeadline =
        this.now + this.viewChangeTimeoutMs * 2 ** Math.min(this.failedViewChanges + 1, 16);
  }

  /** Undoes tentative execution (it may be aborted) and re-runs what had committed above it. */
  private abortTentative(): void {
    if (this.lastExecuted === this.lastCommitted) return;
    this.count('rollbackTentative');
    const committed = this.lastCommitted;
    this.rollback(committed);
    this.tryExecute();
  }

  private onViewChange(sender: number, msg: ViewChangeMsg, frame: Uint8Array): void {
    if (msg.view < this.view || (msg.view === this.view && this.active)) {
      // The sender missed the NEW-VIEW of a view we are in (or is behind): send it along.
      if (msg.view === this.view) this.forwardNewView(sender);
      return this.count('dropOldViewChange');
    }
    const had = this.viewChanges.get(sender);
    if (had && had.view >= msg.view) return this.count('dupViewChange');
    const checked = this.checkViewChange(sender, msg, frame);
    if (!checked) return this.count('dropBadViewChange');
    this.viewChanges.set(sender, checked);
    // f + 1 replicas want a later view: at least one correct replica timed out, so join
    // (OSDI 1999 section 4.5.2) at the smallest such view.
    const ahead = [...this.viewChanges.values()].filter((c) => c.view > this.view);
    if (ahead.length >= this.f + 1) this.startViewChange(Math.min(...ahead.map((c) => c.view)));
    else if (msg.view === this.view) {
      this.armNewViewTimer();
      this.maybeNewView();
    }
  }

  /** Checks a VIEW-CHANGE's stable checkpoint proof and every prepared certificate in it. */
  private checkViewChange(
    sender: number,
    msg: ViewChangeMsg,
    frame: Uint8Array,
  ): CheckedViewChange | undefined {
    const stableDigest = Buffer.from(msg.stableDigest);
    // What a NEW-VIEW quotes must fit in one (MAX_VIEW_CHANGE_FRAME_BYTES).
    if (frame.length > this.maxViewChangeBytes) return undefined;
    if (msg.stable % this.K !== 0) return undefined;
    if (msg.stable > 0) {
      const signers = new Set<number>();
      for (const p of msg.proof) {
        const f = this.embedded(p);
        if (!f || f.body.type !== MsgType.Checkpoint) return undefined;
        if (f.body.seq !== msg.stable || !stableDigest.equals(f.body.digest)) return undefined;
        signers.add(f.sender);
      }
      if (signers.size < quorum(this.n)) return undefined;
    } else if (msg.proof.length !== 0 || !stableDigest.equals(this.initialDigest)) return undefined;
    const certs = new Map<number, { view: number; digest: Buffer }>();
    for (const c of msg.certs) {
      const ppf = this.embedded(c.prePrepare);
      if (!ppf || ppf.body.type !== MsgType.PrePrepare) return undefined;
      const pp = ppf.body;
      if (!pp.batch) return undefined; // certificates carry digests, not batches
      if (ppf.sender !== primaryOf(pp.view, this.n) || pp.view >= msg.view) return undefined;
      if (pp.seq <= msg.stable || pp.seq > msg.stable + this.L || certs.has(pp.seq))
        return undefined;
      const digest = Buffer.from(pp.batch);
      const backups = new Set<number>();
      for (const p of c.prepares) {
        const f = this.embedded(p);
        if (!f || f.body.type !== MsgType.Prepare || f.sender === ppf.sender) return undefined;
        if (f.body.view !== pp.view || f.body.seq !== pp.seq || !digest.equals(f.body.digest))
          return undefined;
        backups.add(f.sender);
      }
      if (backups.size < 2 * this.f) return undefined;
      certs.set(pp.seq, { view: pp.view, digest });
    }
    const { view, stable, proof } = msg;
    return { sender, view, stable, stableDigest, proof, certs, frame };
  }

  /** Runs `check` with `embedded` skipping the MACs of quoted frames (see skipQuotedMacs). */
  private withoutQuotedMacs<T>(check: () => T): T {
    this.skipQuotedMacs = true;
    try {
      return check();
    } finally {
      this.skipQuotedMacs = false;
    }
  }

  /**
   * A frame quoted inside another: its own multicast authenticator must check for us (unless
   * f + 1 replicas vouch for the NEW-VIEW it is in, `onForwardedNewView`, or it is in our own
   * VIEW-CHANGE, `sendViewChange`).
   */
  private embedded(bytes: Uint8Array): Frame | undefined {
    const f = tryDecodeFrame(bytes);
    if (!f) return undefined;
    if (f.sender >= this.n || f.macs.length !== this.n) return undefined;
    if (this.skipQuotedMacs) return f;
    // Our own entry is blank: a frame of ours carries our MACs for everyone else (under our
    // current or, across a key refresh, previous keys).
    if (f.sender === this.id)
      return this.auth.isOwnMulticast(f.signed, f.macs, this.f + 1) ? f : undefined;
    return this.auth.verifyQuoted(f.sender, f.signed, f.macs) ? f : undefined;
  }

  /**
   * The pre-prepares a NEW-VIEW must carry, computed from 2f + 1 checked VIEW-CHANGEs alike by
   * the new primary and every backup: from the latest stable checkpoint among them (min-s) to
   * the highest prepared sequence number (max-s), the certificate of the highest view for each
   * sequence number, a null request where none is prepared.
   */
  private planNewView(vcs: CheckedViewChange[]): NewViewPlan {
    let best = vcs[0]!;
    for (const c of vcs) if (c.stable > best.stable) best = c;
    const minS = best.stable;
    let maxS = minS;
    for (const c of vcs) for (const seq of c.certs.keys()) maxS = Math.max(maxS, seq);
    const slots: NewViewPlan['slots'] = [];
    for (let seq = minS + 1; seq <= maxS; seq++) {
      let chosen: { view: number; digest: Buffer } | undefined;
      for (const c of vcs) {
        const cert = c.certs.get(seq);
        if (cert && (!chosen || cert.view > chosen.view)) chosen = cert;
      }
      const digest = chosen?.digest ?? NULL_DIGEST;
      const sources = vcs
        .filter((c) => c.certs.get(seq)?.digest.equals(digest))
        .map((c) => c.sender);
      slots.push({ seq, digest, sources });
    }
    return { minS, stableDigest: best.stableDigest, proof: best.proof, slots };
  }

  /** New primary: once 2f + 1 VIEW-CHANGEs for its view are in, multicast NEW-VIEW. */
  private maybeNewView(): void {
    if (this.active || !this.isPrimary) return;
    const vcs = [...this.viewChanges.values()]
      .filter((c) => c.view === this.view)
      .slice(0, quorum(this.n));
    if (vcs.length < quorum(this.n)) return;
    const plan = this.planNewView(vcs);
    // Digests only: the bodies are with the replicas that prepared them (BATCH-FETCH).
    const pps = plan.slots.map((s) => {
      const body: PrePrepareMsg = {
        type: MsgType.PrePrepare,
        view: this.view,
        seq: s.seq,
        nondet: EMPTY,
        entries: [],
        batch: s.digest,
      };
      const auth = prePrepareAuthDigest(this.id, this.view, s.seq, s.digest);
      return this.auth.sealMulticast(body, this.n, auth);
    });
    const nv: NewViewMsg = {
      type: MsgType.NewView,
      view: this.view,
      viewChanges: vcs.map((c) => c.frame),
      prePrepares: pps,
    };
    const frame = this.auth.sealMulticast(nv, this.n);
    this.send(this.otherReplicas, frame);
    this.count('newViewSent');
    this.enterView(this.view, plan, pps, frame);
  }

  /** A NEW-VIEW from the new view's primary that does not check: its proposal is refused. */
  private rejectNewView(primary: number): void {
    this.faults.note(primary, 'rejectedProposal');
    this.count('dropBadNewView');
  }

  private onNewView(sender: number, msg: NewViewMsg, frame: Uint8Array): void {
    if (msg.view < this.view || (msg.view === this.view && this.active))
      return this.count('dropOldNewView');
    if (sender !== primaryOf(msg.view, this.n)) return this.count('dropNewViewNotFromPrimary');
    const vcs: CheckedViewChange[] = [];
    const senders = new Set<number>();
    for (const vf of msg.viewChanges) {
      const f = this.embedded(vf);
      if (!f || f.body.type !== MsgType.ViewChange || f.body.view !== msg.view)
        return this.rejectNewView(sender);
      const c = this.checkViewChange(f.sender, f.body, vf);
      if (!c || senders.has(f.sender)) return this.rejectNewView(sender);
      senders.add(f.sender);
      vcs.push(c);
    }
    if (vcs.length < quorum(this.n)) return this.rejectNewView(sender);
    const plan = this.planNewView(vcs);
    // Every pre-prepare must be the one the VIEW-CHANGEs call for: a NEW-VIEW that drops or
    // replaces a prepared request is rejected.
    if (msg.prePrepares.length !== plan.slots.length) return this.rejectNewView(sender);
    for (let i = 0; i < plan.slots.length; i++) {
      const f = this.embedded(msg.prePrepares[i]!);
      const want = plan.slots[i]!;
      if (!f || f.body.type !== MsgType.PrePrepare || f.sender !== sender)
        return this.rejectNewView(sender);
      if (f.body.view !== msg.view || f.body.seq !== want.seq) return this.rejectNewView(sender);
      if (!f.body.batch || !want.digest.equals(f.body.batch)) return this.rejectNewView(sender);
    }
    if (msg.view > this.view || this.active) {
      // Adopted without our own VIEW-CHANGE: the NEW-VIEW proves 2f + 1 replicas moved on.
      this.view = msg.view;
      this.out.push({ kind: 'view', view: msg.view });
      this.active = false;
      this.abortTentative();
    }
    this.count('newViewAccepted');
    this.enterView(msg.view, plan, msg.prePrepares, frame);
  }

  /** Installs the new view: fresh slots from min-s on, the re-proposed pre-prepares in them. */
  private enterView(
    v: number,
    plan: NewViewPlan,
    prePrepares: Uint8Array[],
    frame: Uint8Array,
  ): void {
    this.view = v;
    this.active = true;
    this.failedViewChanges = 0;
    this.viewChangeDeadline = undefined;
    this.ownViewChange = undefined;
    this.newViewFrame = frame;
    this.lastBatchAt = this.now;
    this.newViewSentAt.clear();
    for (const [r, x] of this.newViewVouches) if (x.view <= v) this.newViewVouches.delete(r);
    this.pending.length = 0;
    this.bodiesMissing.clear();
    this.pendingKeys.clear();
    this.orderedKeys.clear();
    this.forwarded.clear();
    this.waiting.clear();
    for (const [r, c] of this.viewChanges) if (c.view <= v) this.viewChanges.delete(r);
    this.catchUpTo = Math.max(this.catchUpTo, plan.minS);
    // Our checkpoint at min-s may become stable on the proof the VIEW-CHANGE carried.
    const own = this.ownCheckpoints.get(plan.minS);
    if (plan.minS > this.lowWater && own && own.equals(plan.stableDigest)) {
      const proof: { sender: number; frame: Uint8Array }[] = [];
      for (const p of plan.proof) {
        const f = this.embedded(p);
        if (f) proof.push({ sender: f.sender, frame: p });
      }
      this.makeStable(plan.minS, own, proof);
    }
    const maxS = plan.minS + plan.slots.length;
    // The bodies of the re-proposed batches that we hold, looked up before the old slots go.
    const bodies = plan.slots.map((s) => this.heldBatch(s.seq, s.digest));
    // What committed here keeps its requests: a later rollback may have to run it again.
    const done = new Map<number, Slot>();
    for (const [seq, slot] of this.log)
      if (seq > plan.minS) {
        if (seq <= this.lastCommitted && slot.pp) done.set(seq, slot);
        // Separately transmitted requests leave the store when they run; a re-proposal
        // carries only their digests, so the bodies we hold go back in.
        for (const r of slot.pp?.requests ?? [])
          if (r && r.frame.length > this.largeRequestBytes) this.requestStore.set(r.hex, r);
        this.log.delete(seq);
      }
    this.lastAssigned = Math.max(maxS, this.lastCommitted);
    let missing = 0;
    plan.slots.forEach((s, i) => {
      const bytes = prePrepares[i]!;
      const slot = this.slot(s.seq, v);
      const held = bodies[i]?.msg;
      if (held) {
        const body: PrePrepareMsg = { ...held, view: v, seq: s.seq };
        const frame = reframe(bytes, body);
        this.installReproposal(slot, body, frame, {
          digests: bodies[i]!.digests,
          digest: s.digest,
        });
      } else {
        slot.header = { frame: bytes, digest: s.digest, sources: s.sources };
        this.bodiesMissing.add(s.seq);
        missing++;
      }
      this.keepCommitted(slot, done.get(s.seq));
    });
    if (missing > 0) {
      this.count('reproposedBatchMissing', missing);
      this.fetchBatches();
    }
    // Requests known from before the view change go to the new primary at once rather than at
    // the clients' next (backed-off) retransmission; the new primary queues its own.
    if (this.isPrimary) {
      const reproposed = new Set<string>();
      for (const s of plan.slots) {
        const pp = this.log.get(s.seq)?.pp;
        for (const d of pp?.requestDigests ?? []) reproposed.add(d.toString('hex'));
        // A retransmission of a re-proposed request must not be ordered a second time.
        for (const r of pp?.requests ?? [])
          if (r) this.orderedKeys.add(`${r.msg.clientId}:${r.msg.timestamp}`);
      }
      for (const [key, req] of this.awaited) {
        const rec = this.clients.get(req.msg.clientId);
        if (rec && req.msg.timestamp <= rec.lastTimestamp) continue;
        if (this.pendingKeys.has(key) || reproposed.has(req.hex)) continue;
        if (this.pending.length >= MAX_PENDING_REQUESTS) break;
        this.pendingKeys.add(key);
        this.pending.push(req);
      }
    } else {
      for (const [key, req] of this.awaited)
        if (req.frame.length <= this.largeRequestBytes) {
          this.forwarded.add(key);
          this.send([this.primary], req.frame);
        }
    }
    this.tryExecute();
  }

  /**
   * A re-proposed batch with its body: the new primary takes it as its own proposal, a backup
   * as the primary's (its value agreed already: no nondet check).
   */
  private installReproposal(
    slot: Slot,
    msg: PrePrepareMsg,
    frame: Uint8Array,
    batch: BatchDigests,
  ): void {
    const wasMissing = this.bodiesMissing.delete(slot.seq);
    if (primaryOf(slot.view, this.n) !== this.id) return this.onPrePrepare(msg, frame, true, batch);
    const requests = msg.entries.map((e, i) =>
      // Checked by the replicas that prepared it (their certificates name its digest).
      'inline' in e
        ? this.agreedInlineRequest(e.inline, batch.digests[i]!)
        : this.requestStore.get(batch.digests[i]!.toString('hex')),
    );
    slot.pp = prePrepared(msg, frame, batch.digest, batch.digests, requests);
    slot.lastProgress = this.now;
    if (wasMissing) {
      // Filled after the NEW-VIEW: its requests, queued meanwhile, must not be ordered again.
      const keys = new Set(
        requests.flatMap((r) => (r ? [`${r.msg.clientId}:${r.msg.timestamp}`] : [])),
      );
      for (const k of keys) this.orderedKeys.add(k);
      const queued = this.pending.splice(0);
      for (const r of queued) {
        const k = `${r.msg.clientId}:${r.msg.timestamp}`;
        if (keys.has(k)) this.pendingKeys.delete(k);
        else this.pending.push(r);
      }
    }
    this.afterPrePrepare(slot);
  }

  /**
   * A batch body with this digest that we hold at `seq`: the null request, the pre-prepare in
   * our log (or one we refused), or the one in our prepared certificate.
   */
  private heldBatch(
    seq: number,
    digest: Buffer,
  ): { msg: PrePrepareMsg; digests: Buffer[]; pp?: Slot['pp'] } | undefined {
    if (digest.equals(NULL_DIGEST))
      return {
        msg: { type: MsgType.PrePrepare, view: 0, seq, nondet: EMPTY, entries: [] },
        digests: [],
      };
    const slot = this.log.get(seq);
    for (const pp of [slot?.pp, slot?.refused])
      if (pp && pp.digest.equals(digest)) return { msg: pp.msg, digests: pp.requestDigests, pp };
    const c = this.certs.get(seq);
    if (!c || !c.digest.equals(digest)) return undefined;
    const msg = decodeFrame(c.cert.prePrepare).body as PrePrepareMsg;
    return { msg, digests: requestDigests(msg) };
  }

  /**
   * Asks for the bodies of the batches this view re-proposed that we lack, each of one replica
   * whose certificate named it (it prepared the batch), another one at each round (one may
   * have crashed, or lie).
   */
  private fetchBatches(): void {
    this.lastBatchFetch = this.now;
    this.bodiesMissing.clear();
    const wanted = new Map<number, BatchFetchMsg['wanted']>();
    const round = this.batchFetchRound;
    for (const slot of this.log.values()) {
      const h = slot.header;
      if (!h || slot.pp || slot.view !== this.view) continue;
      const from = h.sources.filter((r) => r !== this.id);
      const peers = from.length > 0 ? from : this.otherReplicas;
      const peer = peers[(slot.seq + round) % peers.length]!;
      if (!wanted.has(peer)) wanted.set(peer, []);
      wanted.get(peer)!.push({ seq: slot.seq, digest: h.digest });
      this.bodiesMissing.add(slot.seq);
    }
    if (wanted.size === 0) return this.maybePrePrepare();
    this.batchFetchRound++;
    this.count('batchFetchSent');
    for (const [peer, list] of wanted) {
      const msg: BatchFetchMsg = { type: MsgType.BatchFetch, view: this.view, wanted: list };
      this.send([peer], this.auth.sealTo(msg, peer));
    }
  }

  /**
   * Sends a peer the batch bodies it asked for that we hold, as PRE-PREPAREs of its view: one
   * answer per half re-send interval, at most MAX_FETCH_REPLY_BYTES of bodies (a bound on what
   * a faulty replica can make us send).
   */
  private onBatchFetch(sender: number, msg: BatchFetchMsg): void {
    const last = this.batchFetchAnsweredAt.get(sender) ?? -Infinity;
    if (this.now - last < this.resendIntervalMs / 2) return this.count('batchFetchHeld');
    this.batchFetchAnsweredAt.set(sender, this.now);
    let bytes = 0;
    for (const w of msg.wanted) {
      if (bytes >= MAX_FETCH_REPLY_BYTES) break;
      const held = this.heldBatch(w.seq, Buffer.from(w.digest));
      if (!held) continue;
      const body: PrePrepareMsg = { ...held.msg, view: msg.view, seq: w.seq };
      const frame = this.auth.sealTo(body, sender);
      this.send([sender], frame);
      bytes += frame.length;
      // Separately transmitted requests travel as the clients' own frames.
      held.digests.forEach((d, i) => {
        if (!('digest' in held.msg.entries[i]!)) return;
        const r = held.pp?.requests[i] ?? this.requestStore.get(d.toString('hex'));
        if (r) {
          this.send([sender], r.frame);
          bytes += r.frame.length;
        }
      });
      this.count('batchBodySent');
    }
  }

  /**
   * A re-proposed slot we had committed already (same digest: what committed anywhere survives
   * a view change) stays committed and executed; we still prepare and commit it in the new view
   * for the replicas that need our messages.
   */
  private keepCommitted(slot: Slot, old: Slot | undefined): void {
    if (!old?.pp || !slot.pp) return;
    if (!old.pp.digest.equals(slot.pp.digest)) {
      // Only possible with more than f faulty replicas: keep what we committed, and say so.
      this.count('newViewConflictsWithCommitted');
      this.log.set(old.seq, old);
      return;
    }
    slot.pp.requests = old.pp.requests;
    slot.committed = old.committed;
    slot.executed = old.executed;
    // It may have waited for a request body we held all along in the old slot.
    if (this.waiting.has(slot.seq)) this.afterPrePrepare(slot);
  }

  /**
   * Sends the NEW-VIEW of the current view to a peer still behind (at most once per re-send
   * interval), sealed to it under today's keys: the NEW-VIEW's own MACs date from the view
   * change and may no longer check there.
   */
  private forwardNewView(peer: number): void {
    if (!this.active || !this.newViewFrame) return;
    const last = this.newViewSentAt.get(peer) ?? -Infinity;
    if (this.now - last < this.resendIntervalMs) return;
    this.newViewSentAt.set(peer, this.now);
    this.count('forwardNewView');
    const msg: ForwardedNewViewMsg = { type: MsgType.ForwardedNewView, newView: this.newViewFrame };
    this.send([peer], this.auth.sealTo(msg, peer));
  }

  /**
   * A NEW-VIEW forwarded by `sender`. Checked as if it came from the primary; if its MACs fail
   * here (keys refreshed since the view change, or we restarted), it still counts as the
   * sender's word that it accepted this NEW-VIEW, and f + 1 replicas saying so for the same bytes
   * include a correct one that checked every MAC: we then take it with every check but the MACs.
   */
  private onForwardedNewView(sender: number, bytes: Uint8Array): void {
    const f = tryDecodeFrame(bytes);
    if (!f) return this.count('dropBadNewView');
    const nv = f.body;
    if (nv.type !== MsgType.NewView) return this.count('dropBadNewView');
    if (nv.view < this.view || (nv.view === this.view && this.active))
      return this.count('dropOldNewView');
    if (this.embedded(bytes)) {
      this.onNewView(f.sender, nv, bytes);
      if (this.active && this.view === nv.view) return;
    }
    const hex = sha256(bytes).toString('hex');
    this.newViewVouches.set(sender, { view: nv.view, hex });
    let vouchers = 0;
    for (const v of this.newViewVouches.values()) if (v.hex === hex) vouchers++;
    if (vouchers < this.f + 1) return this.count('newViewVouched');
    this.withoutQuotedMacs(() => this.onNewView(f.sender, nv, bytes));
    if (this.active && this.view === nv.view) this.count('newViewAcceptedOnVouches');
  }

  // ---- State transfer (OSDI 1999 section 4.3 / TOCS 2002 section 5.3.2) -------------------------

  /**
   * A known stable checkpoint above what we executed: wait a little for the log to bring us
   * there (a replica slightly behind gets the slots re-sent), then fetch its state. Beyond our
   * high water mark the log cannot help, so fetch at once. An unanswered fetch goes to the next
   * replica that vouched for the checkpoint.
   */
  private stateTransferTimer(): void {
    const b = this.behind;
    if (b && !this.transfer) {
      if (b.seq <= this.lastCommitted) this.behind = undefined;
      else if (b.seq > this.highWater || this.now - b.since >= this.stateTransferDelayMs) {
        this.behind = undefined;
        this.startTransfer(b.seq, b.digest, b.proof);
      }
    }
    if (b && this.transfer && b.seq > this.transfer.seq) {
      // The others moved on past the checkpoint we fetch (and may discard it): aim at the newer one.
      this.transfer = undefined;
      this.behind = undefined;
      this.count('stateTransferRetarget');
      this.startTransfer(b.seq, b.digest, b.proof);
    }
    const t = this.transfer;
    if (t && this.now - t.sentAt >= t.timeoutMs) {
      this.count('fetchTimeout');
      t.timeoutMs = Math.min(t.timeoutMs * 2, MAX_FETCH_TIMEOUT_MS);
      t.source = (t.source + 1) % t.sources.length;
      this.sendFetch();
    }
  }

  private startTransfer(
    seq: number,
    digest: Buffer,
    proof: { sender: number; frame: Uint8Array }[],
    full = false,
  ): void {
    if (seq <= this.lowWater) return;
    if (this.transfer && this.transfer.seq >= seq && !full) return;
    if (!(this.service.state instanceof PageStore)) return this.count('stateTransferUnsupported');
    const sources = proof.map((p) => p.sender).filter((r) => r !== this.id);
    if (sources.length === 0) return;
    this.transfer = {
      seq,
      digest,
      proof,
      sources,
      source: Math.floor(this.now) % sources.length,
      sentAt: this.now,
      timeoutMs: this.fetchTimeoutMs,
      startedAt: this.now,
      full,
      bytes: 0,
      rejected: 0,
    };
    this.count('stateTransferStarted');
    this.sendFetch();
  }

  private sendFetch(): void {
    const t = this.transfer!;
    t.sentAt = this.now;
    const requests = t.st
      ? t.st
          .pending()
          .slice(0, MAX_FETCH_PIECES)
          .map((r) => encodeTransferMessage(r))
      : [];
    const msg: FetchMsg = { type: MsgType.Fetch, seq: t.seq, meta: !t.st, requests };
    this.send([t.sources[t.source]!], this.auth.sealTo(msg, t.sources[t.source]!));
  }

  /** Serves pieces of a kept checkpoint to a replica that fetches it. */
  private onFetch(sender: number, msg: FetchMsg): void {
    const store = this.service.state;
    const table = this.clientSnapshots.get(msg.seq);
    const root = store.digestAt(msg.seq);
    const reply: FetchReplyMsg = {
      type: MsgType.FetchReply,
      seq: msg.seq,
      flags: 0,
      meta: EMPTY,
      pieces: [],
    };
    // Only checkpoints a quorum vouched for (at or above our stable one) are served.
    if (!(store instanceof PageStore) || !table || !root || msg.seq < this.lowWater) {
      reply.flags = FETCH_MISSING;
      this.count('fetchMissing');
    } else {
      if (msg.meta) {
        reply.flags = FETCH_HAS_META;
        reply.meta = Buffer.concat([root, encodeReplyTable(table)]);
      }
      let bytes = reply.meta.length;
      for (const raw of msg.requests) {
        const d = decodeTransferMessage(raw);
        if (
          !d.ok ||
          (d.message.kind !== 'partition' && d.message.kind !== 'page') ||
          'data' in d.message ||
          'children' in d.message ||
          d.message.seq !== msg.seq
        ) {
          this.count('dropBadFetch');
          continue;
        }
        let piece: Uint8Array;
        try {
          piece = encodeTransferMessage(serveFetch(store, d.message));
        } catch (e) {
          if (!(e instanceof RangeError)) throw e;
          this.count('dropBadFetch');
          continue;
        }
        if (bytes + piece.length > MAX_FETCH_REPLY_BYTES) break;
        bytes += piece.length;
        reply.pieces.push(piece);
      }
      this.count('fetchServed');
    }
    this.send([sender], this.auth.sealTo(reply, sender));
  }

  private onFetchReply(sender: number, msg: FetchReplyMsg): void {
    const t = this.transfer;
    if (!t || msg.seq !== t.seq || !t.sources.includes(sender))
      return this.count('dropUnexpectedFetchReply');
    if (msg.flags & FETCH_MISSING) {
      // That replica moved past the checkpoint: ask another; newer proofs will come our way.
      t.source = (t.sources.indexOf(sender) + 1) % t.sources.length;
      return this.sendFetch();
    }
    let progressed = false;
    if (!t.st) {
      if (!(msg.flags & FETCH_HAS_META)) return this.count('dropUnexpectedFetchReply');
      const table =
        msg.meta.length >= 32 ? decodeReplyTable(msg.meta.subarray(32), this.view) : undefined;
      // The checkpoint digest is SHA-256(root ‖ reply table): the meta must hash to it.
      if (!table || !sha256(msg.meta).equals(t.digest)) return this.rejectPiece(t, sender);
      t.root = Buffer.from(msg.meta.subarray(0, 32));
      t.table = table;
      t.bytes += msg.meta.length;
      const store = this.service.state as PageStore;
      const base =
        t.full || !store.checkpoints().includes(this.lowWater) ? undefined : this.lowWater;
      t.st = new StateTransfer(store, { seq: t.seq, digest: t.root }, base ?? -1);
      progressed = true;
    }
    for (const raw of msg.pieces) {
      const d = decodeTransferMessage(raw);
      const v = d.ok ? t.st.receive(d.message) : { ok: false as const, reason: 'malformed' };
      if (!v.ok) {
        // A piece we already have (a late reply to an earlier fetch) is no fault.
        if (v.reason.endsWith('not requested')) {
          this.count('transferPieceDuplicate');
          continue;
        }
        // Stale or forged: another replica is asked for it on the next fetch.
        this.rejectPiece(t, sender);
        if (this.transfer !== t) return;
        continue;
      }
      progressed = true;
      t.bytes += raw.length;
    }
    if (t.st.done) return this.finishTransfer(t);
    // A late reply from a replica asked before still counts; ask again only if it made progress
    // or came from the replica we wait for (else that one's answer is still on its way).
    if (progressed || sender === t.sources[t.source]) {
      t.timeoutMs = this.fetchTimeoutMs;
      t.source = t.sources.indexOf(sender);
      this.sendFetch();
    }
  }

  private rejectPiece(t: Transfer, sender: number): void {
    this.count('transferPieceRejected');
    t.rejected++;
    t.source = (t.sources.indexOf(sender) + 1) % t.sources.length;
    // Pieces that fail against every replica's copy: our own base checkpoint is what is wrong
    // (its pages were damaged in place). Fetch everything instead.
    if (!t.full && t.rejected > 2 * t.sources.length) {
      this.count('stateTransferFull');
      this.transfer = undefined;
      this.startTransfer(t.seq, t.digest, t.proof, true);
    }
  }

  /** Installs the fetched checkpoint as our stable state and re-runs the log above it. */
  private finishTransfer(t: Transfer): void {
    this.transfer = undefined;
    const pages = t.st!.pagesFetched;
    t.st!.apply();
    this.service.stateReplaced?.();
    this.clients.clear();
    for (const [id, r] of t.table!) this.clients.set(id, r);
    for (const s of this.ownCheckpoints.keys())
      if (s > this.lowWater) this.ownCheckpoints.delete(s);
    for (const s of this.clientSnapshots.keys())
      if (s > this.lowWater) this.clientSnapshots.delete(s);
    this.ownCheckpoints.set(t.seq, t.digest);
    this.clientSnapshots.set(t.seq, copyTable(this.clients));
    this.lastExecuted = this.lastCommitted = t.seq;
    this.lastAssigned = Math.max(this.lastAssigned, t.seq);
    for (const [seq, slot] of this.log) {
      if (seq <= t.seq) this.log.delete(seq);
      else slot.executed = false;
    }
    if (t.proof.length >= quorum(this.n)) this.makeStable(t.seq, t.digest, t.proof);
    else {
      // A checkpoint f + 1 vouched for (recordCheckpointVote): our vote may be what makes it
      // stable.
      const msg: CheckpointMsg = { type: MsgType.Checkpoint, seq: t.seq, digest: t.digest };
      const frame = this.auth.sealMulticast(msg, this.n);
      this.send(this.otherReplicas, frame);
      this.recordCheckpointVote(this.id, t.seq, t.digest, frame);
    }
    // Give the log a full timeout to bring us level before suspecting the primary.
    if (this.viewChangeDeadline !== undefined && this.active)
      this.viewChangeDeadline = this.now + this.viewChangeTimeoutMs;
    this.count('stateTransferDone');
    this.count('transferPagesFetched', pages);
    this.count('transferBytes', t.bytes);
    this.out.push({
      kind: 'transferred',
      seq: t.seq,
      pages,
      bytes: t.bytes,
      ms: this.now - t.startedAt,
    });
    this.tryExecute();
  }

  // ---- Lagging peers ---------------------------------------------------------------------------

  private onStatus(sender: number, msg: StatusMsg): void {
    if (sender === this.id) return;
    if (this.recovering && this.recoveryHorizon === undefined) {
      // 2f + 1 others include a correct replica that executed up to every checkpoint we made
      // stable before the crash; we prepared nothing beyond the highest report plus L.
      this.recoveryReports.set(sender, msg.lastExecuted);
      if (this.recoveryReports.size >= quorum(this.n))
        this.recoveryHorizon = Math.max(...this.recoveryReports.values()) + this.L;
    }
    // Checkpoints carry no view: the proof's frames, with their multicast authenticators, are
    // valid for the peer as they stand and show it where to fetch state from.
    if (msg.stable < this.lowWater)
      for (const p of this.stableProof) if (p.sender !== sender) this.send([sender], p.frame);
    if (msg.view < this.view && this.active) this.forwardNewView(sender);
    if (msg.view !== this.view) return this.count('dropWrongView');
    if (this.active && msg.lastExecuted > this.lastCommitted)
      this.peersAheadAt.set(sender, this.now);
    else this.peersAheadAt.delete(sender);
    const previous = this.reportedExecuted.get(sender);
    this.reportedExecuted.set(sender, msg.lastExecuted);
    if (msg.lastExecuted >= this.lastCommitted) return;
    // Under load every peer is a batch or two behind what we committed, its messages in flight:
    // re-sending those doubled a tenth of all PRE-PREPAREs (measured: 60-77 of 547 batches per
    // replica). A peer needs them only when it has stopped, or when the first slot it lacks
    // committed here more than a STATUS interval ago.
    const next = this.log.get(msg.lastExecuted + 1);
    if (
      previous !== undefined &&
      msg.lastExecuted > previous &&
      next !== undefined &&
      this.now - next.lastProgress < this.statusIntervalMs
    )
      return this.count('peerBehindInFlight');
    const oldest = this.lowWater - this.retainBelowStable;
    if (msg.lastExecuted < oldest || next === undefined) {
      // Behind our log: only state transfer can bring it forward.
      this.count('peerNeedsStateTransfer');
      return;
    }
    // The same slots again only once the peer had time to use them (it reports every 100 ms;
    // re-sending on each report buried a lagging replica under duplicates).
    const prev = this.resentTo.get(sender);
    if (prev && prev.from === msg.lastExecuted && this.now - prev.at < 2 * this.resendIntervalMs)
      return this.count('resendToLaggingPeerHeld');
    this.resentTo.set(sender, { from: msg.lastExecuted, at: this.now });
    const last = Math.min(this.lastCommitted, msg.lastExecuted + MAX_RESEND_SLOTS);
    for (let s = msg.lastExecuted + 1; s <= last; s++) {
      const slot = this.log.get(s);
      if (!slot?.pp) continue;
      this.count('resendToLaggingPeer');
      if (sender !== primaryOf(slot.view, this.n)) {
        this.send([sender], this.prePrepareFrameFor(slot));
        this.sendLargeRequests([sender], slot);
      }
      // Sealed afresh, not the frame we keep: a peer that replaced its keys since (a restart)
      // drops a frame sealed under the old ones. Multicast authenticators: a prepare may end up
      // in the peer's prepared certificate.
      if (slot.sentPrepare)
        this.send([sender], this.auth.sealMulticast(this.phaseMsg(MsgType.Prepare, slot), this.n));
      if (slot.sentCommit)
        this.send([sender], this.auth.sealMulticast(this.phaseMsg(MsgType.Commit, slot), this.n));
    }
  }

  /**
   * A slot's PRE-PREPARE to re-send. The frame as kept carries MACs under the keys of its time,
   * which a peer that replaced its keys since (a restart, or two refreshes) refuses: a lagging
   * replica restarted from disk dropped every re-sent slot as a bad MAC, could not catch up
   * until the next checkpoint, and timed out into a view change of its own. The primary re-seals
   * its own; anyone else can only pass the primary's frame on.
   */
  private prePrepareFrameFor(slot: Slot): Uint8Array {
    const pp = slot.pp!;
    if (this.id !== primaryOf(slot.view, this.n)) return pp.frame;
    const auth = prePrepareAuthDigest(this.id, slot.view, slot.seq, pp.digest);
    return this.auth.sealMulticast(pp.msg, this.n, auth);
  }

  /** Separately transmitted requests of a slot, for peers that may have missed the client's copy. */
  private sendLargeRequests(to: number[], slot: Slot): void {
    const pp = slot.pp!;
    pp.msg.entries.forEach((e, i) => {
      const r = pp.requests[i];
      if ('digest' in e && r) this.send(to, r.frame);
    });
  }

  // ---- Helpers -------------------------------------------------------------------------------

  private slot(seq: number, view = this.view): Slot {
    let s = this.log.get(seq);
    if (!s) {
      s = {
        seq,
        view,
        prepares: new Map(),
        commits: new Map(),
        prepareFrames: new Map(),
        sentPrepare: false,
        sentCommit: false,
        prepared: false,
        committed: false,
        executed: false,
        lastProgress: this.now,
      };
      this.log.set(seq, s);
    }
    return s;
  }

  private multicast(body: Body): void {
    this.send(this.otherReplicas, this.auth.sealMulticast(body, this.n));
  }

  private send(to: number[], bytes: Uint8Array): void {
    // Held commits go first, in the same socket write as this message (the transport writes
    // the frames of one event together).
    if (this.heldCommits.length > 0 && to[0]! < this.n) this.releaseCommits();
    this.out.push({ kind: 'send', to, bytes });
  }

  private count(reason: string, k = 1): void {
    this.stats[reason] = (this.stats[reason] ?? 0) + k;
  }

  /** Digest of the state at the last stable checkpoint. */
  get stableDigest(): Uint8Array | undefined {
    return this.ownCheckpoints.get(this.lowWater);
  }

  /** The digests of the checkpoints this replica took and still keeps, by sequence number. */
  get checkpointDigests(): ReadonlyMap<number, Uint8Array> {
    return this.ownCheckpoints;
  }
}

/** See RestorePoint.results. */
function keptResults(table: Map<number, ClientRecord>): { clientId: number; result: Uint8Array }[] {
  const out: { clientId: number; result: Uint8Array }[] = [];
  for (const [clientId, r] of table)
    if (r.result !== undefined && r.result.length <= MAX_RESTORED_RESULT_BYTES)
      out.push({ clientId, result: r.result });
  return out;
}

/**
 * A restore point without its view, as the host persists it next to the page store's checkpoint:
 *   u64 seq, u32 length + reply table, u16 count + count x (u32 length + proof frame), digest[32],
 *   then, if there are results, u32 count + count x (u32 client id, u32 length + result).
 */
export function encodeRestorePoint(p: Omit<RestorePoint, 'view'>): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(12);
  head.writeUInt32BE(Math.floor(p.seq / 0x100000000), 0);
  head.writeUInt32BE(p.seq >>> 0, 4);
  head.writeUInt32BE(p.replyTable.length, 8);
  parts.push(head, Buffer.from(p.replyTable));
  const count = Buffer.alloc(2);
  count.writeUInt16BE(p.proof.length);
  parts.push(count);
  for (const f of p.proof) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(f.length);
    parts.push(len, Buffer.from(f));
  }
  parts.push(Buffer.from(p.initialDigest));
  if (p.results && p.results.length > 0) {
    const n = Buffer.alloc(4);
    n.writeUInt32BE(p.results.length);
    parts.push(n);
    for (const r of p.results) {
      const h = Buffer.alloc(8);
      h.writeUInt32BE(r.clientId, 0);
      h.writeUInt32BE(r.result.length, 4);
      parts.push(h, Buffer.from(r.result));
    }
  }
  return Buffer.concat(parts);
}

/** Parses `encodeRestorePoint`'s bytes; undefined if they are malformed. */
export function decodeRestorePoint(bytes: Uint8Array): Omit<RestorePoint, 'view'> | undefined {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  try {
    let at = 0;
    const hi = b.readUInt32BE(at);
    const seq = hi * 0x100000000 + b.readUInt32BE(at + 4);
    const tableLen = b.readUInt32BE(at + 8);
    at += 12;
    if (hi > 0x1fffff || at + tableLen > b.length) return undefined;
    const replyTable = new Uint8Array(b.subarray(at, at + tableLen));
    at += tableLen;
    const count = b.readUInt16BE(at);
    at += 2;
    const proof: Uint8Array[] = [];
    for (let i = 0; i < count; i++) {
      const len = b.readUInt32BE(at);
      at += 4;
      if (at + len > b.length) return undefined;
      proof.push(new Uint8Array(b.subarray(at, at + len)));
      at += len;
    }
    if (at + 32 > b.length) return undefined;
    const initialDigest = new Uint8Array(b.subarray(at, at + 32));
    at += 32;
    // Written before results were kept: nothing follows the digest.
    if (at === b.length) return { seq, replyTable, proof, initialDigest };
    const n = b.readUInt32BE(at);
    at += 4;
    const results: { clientId: number; result: Uint8Array }[] = [];
    for (let i = 0; i < n; i++) {
      const clientId = b.readUInt32BE(at);
      const len = b.readUInt32BE(at + 4);
      at += 8;
      if (len > MAX_RESTORED_RESULT_BYTES || at + len > b.length) return undefined;
      results.push({ clientId, result: new Uint8Array(b.subarray(at, at + len)) });
      at += len;
    }
    if (at !== b.length) return undefined;
    return { seq, replyTable, proof, initialDigest, results };
  } catch (e) {
    if (e instanceof RangeError) return undefined;
    throw e;
  }
}

/** Bytes of one reply-table entry: client id u32, timestamp u64, result digest. */
const TABLE_ENTRY_BYTES = 4 + 8 + 32;

/**
 * The last-reply table as it is hashed into the checkpoint digest and carried by state transfer
 * and restore points: entries ascending by client id.
 */
export function encodeReplyTable(
  clients: Map<number, { lastTimestamp: number; resultDigest: Buffer }>,
): Buffer {
  const ids = [...clients.keys()].sort((a, b) => a - b);
  const table = Buffer.allocUnsafe(ids.length * TABLE_ENTRY_BYTES);
  let p = 0;
  for (const id of ids) {
    const r = clients.get(id)!;
    table.writeUInt32BE(id, p);
    table.writeUInt32BE(Math.floor(r.lastTimestamp / 0x100000000), p + 4);
    table.writeUInt32BE(r.lastTimestamp >>> 0, p + 8);
    r.resultDigest.copy(table, p + 12);
    p += TABLE_ENTRY_BYTES;
  }
  return table;
}

/** Parses a reply table (committed state: results unknown, replies carry digests); undefined if malformed. */
function decodeReplyTable(bytes: Uint8Array, view: number): Map<number, ClientRecord> | undefined {
  if (bytes.length % TABLE_ENTRY_BYTES !== 0) return undefined;
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Map<number, ClientRecord>();
  let prev = -1;
  for (let p = 0; p < b.length; p += TABLE_ENTRY_BYTES) {
    const id = b.readUInt32BE(p);
    const hi = b.readUInt32BE(p + 4);
    if (id <= prev || hi > 0x1fffff) return undefined;
    prev = id;
    out.set(id, {
      lastTimestamp: hi * 0x100000000 + b.readUInt32BE(p + 8),
      result: undefined,
      resultDigest: Buffer.from(b.subarray(p + 12, p + TABLE_ENTRY_BYTES)),
      view,
      tentative: false,
    });
  }
  return out;
}

function copyTable(clients: Map<number, ClientRecord>): Map<number, ClientRecord> {
  const snap = new Map<number, ClientRecord>();
  for (const [id, r] of clients) snap.set(id, { ...r });
  return snap;
}

/** A pre-prepare frame stripped to its batch digest (its MACs stand, see PrePrepareMsg). */
function stripped(frame: Uint8Array, view: number, seq: number, batch: Buffer): Buffer {
  return reframe(frame, {
    type: MsgType.PrePrepare,
    view,
    seq,
    nondet: EMPTY,
    entries: [],
    batch,
  });
}

/** Digest of a null request (a gap a NEW-VIEW fills): no nondet value, no requests. */
const NULL_DIGEST = batchDigest(EMPTY, []);
