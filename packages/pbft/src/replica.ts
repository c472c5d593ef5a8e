/**
 * The PBFT replica core (OSDI 1999 section 4; TOCS 2002 sections 2-5): a pure, synchronous
 * state machine. Messages and clock ticks go in; frames to send and events (executions, stable
 * checkpoints) come out. No sockets, timers, promises or Date inside. `Replica` dispatches each
 * message and tick to its handler and joins the parts under `replica/`, each of which owns its
 * state (docs/architecture.md, "The replica core").
 */
import {
  CHECKPOINT_INTERVAL,
  FETCH_TIMEOUT_MS,
  MAX_FRAME_BYTES,
  MAX_FETCH_REPLY_BYTES,
  STATE_TRANSFER_DELAY_MS,
  LARGE_REQUEST_BYTES,
  LOG_WINDOW,
  MAX_BATCH_BYTES,
  MAX_BATCH_REQUESTS,
  MAX_OUTSTANDING_PREPREPARES,
  MAX_RESULT_BYTES,
  IDLE_CHECKPOINT_MS,
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
  Body,
  CheckpointMsg,
  DecodeError,
  FetchMsg,
  FetchReplyMsg,
  ForwardedNewViewMsg,
  Frame,
  MsgType,
  NewViewMsg,
  PrePrepareMsg,
  PreparedCert,
  PrepareMsg,
  RequestMsg,
  StatusMsg,
  ViewChangeMsg,
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
import type { Action, PersistedCert, ReplicaOptions } from './replica/api';
import { Outbox } from './replica/outbox';
import { ReplyGroups, ReplySender } from './replica/replies';
import { BatchFetch } from './replica/batch-fetch';
import { ViewChangeSet } from './replica/view-changes';
import { InvariantError, InvariantInput, brokenInvariant } from './replica/invariants';
import { Recovery, decodeCommitted, decodePersistedCert } from './replica/recovery';
import { Resender } from './replica/resend';
import { AgreementLog } from './replica/log';
import { StateFetcher, Transfer } from './replica/state-transfer';
import { answerFetch } from './replica/transfer-server';
import { RequestQueue, requestKey } from './replica/requests';
import { ClientTable } from './replica/client-table';
import { Checkpoints, ProofEntry, VoteOutcome } from './replica/checkpoints';
import type { ReplicaStats } from './replica/counters';
import {
  CheckedViewChange,
  NULL_DIGEST,
  NewViewPlan,
  checkViewChange,
  planNewView,
  stripped,
} from './replica/new-view';
import { ClientRecord, decodeReplyTable } from './replica/reply-table';
import {
  BatchDigests,
  ResolvedRequest,
  Slot,
  largeFrames,
  phaseMsg,
  prePrepared,
  resolved,
} from './replica/slot';

export type { Action, PersistedCert, ReplicaOptions, RestorePoint } from './replica/api';
export type { ReplicaStats } from './replica/counters';
export type { Slot } from './replica/slot';
export { encodeRestorePoint, decodeRestorePoint } from './replica/restore-point';
export { encodeReplyTable } from './replica/reply-table';
export { InvariantError } from './replica/invariants';
export { REPLICA_COUNTERS } from './replica/counters';
export type { ReplicaCounter } from './replica/counters';

const EMPTY = new Uint8Array(0);

export class Replica {
  readonly n: number;
  readonly f: number;
  readonly id: number;
  /** What this replica observed from each replica, by sender (docs/operations.md, "Faults"). */
  readonly faults: FaultLedger;
  /** Digest of checkpoint 0, the initial state: stable without proof. */
  readonly initialDigest: Buffer;

  // The parts, each owning its state (docs/architecture.md, "The replica core").
  /** This step's clock, actions and counters. */
  private readonly io: Outbox;
  /** Queued, stored, awaited and relayed requests, and held reads. */
  private readonly requests: RequestQueue;
  /** The last-reply table, and its copies as of each kept checkpoint. */
  private readonly clients = new ClientTable();
  /** Slots, quorums over them, and our prepared certificates. */
  private readonly agreement: AgreementLog;
  /** Our checkpoints, everyone's votes, the stable checkpoint and the water marks. */
  private readonly cp: Checkpoints;
  /** Everyone's VIEW-CHANGEs, ours, and the NEW-VIEW of the current view. */
  private readonly viewChanges = new ViewChangeSet();
  /** Bodies of re-proposed batches we lack, and the fetching of them. */
  private readonly batchFetch = new BatchFetch();
  /** The checkpoint we are behind, and the fetch of its state. */
  private readonly fetcher: StateFetcher;
  /** Re-sends of stuck slots and to lagging peers, and what each peer reported. */
  private readonly resender: Resender;
  /** What a replica restarted from disk refrains from until it has caught up. */
  private readonly recovery: Recovery;
  private readonly replies: ReplySender;

  // The replica's own state: where it is in the view and in the sequence.
  view = 0;
  /** False between sending a VIEW-CHANGE for `view` and accepting its NEW-VIEW. */
  active = true;
  lastExecuted = 0;
  lastCommitted = 0;
  private lastAssigned = 0;
  /** When this primary last ordered a request; null batches follow up to `fillTo`. */
  private lastBatchAt = 0;
  private fillTo = 0;
  /** Slots up to here may still commit in an earlier view (catch-up below the new view's start). */
  private catchUpTo = 0;
  /** Views changed to without success since the last active view (timeout doubles with each). */
  private failedViewChanges = 0;
  private viewChangeDeadline: number | undefined;
  /** See ReplicaOptions.stallGraceMs; the last tick's time; the deadline a stall last moved. */
  private readonly stallGraceMs: number | undefined;
  private lastTickAt: number | undefined;
  private stallMoved: { deadline: number; credit: number } | undefined;
  private lastStatusAt = -Infinity;
  private lastProofRefresh = -Infinity;
  /**
   * Set while a NEW-VIEW that f + 1 replicas vouch for, or our own VIEW-CHANGE, is checked: the
   * MACs of the frames it quotes are not.
   */
  private skipQuotedMacs = false;
  private halted: InvariantError | undefined;
  /** The version of the stable proof that last passed the invariant check. */
  private proofChecked = -1;

  // Settings.
  /** See ReplicaOptions.costlyInvariants. */
  private readonly costlyInvariants: boolean;
  /** The checkpoint restored from disk at start (opts.restore), if any. */
  private readonly restoredAt: number | undefined;
  private readonly viewChangeTimeoutMs: number;
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
    this.stallGraceMs = opts.stallGraceMs;
    this.allReplicas = Array.from({ length: this.n }, (_, i) => i);
    this.otherReplicas = this.allReplicas.filter((i) => i !== this.id);
    this.io = new Outbox(this.n, this.otherReplicas);
    this.costlyInvariants = opts.costlyInvariants ?? true;
    this.restoredAt = opts.restore?.seq;
    this.agreement = new AgreementLog(this.n, this.f, this.id);
    this.replies = new ReplySender(this.id, this.n, auth, this.io);
    this.resender = new Resender(
      this.n,
      this.id,
      auth,
      this.io,
      this.agreement,
      this.otherReplicas,
      this.statusIntervalMs,
      this.resendIntervalMs,
      this.retainBelowStable,
    );
    this.requests = new RequestQueue(this.io);
    this.cp = new Checkpoints(this.n, this.f, this.id, this.K, this.L, this.faults, this.io);
    this.fetcher = new StateFetcher(
      this.id,
      auth,
      this.io,
      service.state,
      this.cp,
      opts.fetchTimeoutMs ?? FETCH_TIMEOUT_MS,
      opts.stateTransferDelayMs ?? STATE_TRANSFER_DELAY_MS,
    );
    const r = opts.restore;
    if (!r) {
      // Checkpoint 0 is the initial state, stable by definition.
      const info = service.state.checkpoint(0);
      const d = this.clients.stateDigest(info.digest);
      this.initialDigest = d;
      this.cp.own.set(0, d);
      this.clients.snapshot(0);
      const passive = opts.rejoinAfterView ?? -1;
      this.view = Math.max(0, passive);
      const recovering = opts.rejoinAfterView !== undefined && !opts.logIntact;
      this.recovery = new Recovery(this.n, this.L, this.io, passive, recovering);
      this.restorePrepared(opts.prepared ?? []);
      return;
    }
    const kept = service.state.checkpoints();
    const root = service.state.digestAt(r.seq);
    if (!root || kept[kept.length - 1] !== r.seq || r.seq % this.K !== 0)
      throw new RangeError(`restore point ${r.seq} is not the state's latest checkpoint`);
    const table = decodeReplyTable(r.replyTable, r.view);
    if (!table) throw new RangeError('malformed reply table in the restore point');
    this.clients.replace(table);
    this.clients.adoptResults(r.results ?? []);
    const d = this.clients.stateDigest(root);
    this.initialDigest = Buffer.from(r.initialDigest);
    this.cp.own.set(r.seq, d);
    this.clients.snapshot(r.seq);
    this.cp.lowWater = this.lastExecuted = this.lastCommitted = this.lastAssigned = r.seq;
    this.view = r.view;
    this.recovery = new Recovery(this.n, this.L, this.io, r.view, !opts.logIntact);
    for (const p of r.proof) {
      const f = this.embedded(p);
      if (f?.body.type === MsgType.Checkpoint && f.body.seq === r.seq && d.equals(f.body.digest))
        this.cp.stableProof.push({ sender: f.sender, frame: p });
    }
    if (this.cp.stableProof.length < quorum(this.n)) this.cp.stableProof = [];
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
      const had = this.agreement.certs.get(c.seq);
      if (had && had.view >= c.view) continue;
      try {
        const digest = decodePersistedCert(c, (req) => this.requests.keepBody(req));
        const cert = { prePrepare: c.prePrepare, prepares: c.prepares };
        this.agreement.certs.set(c.seq, { view: c.view, digest, cert });
        this.io.count('preparedRestored');
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
        this.io.count('preparedRestoreMalformed');
        this.recovery.recovering = true;
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
    this.begin(now);
    for (const e of entries) {
      let decoded: ReturnType<typeof decodeCommitted>;
      try {
        decoded = decodeCommitted(e);
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
        this.io.count('replayMalformed');
        break;
      }
      if (!decoded) break;
      const { pp, requests } = decoded;
      if (pp.seq !== this.lastCommitted + 1 || this.lastExecuted !== this.lastCommitted) break;
      const slot = this.slot(pp.seq, pp.view);
      const digests = requests.map((r) => r.digest);
      slot.pp = prePrepared(pp, e.prePrepare, batchDigest(pp.nondet, digests), digests, requests);
      slot.prepared = slot.committed = true;
      this.agreement.preparedAhead.add(slot.seq);
      this.tryExecute();
      if (this.lastCommitted !== pp.seq) break;
      this.io.count('replayedBatches');
    }
    this.lastAssigned = Math.max(this.lastAssigned, this.lastCommitted);
    return this.end();
  }

  get isPrimary(): boolean {
    return this.primary === this.id;
  }

  /** The agreement log's slots, by sequence number. */
  get log(): Map<number, Slot> {
    return this.agreement.slots;
  }

  /**
   * Restarted from disk without a log it can vouch for, and not caught up yet (see Recovery):
   * its VIEW-CHANGE is held back.
   */
  get recovering(): boolean {
    return this.recovery.recovering;
  }

  /** Low water mark h: the last stable checkpoint. */
  get lowWater(): number {
    return this.cp.lowWater;
  }

  /** Highest sequence number accepted: H = h + L. */
  get highWater(): number {
    return this.cp.highWater;
  }

  /** Proof of the stable checkpoint: 2f+1 matching CHECKPOINT frames. */
  get stableProof(): readonly ProofEntry[] {
    return this.cp.stableProof;
  }

  /**
   * A checkpoint every replica voted for without 2f + 1 matching digests: replicas executed
   * different histories up to it (data of a version whose restarts were unsafe), so it can never
   * become stable. For operators; undefined while none was seen.
   */
  get splitAt(): number | undefined {
    return this.cp.splitAt;
  }

  /** Handles one frame from the network. Never throws on bad input: drops and counts it. */
  handleMessage(from: number, bytes: Uint8Array, now: number): Action[] {
    this.begin(now);
    const frame = tryDecodeFrame(bytes);
    if (!frame) {
      this.io.count('dropMalformed');
      return this.end();
    }
    if (!this.auth.hasKey(frame.sender)) {
      this.io.count('dropUnknownSender');
      return this.end();
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
        this.io.count('dropMalformed');
        return this.end();
      }
      digest = prePrepareAuthDigest(frame.sender, b.view, b.seq, batch.digest);
    }
    if (!this.auth.verifyFrame(frame.sender, frame.signed, frame.macs, digest)) {
      this.io.count('dropBadMac');
      // Blamed on the connection it came by (the transport authenticated that peer), not on
      // the id it claims: a frame whose MACs fail may be an impersonation.
      this.faults.note(from, 'badMac');
      return this.end();
    }
    this.dispatch(frame, bytes, digest, batch);
    return this.end();
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
    this.begin(now);
    this.maybePrePrepare();
    return this.end();
  }

  /** Whether the primary holds requests a pre-prepare could take (for `endOfInput`). */
  get hasQueuedRequests(): boolean {
    return this.requests.queued > 0;
  }

  /** Clock tick: status exchange, re-sends for stuck slots, batching left-overs. */
  tick(now: number): Action[] {
    this.begin(now);
    const gap = this.lastTickAt === undefined ? 0 : now - this.lastTickAt;
    this.lastTickAt = now;
    if (this.stallGraceMs !== undefined && gap > this.stallGraceMs) this.forgiveStall(gap);
    // A held commit waits at most one tick.
    if (this.io.holdsCommits) this.io.releaseCommits();
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
      for (const [seq, digest] of this.cp.own) {
        if (seq === 0 || seq < this.lowWater) continue;
        const msg: CheckpointMsg = { type: MsgType.Checkpoint, seq, digest };
        const frame = this.auth.sealMulticast(msg, this.n);
        this.io.send(this.otherReplicas, frame);
        if (seq === this.lowWater) this.cp.refreshProof(this.id, frame);
        else this.io.count('checkpointVoteResent');
      }
    }
    this.viewChangeTimer();
    this.fetcher.tick(this.lastCommitted);
    // Reads held back by a prepared batch that a view change then dropped.
    if (this.requests.readsHeld > 0 && this.readOnlyReady())
      for (const r of this.requests.takeReads()) this.executeReadOnly(r);
    const w = this.recovery.withheld;
    if (w && (this.active || w.msg.view !== this.view)) this.recovery.withheld = undefined;
    else if (w && now - w.since >= 2 * this.viewChangeTimeoutMs) {
      this.io.count('viewChangeSentRecovering');
      this.sendViewChange(w.msg, w.frame);
    }
    if (!this.active) {
      // VIEW-CHANGE messages get lost too: repeat ours until the NEW-VIEW arrives.
      const own = this.viewChanges.own;
      if (own && now - this.viewChanges.ownSentAt >= this.resendIntervalMs) {
        this.viewChanges.ownSentAt = now;
        this.io.send(this.otherReplicas, own);
      }
      return this.end();
    }
    // Only while a re-proposed body is missing: the scan walks the whole log.
    if (this.batchFetch.due(now, this.resendIntervalMs)) this.fetchBatches();
    this.maybeFillToCheckpoint();
    this.resender.resendStuck(this.lowWater, this.view, this.recovery.passiveThroughView);
    this.maybePrePrepare();
    return this.end();
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
        if (fromReplica) return this.io.count('dropRequestFromReplica');
        if (b.clientId !== s) {
          this.io.count('dropRequestClientMismatch');
          return;
        }
        return this.onRequest(b, bytes, digest!); // handleMessage hashes every request
      case MsgType.PrePrepare:
        if (!fromReplica) return this.io.count('dropNotReplica');
        // The stripped form only travels inside VIEW-CHANGE and NEW-VIEW.
        if (b.batch) return this.io.count('dropStrippedPrePrepare');
        return this.onPrePrepareFrame(s, b, bytes, frame.macs.length === this.n, batch);
      case MsgType.Prepare:
      case MsgType.Commit:
        if (!fromReplica) return this.io.count('dropNotReplica');
        return this.onPhase(s, b, bytes);
      case MsgType.Checkpoint:
        if (!fromReplica) return this.io.count('dropNotReplica');
        return this.onCheckpoint(s, b, bytes);
      case MsgType.Status:
        if (!fromReplica) return this.io.count('dropNotReplica');
        return this.onStatus(s, b);
      case MsgType.ViewChange:
        if (!fromReplica) return this.io.count('dropNotReplica');
        return this.onViewChange(s, b, bytes);
      case MsgType.NewView:
        if (!fromReplica) return this.io.count('dropNotReplica');
        return this.onNewView(s, b, bytes);
      case MsgType.Fetch:
        if (!fromReplica || s === this.id) return this.io.count('dropNotReplica');
        return this.onFetch(s, b);
      case MsgType.FetchReply:
        if (!fromReplica || s === this.id) return this.io.count('dropNotReplica');
        return this.onFetchReply(s, b);
      case MsgType.BatchFetch:
        if (!fromReplica || s === this.id) return this.io.count('dropNotReplica');
        return this.onBatchFetch(s, b);
      case MsgType.ForwardedNewView:
        if (!fromReplica || s === this.id) return this.io.count('dropNotReplica');
        return this.onForwardedNewView(s, b.newView);
      case MsgType.Reply:
      case MsgType.ReplyBatch:
        return this.io.count('dropUnexpectedReply');
    }
  }

  // ---- Requests ------------------------------------------------------------------------------

  private onRequest(msg: RequestMsg, frame: Uint8Array, digest: Buffer): void {
    const rec = this.clients.get(msg.clientId);
    if (msg.readOnly) {
      const req = resolved(msg, frame, digest);
      if (this.readOnlyReady()) this.executeReadOnly(req);
      else if (this.requests.holdRead(req)) {
        // The read waits for a commit: ours must not wait for a next batch too.
        if (this.io.holdsCommits) this.io.releaseCommits();
      } else this.io.count('dropReadOnlyQueueFull');
      return;
    }
    const req = resolved(msg, frame, digest);
    // Only separately transmitted requests are ever looked up by digest (pre-prepares carry the
    // others whole): small ones skip the store, and with it their hex digest.
    const large = frame.length > this.largeRequestBytes;
    if (large && this.agreement.waiting.size > 0) this.resolveWaiting(req.hex, req);
    if (rec && msg.timestamp < rec.lastTimestamp) return this.io.count('dropOldTimestamp');
    if (rec && msg.timestamp === rec.lastTimestamp) {
      // A retransmission of the last executed request: re-send its reply, in full since the
      // client evidently lacks it (the designated replier may be faulty).
      this.io.count('resendReply');
      if (rec.tentative) this.requests.await(requestKey(msg), req);
      this.replies.send(msg.clientId, msg.timestamp, rec, -1, false);
      return;
    }
    if (large) this.requests.storeBody(req);
    const key = requestKey(msg);
    // Every replica waits for the requests it knows about, the primary too: one whose
    // pre-prepares cannot commit (its backups moved on) joins the view change instead of
    // holding the others back.
    this.requests.await(key, req);
    if (this.isPrimary) {
      const queued = this.requests.enqueue(key, req);
      if (queued === 'duplicate') return this.io.count('dupPendingRequest');
      if (queued === 'full') return this.io.count('dropPendingQueueFull');
      if (!this.deferPrePrepares) this.maybePrePrepare();
    } else if (this.requests.relayOnce(key, frame.length <= this.largeRequestBytes)) {
      // Relay to the primary once (OSDI 1999 section 4.4).
      this.io.send([this.primary], frame);
    }
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
    for (const seq of this.agreement.preparedAhead) {
      const slot = this.log.get(seq);
      if (seq > this.lastCommitted && slot?.prepared && !slot.executed) return false;
      this.agreement.preparedAhead.delete(seq);
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
    this.replies.send(m.clientId, m.timestamp, rec, m.replier, true);
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
      this.io.count('serviceError');
      result = EMPTY;
    }
    if (result.length > MAX_RESULT_BYTES) {
      this.io.count('resultTooLarge');
      result = EMPTY;
    }
    return result;
  }

  // ---- Primary: batching and pre-prepares ------------------------------------------------------

  private maybePrePrepare(): void {
    if (!this.isPrimary || !this.active || this.view <= this.recovery.passiveThroughView) return;
    if (this.batchFetch.missing.size > 0) return;
    while (
      (this.requests.queued > 0 || this.lastAssigned < this.fillTo) &&
      this.lastAssigned - this.lastCommitted < this.maxOutstanding &&
      this.lastAssigned + 1 <= this.highWater
    ) {
      const entries: BatchEntry[] = [];
      const reqs: ResolvedRequest[] = [];
      let bytes = 0;
      while (this.requests.queued > 0 && reqs.length < this.maxBatchRequests) {
        const r = this.requests.peek()!;
        const large = r.frame.length > this.largeRequestBytes;
        const cost = large ? 0 : r.frame.length;
        if (reqs.length > 0 && bytes + cost > this.maxBatchBytes) break;
        this.requests.take();
        const rec = this.clients.get(r.msg.clientId);
        if (rec && r.msg.timestamp <= rec.lastTimestamp) continue;
        bytes += cost;
        this.requests.markOrdered(requestKey(r.msg));
        reqs.push(r);
        entries.push(large ? { digest: r.digest } : { inline: r.frame });
      }
      if (reqs.length === 0 && (this.requests.queued > 0 || this.lastAssigned >= this.fillTo))
        continue;
      if (reqs.length > 0) this.lastBatchAt = this.io.now;
      else this.io.count('idleNullBatch');
      const seq = ++this.lastAssigned;
      const nondet = this.service.proposeNondet(this.io.now);
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
      this.io.send(this.otherReplicas, frame);
      const slot = this.slot(seq);
      slot.pp = prePrepared(msg, frame, digest, digests, reqs);
      slot.lastProgress = this.io.now;
      this.io.count('prePrepareSent');
      this.io.count('requestsOrdered', reqs.length);
      this.checkPrepared(slot);
    }
  }

  /**
   * Primary, idle for `idleCheckpointMs` with its last batch above a checkpoint boundary: null
   * batches up to the boundary (see IDLE_CHECKPOINT_MS), which then becomes stable.
   */
  private maybeFillToCheckpoint(): void {
    if (
      this.idleCheckpointMs <= 0 ||
      !this.isPrimary ||
      this.view <= this.recovery.passiveThroughView
    )
      return;
    if (this.fillTo > this.lastAssigned || this.requests.queued > 0) return;
    if (this.lastAssigned !== this.lastCommitted || this.lastCommitted % this.K === 0) return;
    if (this.io.now - this.lastBatchAt < this.idleCheckpointMs) return;
    this.fillTo = Math.ceil(this.lastCommitted / this.K) * this.K;
    this.io.count('idleCheckpointFill');
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
      this.io.count('dropWrongView');
      return false;
    }
    // Below h only slots still kept and of this view: a replica ahead helps the others commit
    // what a NEW-VIEW re-proposed below its own stable checkpoint.
    const kept = seq <= this.lowWater && this.log.get(seq)?.view === view;
    if ((seq <= this.lowWater && !kept) || seq > this.highWater) {
      this.io.count('dropOutsideWaterMarks');
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
      return this.io.count('dropPrePrepareBadRequest');
    }
    const slot = this.log.get(msg.seq);
    if (slot?.header && !slot.pp && slot.view === msg.view) {
      if (!slot.header.digest.equals(batch.digest)) return this.io.count('dropBatchBodyMismatch');
      const body: PrePrepareMsg = { ...msg, view: slot.view, seq: slot.seq };
      const full = reframe(slot.header.frame, body);
      slot.header = undefined;
      this.io.count('batchBodyFilled');
      return this.installReproposal(slot, body, full, batch);
    }
    // Only the primary proposes, and to everyone: its frame may end up in a certificate.
    if (sender !== primaryOf(msg.view, this.n) || sender === this.id || !multicast) {
      if (slot?.pp?.digest.equals(batch.digest)) return this.io.count('dupBatchBody');
      return this.io.count('dropPrePrepareNotFromPrimary');
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
          return this.io.count('dropPrePrepareBadRequest');
        }
        requests.push(r);
      } else requests.push(this.requests.body(digests[i]!.toString('hex')));
    }
    const digest = batch.digest;
    const slot = this.slot(msg.seq, msg.view);
    if (slot.pp) {
      if (!slot.pp.digest.equals(digest)) {
        this.io.count('dropConflictingPrePrepare');
        if (!fromNewView && slot.view === msg.view)
          this.faults.note(primaryOf(msg.view, this.n), 'equivocation');
      } else this.io.count('dupPrePrepare');
      return;
    }
    // Re-proposals (NEW-VIEW) and catch-up in an earlier view carry values agreed long ago.
    const pp = prePrepared(msg, frame, digest, digests, requests);
    if (
      !agreed &&
      !this.service.checkNondet(msg.nondet, this.io.now) &&
      !this.agreement.vouched(slot, digest)
    ) {
      // Late for it (we lagged), or a faulty primary: if f + 1 replicas commit it or 2f prepare
      // it, a correct one accepted the value in time; wait for that.
      slot.refused = pp;
      this.faults.note(primaryOf(msg.view, this.n), 'rejectedProposal');
      return this.io.count('dropNondetRejected');
    }
    slot.refused = undefined;
    slot.pp = pp;
    slot.lastProgress = this.io.now;
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
    for (const seq of this.agreement.waiting) {
      const slot = this.log.get(seq);
      const pp = slot?.pp;
      if (!slot || !pp) {
        this.agreement.waiting.delete(seq);
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
      this.agreement.waiting.add(slot.seq);
      this.io.count('waitingForLargeRequest');
      return;
    }
    this.agreement.waiting.delete(slot.seq);
    if (
      !slot.sentPrepare &&
      this.id !== primaryOf(slot.view, this.n) &&
      slot.view > this.recovery.passiveThroughView
    ) {
      slot.sentPrepare = true;
      slot.prepares.set(this.id, slot.pp.hex);
      // Kept: our own prepare may be part of our prepared certificate in a VIEW-CHANGE.
      const own = this.auth.sealMulticast(phaseMsg(MsgType.Prepare, slot), this.n);
      slot.prepareFrames.set(this.id, own);
      this.io.send(this.otherReplicas, own);
    }
    this.checkPrepared(slot);
  }

  private onPhase(sender: number, msg: PrepareMsg, frame: Uint8Array): void {
    if (!this.inWindow(msg.view, msg.seq)) return;
    const slot = this.slot(msg.seq, msg.view);
    const hex = Buffer.from(msg.digest).toString('hex');
    if (msg.type === MsgType.Prepare) {
      if (sender === primaryOf(msg.view, this.n)) return this.io.count('dropPrepareFromPrimary');
      const had = slot.prepares.get(sender);
      if (had === hex) return this.io.count('dupPrepare');
      this.noteVote(slot, sender, msg.view, had, hex);
      slot.prepares.set(sender, hex);
      slot.prepareFrames.set(sender, frame);
      this.checkPrepared(slot);
    } else {
      const had = slot.commits.get(sender);
      if (had === hex) return this.io.count('dupCommit');
      this.noteVote(slot, sender, msg.view, had, hex, true);
      slot.commits.set(sender, hex);
      this.checkCommitted(slot);
    }
    const r = slot.refused;
    if (r && !slot.pp && this.agreement.vouched(slot, r.digest)) {
      slot.refused = undefined;
      slot.pp = r;
      slot.lastProgress = this.io.now;
      this.io.count('nondetVouched');
      this.afterPrePrepare(slot);
    }
  }

  private checkPrepared(slot: Slot): void {
    const pp = slot.pp;
    if (slot.prepared || !pp || pp.requests.some((r) => r === undefined)) return;
    const hex = pp.hex;
    const matching = this.agreement.preparedProof(slot);
    if (!matching) return;
    slot.prepared = true;
    this.agreement.preparedAhead.add(slot.seq);
    const had = this.agreement.certs.get(slot.seq);
    if (slot.seq > this.lowWater && (!had || had.view <= slot.view)) {
      const cert = { prePrepare: pp.frame, prepares: matching.slice(0, 2 * this.f) };
      this.agreement.certs.set(slot.seq, { view: slot.view, digest: pp.digest, cert });
      // The durable point: our COMMIT and tentative replies below leave only once the host
      // has this certificate on disk (see Action 'prepared').
      this.io.emit({
        kind: 'prepared',
        seq: slot.seq,
        view: slot.view,
        ...cert,
        large: largeFrames(pp),
      });
    }
    slot.lastProgress = this.io.now;
    // After a restart, views we may have voted in before the crash get no vote of ours: we
    // commit on the others' 2f + 1 commits alone.
    if (slot.view > this.recovery.passiveThroughView) {
      slot.sentCommit = true;
      slot.commits.set(this.id, hex);
      const commit = this.auth.sealMulticast(phaseMsg(MsgType.Commit, slot), this.n);
      if (this.holdCommits && this.onlyBatchInFlight(slot)) {
        this.io.holdCommit(commit);
        this.io.count('commitHeld');
      } else this.io.send(this.otherReplicas, commit);
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
    if (this.requests.queued > 0) return false;
    for (let s = slot.seq + 1; s <= slot.seq + this.maxOutstanding; s++)
      if (this.log.get(s)?.pp) return false;
    return true;
  }

  private checkCommitted(slot: Slot): void {
    if (slot.committed || !slot.prepared) return;
    if (!this.agreement.hasCommitQuorum(slot)) return;
    slot.committed = true;
    slot.lastProgress = this.io.now;
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
    if (this.requests.readsHeld > 0 && this.readOnlyReady()) {
      for (const r of this.requests.takeReads()) this.executeReadOnly(r);
    }
    this.maybePrePrepare();
  }

  private executeSlot(slot: Slot, tentative: boolean): void {
    const pp = slot.pp!;
    const executed: Extract<Action, { kind: 'executed' }>['requests'] = [];
    // Replies to client processes that asked for them batched (replyTo), by process.
    const groups: ReplyGroups = new Map();
    for (const r of pp.requests) {
      const m = r!.msg;
      const rec = this.clients.get(m.clientId);
      this.requests.executed(r!);
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
      const reply = this.replies.replyFor(m.clientId, m.timestamp, nrec, m.replier, false);
      this.replies.deliver(m, reply, groups);
    }
    this.replies.flush(groups);
    slot.executed = true;
    this.lastExecuted = slot.seq;
    this.io.emit({
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
      this.requests.committed(r!);
    }
    // Progress: the view-change timer restarts while other requests are still awaited.
    if (this.viewChangeDeadline !== undefined && this.active)
      this.viewChangeDeadline =
        this.requests.waitedFor.size > 0 ? this.io.now + this.viewChangeTimeoutMs : undefined;
    const pp = slot.pp!;
    this.io.emit({
      kind: 'committed',
      seq: slot.seq,
      digest: pp.digest,
      prePrepare: pp.frame,
      large: largeFrames(pp),
    });
    if (slot.seq % this.K === 0) this.takeCheckpoint(slot.seq);
  }

  // ---- Checkpoints and garbage collection ----------------------------------------------------

  private takeCheckpoint(seq: number): void {
    const info = this.service.state.checkpoint(seq);
    const digest = this.clients.stateDigest(info.digest);
    this.cp.own.set(seq, digest);
    this.clients.snapshot(seq);
    const msg: CheckpointMsg = { type: MsgType.Checkpoint, seq, digest };
    const frame = this.auth.sealMulticast(msg, this.n);
    this.io.send(this.otherReplicas, frame);
    this.onVoteOutcome(this.cp.record(this.id, seq, digest, frame));
  }

  private onCheckpoint(sender: number, msg: CheckpointMsg, frame: Uint8Array): void {
    this.onVoteOutcome(this.cp.onVote(sender, msg, frame));
  }

  /** Acts on what a checkpoint vote led to (see VoteOutcome). */
  private onVoteOutcome(o: VoteOutcome | undefined): void {
    if (!o) return;
    const { seq, digest, proof } = o;
    switch (o.kind) {
      case 'stable':
        return this.makeStable(seq, digest, proof);
      case 'corrupt':
        // Our state at seq differs from what a quorum computed: it is corrupt. Repair it.
        this.io.count('checkpointDigestMismatch');
        return this.fetcher.start(seq, digest, proof);
      case 'ahead':
        if (!this.fetcher.behind || this.fetcher.behind.seq < seq)
          this.fetcher.behind = { seq, digest, proof, since: this.io.now };
        return;
      case 'weak':
        // Fetch it, then vote (finishTransfer).
        if (
          seq > this.lastExecuted &&
          (!this.fetcher.behind || this.fetcher.behind.seq < seq) &&
          (!this.fetcher.transfer || this.fetcher.transfer.seq < seq)
        ) {
          this.fetcher.behind = { seq, digest, proof, since: this.io.now };
          this.io.count('behindOnWeakCheckpoint');
        }
        return;
    }
  }

  private makeStable(
    seq: number,
    digest: Buffer,
    proof: { sender: number; frame: Uint8Array }[],
  ): void {
    if (seq <= this.lowWater) return;
    this.cp.advance(seq, proof);
    this.fetcher.onStable(seq);
    this.recovery.onStable(seq);
    this.agreement.discardThrough(seq, seq - this.retainBelowStable);
    this.clients.discardBelow(seq);
    this.batchFetch.discardThrough(seq);
    this.service.state.discardBelow(seq);
    this.io.count('stableCheckpoints');
    this.io.emit({
      kind: 'stable',
      seq,
      digest,
      proof: proof.map((p) => p.frame),
      ...this.clients.persisted(seq),
    });
    this.maybePrePrepare();
  }

  /**
   * Seam for view changes (issue 6): undo tentative execution back to the latest checkpoint at
   * or below `seq` that is kept, restoring the page store and the last-reply table.
   */
  rollback(seq: number): number {
    const to = this.clients.latestAtOrBelow(seq);
    if (to === undefined || to < this.lowWater)
      throw new RangeError(`no checkpoint at or below ${seq}`);
    this.service.state.rollback(to);
    this.service.stateReplaced?.();
    this.clients.restore(to);
    this.lastExecuted = this.lastCommitted = to;
    for (const slot of this.log.values()) if (slot.seq > to) slot.executed = false;
    return to;
  }

  // ---- View changes (OSDI 1999 section 4.4, with MAC-authenticated proofs) ----------------------

  /** Starts a view change on timeout; a failed one moves on to the next view with twice the wait. */
  private viewChangeTimer(): void {
    // Executed before we heard of it (a late copy), or rolled back and re-run: not awaited.
    this.requests.forgetAwaited((req) => {
      const rec = this.clients.get(req.msg.clientId);
      return (
        rec !== undefined &&
        (req.msg.timestamp < rec.lastTimestamp ||
          (req.msg.timestamp === rec.lastTimestamp && !rec.tentative))
      );
    });
    if (this.active) {
      if (this.requests.waitedFor.size === 0) this.viewChangeDeadline = undefined;
      else if (this.viewChangeDeadline === undefined)
        this.viewChangeDeadline = this.io.now + this.viewChangeTimeoutMs;
    }
    if (this.viewChangeDeadline !== undefined && this.io.now >= this.viewChangeDeadline) {
      if (this.active && this.catchingUp()) {
        // The primary is making progress with the others; we are the one behind. A view change
        // we started alone would leave us stuck in a view nobody else enters.
        this.io.count('viewChangeDeferredCatchingUp');
        this.viewChangeDeadline = this.io.now + this.viewChangeTimeoutMs;
        return;
      }
      this.io.count('viewChangeTimeout');
      this.startViewChange(this.view + 1);
    }
  }

  /**
   * The host did not run for `gap` ms: whatever the primary sent meanwhile is still unread, so
   * the view-change deadline moves on by the stall, by at most one timeout per deadline (a
   * host stalled for good still changes views, one timeout late).
   */
  private forgiveStall(gap: number): void {
    const d = this.viewChangeDeadline;
    if (d === undefined) return;
    const credit =
      this.stallMoved?.deadline === d ? this.stallMoved.credit : this.viewChangeTimeoutMs;
    const by = Math.min(gap, credit);
    if (by <= 0) return;
    this.viewChangeDeadline = d + by;
    this.stallMoved = { deadline: d + by, credit: credit - by };
    this.io.count('viewChangeStallForgiven');
  }

  /**
   * f + 1 peers (one of them correct) last reported execution beyond ours in our view, within a
   * view-change timeout, or we fetch state. The window is that long, not a few STATUS
   * intervals, because a replica busy installing a fetched checkpoint (seconds of CPU under
   * load) runs its timer before the reports queued meanwhile: with 300 ms a restarted replica
   * timed out alone into a view nobody else entered. A report of not being ahead clears it.
   */
  private catchingUp(): boolean {
    if (this.fetcher.busy) return true;
    const window = Math.max(3 * this.statusIntervalMs, this.viewChangeTimeoutMs);
    return this.resender.peersAhead(window) >= this.f + 1;
  }

  /** Moves to view `v` (> view): rolls back tentative work and multicasts VIEW-CHANGE. */
  private startViewChange(v: number): void {
    if (v <= this.view && !this.active) return;
    if (v < this.view) return;
    this.failedViewChanges = this.active ? 0 : this.failedViewChanges + 1;
    this.view = v;
    this.io.emit({ kind: 'view', view: v });
    this.active = false;
    this.viewChangeDeadline = undefined;
    this.io.count('viewChangeStarted');
    this.abortTentative();
    this.requests.resetForView();
    this.fillTo = 0;
    this.batchFetch.missing.clear();
    const certs: PreparedCert[] = [];
    // Only within our window: a NEW-VIEW that started above our stable checkpoint may have had
    // us prepare beyond it before we fetched that checkpoint; such certificates are not ours to give.
    for (const [seq, c] of [...this.agreement.certs].sort((a, b) => a[0] - b[0]))
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
      proof: this.cp.stableProof.map((p) => p.frame),
      certs,
    };
    const frame = this.auth.sealMulticast(msg, this.n);
    if (this.recovery.recovering) {
      // Our log may lack what we prepared before the crash: vouch for nothing yet (see recovering).
      this.io.count('viewChangeWithheldRecovering');
      this.recovery.withheld = { frame, msg, since: this.io.now };
      this.armNewViewTimer();
      this.maybeNewView();
      return;
    }
    this.sendViewChange(msg, frame);
  }

  private sendViewChange(msg: ViewChangeMsg, frame: Uint8Array): void {
    this.recovery.withheld = undefined;
    // What our own log holds must hold together; the MACs the quoted frames carry for us may
    // have gone stale with our keys (the others check their own entries).
    const checked = this.withoutQuotedMacs(() => this.checkVC(this.id, msg, frame));
    if (!checked) {
      // Our own log does not hold up (a bug, or state damaged in memory): vouch for nothing
      // rather than send what every correct replica would reject. Counted, never thrown: the
      // certificates came from the network.
      this.io.count('ownViewChangeInvalid');
      return;
    }
    this.viewChanges.own = frame;
    this.viewChanges.ownSentAt = this.io.now;
    this.io.send(this.otherReplicas, frame);
    this.viewChanges.record(checked);
    this.armNewViewTimer();
    this.maybeNewView();
  }

  /**
   * The wait for NEW-VIEW starts only once 2f + 1 replicas asked for the view (OSDI 1999
   * section 4.5.2): a replica that timed out alone does not race ahead through views.
   */
  private armNewViewTimer(): void {
    if (this.active || this.viewChangeDeadline !== undefined) return;
    if (this.viewChanges.asking(this.view) >= quorum(this.n))
      this.viewChangeDeadline =
        this.io.now + this.viewChangeTimeoutMs * 2 ** Math.min(this.failedViewChanges + 1, 16);
  }

  /** Undoes tentative execution (it may be aborted) and re-runs what had committed above it. */
  private abortTentative(): void {
    if (this.lastExecuted === this.lastCommitted) return;
    this.io.count('rollbackTentative');
    const committed = this.lastCommitted;
    this.rollback(committed);
    this.tryExecute();
  }

  private onViewChange(sender: number, msg: ViewChangeMsg, frame: Uint8Array): void {
    if (msg.view < this.view || (msg.view === this.view && this.active)) {
      // The sender missed the NEW-VIEW of a view we are in (or is behind): send it along.
      if (msg.view === this.view) this.forwardNewView(sender);
      return this.io.count('dropOldViewChange');
    }
    if (this.viewChanges.holds(sender, msg.view)) return this.io.count('dupViewChange');
    const checked = this.checkVC(sender, msg, frame);
    if (!checked) return this.io.count('dropBadViewChange');
    this.viewChanges.record(checked);
    // f + 1 replicas want a later view: at least one correct replica timed out, so join
    // (OSDI 1999 section 4.5.2) at the smallest such view.
    const ahead = this.viewChanges.beyond(this.view);
    if (ahead.length >= this.f + 1) this.startViewChange(Math.min(...ahead.map((c) => c.view)));
    else if (msg.view === this.view) {
      this.armNewViewTimer();
      this.maybeNewView();
    }
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

  /** New primary: once 2f + 1 VIEW-CHANGEs for its view are in, multicast NEW-VIEW. */
  private maybeNewView(): void {
    if (this.active || !this.isPrimary) return;
    const vcs = this.viewChanges.forView(this.view, quorum(this.n));
    if (vcs.length < quorum(this.n)) return;
    const plan = planNewView(vcs);
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
    this.io.send(this.otherReplicas, frame);
    this.io.count('newViewSent');
    this.enterView(this.view, plan, pps, frame);
  }

  /** A NEW-VIEW from the new view's primary that does not check: its proposal is refused. */
  private rejectNewView(primary: number): void {
    this.faults.note(primary, 'rejectedProposal');
    this.io.count('dropBadNewView');
  }

  private onNewView(sender: number, msg: NewViewMsg, frame: Uint8Array): void {
    if (msg.view < this.view || (msg.view === this.view && this.active))
      return this.io.count('dropOldNewView');
    if (sender !== primaryOf(msg.view, this.n)) return this.io.count('dropNewViewNotFromPrimary');
    const vcs: CheckedViewChange[] = [];
    const senders = new Set<number>();
    for (const vf of msg.viewChanges) {
      const f = this.embedded(vf);
      if (!f || f.body.type !== MsgType.ViewChange || f.body.view !== msg.view)
        return this.rejectNewView(sender);
      const c = this.checkVC(f.sender, f.body, vf);
      if (!c || senders.has(f.sender)) return this.rejectNewView(sender);
      senders.add(f.sender);
      vcs.push(c);
    }
    if (vcs.length < quorum(this.n)) return this.rejectNewView(sender);
    const plan = planNewView(vcs);
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
      this.io.emit({ kind: 'view', view: msg.view });
      this.active = false;
      this.abortTentative();
    }
    this.io.count('newViewAccepted');
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
    this.viewChanges.enter(v, frame);
    this.lastBatchAt = this.io.now;
    this.requests.resetForView();
    this.batchFetch.missing.clear();
    this.agreement.waiting.clear();
    this.catchUpTo = Math.max(this.catchUpTo, plan.minS);
    // Our checkpoint at min-s may become stable on the proof the VIEW-CHANGE carried.
    const own = this.cp.own.get(plan.minS);
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
          if (r && r.frame.length > this.largeRequestBytes) this.requests.putBackBody(r);
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
        this.batchFetch.missing.add(s.seq);
        missing++;
      }
      this.keepCommitted(slot, done.get(s.seq));
    });
    if (missing > 0) {
      this.io.count('reproposedBatchMissing', missing);
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
        for (const r of pp?.requests ?? []) if (r) this.requests.markOrdered(requestKey(r.msg));
      }
      for (const [key, req] of this.requests.waitedFor) {
        const rec = this.clients.get(req.msg.clientId);
        if (rec && req.msg.timestamp <= rec.lastTimestamp) continue;
        if (reproposed.has(req.hex)) continue;
        if (!this.requests.requeue(key, req)) break;
      }
    } else {
      for (const [key, req] of this.requests.waitedFor)
        if (req.frame.length <= this.largeRequestBytes) {
          this.requests.markRelayed(key);
          this.io.send([this.primary], req.frame);
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
    const wasMissing = this.batchFetch.missing.delete(slot.seq);
    if (primaryOf(slot.view, this.n) !== this.id) return this.onPrePrepare(msg, frame, true, batch);
    const requests = msg.entries.map((e, i) =>
      // Checked by the replicas that prepared it (their certificates name its digest).
      'inline' in e
        ? this.agreedInlineRequest(e.inline, batch.digests[i]!)
        : this.requests.body(batch.digests[i]!.toString('hex')),
    );
    slot.pp = prePrepared(msg, frame, batch.digest, batch.digests, requests);
    slot.lastProgress = this.io.now;
    if (wasMissing) {
      // Filled after the NEW-VIEW: its requests, queued meanwhile, must not be ordered again.
      const keys = new Set(requests.flatMap((r) => (r ? [requestKey(r.msg)] : [])));
      for (const k of keys) this.requests.markOrdered(k);
      this.requests.unqueue(keys);
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
    const c = this.agreement.certs.get(seq);
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
    const wanted = this.batchFetch.plan(
      this.log.values(),
      this.view,
      this.id,
      this.otherReplicas,
      this.io.now,
    );
    if (wanted.size === 0) return this.maybePrePrepare();
    this.io.count('batchFetchSent');
    for (const [peer, list] of wanted) {
      const msg: BatchFetchMsg = { type: MsgType.BatchFetch, view: this.view, wanted: list };
      this.io.send([peer], this.auth.sealTo(msg, peer));
    }
  }

  /**
   * Sends a peer the batch bodies it asked for that we hold, as PRE-PREPAREs of its view: one
   * answer per half re-send interval, at most MAX_FETCH_REPLY_BYTES of bodies (a bound on what
   * a faulty replica can make us send).
   */
  private onBatchFetch(sender: number, msg: BatchFetchMsg): void {
    if (!this.batchFetch.mayAnswer(sender, this.io.now, this.resendIntervalMs / 2))
      return this.io.count('batchFetchHeld');
    let bytes = 0;
    for (const w of msg.wanted) {
      if (bytes >= MAX_FETCH_REPLY_BYTES) break;
      const held = this.heldBatch(w.seq, Buffer.from(w.digest));
      if (!held) continue;
      const body: PrePrepareMsg = { ...held.msg, view: msg.view, seq: w.seq };
      const frame = this.auth.sealTo(body, sender);
      this.io.send([sender], frame);
      bytes += frame.length;
      // Separately transmitted requests travel as the clients' own frames.
      held.digests.forEach((d, i) => {
        if (!('digest' in held.msg.entries[i]!)) return;
        const r = held.pp?.requests[i] ?? this.requests.body(d.toString('hex'));
        if (r) {
          this.io.send([sender], r.frame);
          bytes += r.frame.length;
        }
      });
      this.io.count('batchBodySent');
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
      this.io.count('newViewConflictsWithCommitted');
      this.log.set(old.seq, old);
      return;
    }
    slot.pp.requests = old.pp.requests;
    slot.committed = old.committed;
    slot.executed = old.executed;
    // It may have waited for a request body we held all along in the old slot.
    if (this.agreement.waiting.has(slot.seq)) this.afterPrePrepare(slot);
  }

  /**
   * Sends the NEW-VIEW of the current view to a peer still behind (at most once per re-send
   * interval), sealed to it under today's keys: the NEW-VIEW's own MACs date from the view
   * change and may no longer check there.
   */
  private forwardNewView(peer: number): void {
    const newView = this.viewChanges.newView;
    if (!this.active || !newView) return;
    if (!this.viewChanges.mayForward(peer, this.io.now, this.resendIntervalMs)) return;
    this.io.count('forwardNewView');
    const msg: ForwardedNewViewMsg = { type: MsgType.ForwardedNewView, newView };
    this.io.send([peer], this.auth.sealTo(msg, peer));
  }

  /**
   * A NEW-VIEW forwarded by `sender`. Checked as if it came from the primary; if its MACs fail
   * here (keys refreshed since the view change, or we restarted), it still counts as the
   * sender's word that it accepted this NEW-VIEW, and f + 1 replicas saying so for the same bytes
   * include a correct one that checked every MAC: we then take it with every check but the MACs.
   */
  private onForwardedNewView(sender: number, bytes: Uint8Array): void {
    const f = tryDecodeFrame(bytes);
    if (!f) return this.io.count('dropBadNewView');
    const nv = f.body;
    if (nv.type !== MsgType.NewView) return this.io.count('dropBadNewView');
    if (nv.view < this.view || (nv.view === this.view && this.active))
      return this.io.count('dropOldNewView');
    if (this.embedded(bytes)) {
      this.onNewView(f.sender, nv, bytes);
      if (this.active && this.view === nv.view) return;
    }
    const hex = sha256(bytes).toString('hex');
    if (this.viewChanges.vouch(sender, nv.view, hex) < this.f + 1)
      return this.io.count('newViewVouched');
    this.withoutQuotedMacs(() => this.onNewView(f.sender, nv, bytes));
    if (this.active && this.view === nv.view) this.io.count('newViewAcceptedOnVouches');
  }

  // ---- State transfer (OSDI 1999 section 4.3 / TOCS 2002 section 5.3.2) -------------------------

  /** Serves pieces of a kept checkpoint to a replica that fetches it. */
  private onFetch(sender: number, msg: FetchMsg): void {
    const table = this.clients.snapshotAt(msg.seq);
    const reply = answerFetch(this.service.state, table, this.lowWater, msg, this.io);
    this.io.send([sender], this.auth.sealTo(reply, sender));
  }

  private onFetchReply(sender: number, msg: FetchReplyMsg): void {
    const done = this.fetcher.onReply(sender, msg, this.view);
    if (done) this.finishTransfer(done);
  }

  /** Installs the fetched checkpoint as our stable state and re-runs the log above it. */
  private finishTransfer(t: Transfer): void {
    const pages = t.st!.pagesFetched;
    t.st!.apply();
    this.service.stateReplaced?.();
    this.clients.replace(t.table!);
    this.cp.dropAboveStable();
    this.clients.discardAbove(this.lowWater);
    this.cp.own.set(t.seq, t.digest);
    this.clients.snapshot(t.seq);
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
      this.io.send(this.otherReplicas, frame);
      this.onVoteOutcome(this.cp.record(this.id, t.seq, t.digest, frame));
    }
    // Give the log a full timeout to bring us level before suspecting the primary.
    if (this.viewChangeDeadline !== undefined && this.active)
      this.viewChangeDeadline = this.io.now + this.viewChangeTimeoutMs;
    this.io.count('stateTransferDone');
    this.io.count('transferPagesFetched', pages);
    this.io.count('transferBytes', t.bytes);
    this.io.emit({
      kind: 'transferred',
      seq: t.seq,
      pages,
      bytes: t.bytes,
      ms: this.io.now - t.startedAt,
    });
    this.tryExecute();
  }

  // ---- Lagging peers ---------------------------------------------------------------------------

  private onStatus(sender: number, msg: StatusMsg): void {
    if (sender === this.id) return;
    this.recovery.onReport(sender, msg.lastExecuted);
    // Checkpoints carry no view: the proof's frames, with their multicast authenticators, are
    // valid for the peer as they stand and show it where to fetch state from.
    if (msg.stable < this.lowWater)
      for (const p of this.cp.stableProof) if (p.sender !== sender) this.io.send([sender], p.frame);
    if (msg.view < this.view && this.active) this.forwardNewView(sender);
    if (msg.view !== this.view) return this.io.count('dropWrongView');
    this.resender.onStatus(sender, msg, this.active, this.lastCommitted, this.lowWater);
  }

  // ---- Helpers -------------------------------------------------------------------------------

  private slot(seq: number, view = this.view): Slot {
    return this.agreement.slot(seq, view, this.io.now);
  }

  private multicast(body: Body): void {
    this.io.send(this.otherReplicas, this.auth.sealMulticast(body, this.n));
  }

  /** Starts a step (a message, a tick, an end of input, a replay) at `now`. */
  private begin(now: number): void {
    if (this.halted) throw this.halted;
    this.io.begin(now);
  }

  /**
   * Ends a step: checks the invariants, then hands the step's actions to the host. The costly
   * ones run when the step returns actions: nothing leaves a state that breaks them, and a
   * primary queueing requests (most of its steps under load) does not walk its log each time.
   */
  private end(): Action[] {
    const costly = this.costlyInvariants && this.io.list.length > 0;
    const broken = brokenInvariant(this.invariantInput(), costly);
    if (broken !== undefined) {
      this.halted = new InvariantError(this.id, broken);
      throw this.halted;
    }
    if (costly) this.proofChecked = this.cp.proofVersion;
    return this.io.list;
  }

  /**
   * Set once an invariant broke (see invariants.ts): the replica has stopped, and every later
   * call throws this error again.
   */
  get stoppedBy(): InvariantError | undefined {
    return this.halted;
  }

  private invariantInput(): InvariantInput {
    return {
      id: this.id,
      n: this.n,
      K: this.K,
      L: this.L,
      active: this.active,
      lowWater: this.cp.lowWater,
      lastCommitted: this.lastCommitted,
      lastExecuted: this.lastExecuted,
      catchUpTo: this.catchUpTo,
      restoredAt: this.restoredAt,
      stableDigest: this.cp.stableDigest,
      stableProof: this.cp.stableProof,
      proofChecked: this.proofChecked === this.cp.proofVersion,
      ownCheckpoints: this.cp.own,
      tableSnapshots: this.clients.snapshotSeqs(),
      log: this.agreement.slots,
      certs: this.agreement.certs,
      viewChangeOut: this.viewChanges.own !== undefined,
    };
  }

  /** Counters of everything dropped or noteworthy, by reason. */
  get stats(): ReplicaStats {
    return this.io.stats;
  }

  private checkVC(
    sender: number,
    msg: ViewChangeMsg,
    frame: Uint8Array,
  ): CheckedViewChange | undefined {
    const rules = {
      n: this.n,
      f: this.f,
      K: this.K,
      L: this.L,
      maxViewChangeBytes: this.maxViewChangeBytes,
      initialDigest: this.initialDigest,
    };
    return checkViewChange(rules, (b) => this.embedded(b), sender, msg, frame);
  }

  /** Digest of the state at the last stable checkpoint. */
  get stableDigest(): Uint8Array | undefined {
    return this.cp.stableDigest;
  }

  /** The digests of the checkpoints this replica took and still keeps, by sequence number. */
  get checkpointDigests(): ReadonlyMap<number, Uint8Array> {
    return this.cp.own;
  }
}
