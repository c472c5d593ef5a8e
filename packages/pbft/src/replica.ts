/**
 * The PBFT replica core (OSDI 1999 section 4; TOCS 2002 sections 2-5): a pure, synchronous
 * state machine. Messages and clock ticks go in; frames to send and events (executions, stable
 * checkpoints) come out. No sockets, timers, promises or Date inside. `Replica` authenticates
 * each frame and dispatches it, and each tick, to the parts under `replica/`: `Agreement` (the
 * three phases and execution) and `ViewChangeDriver` (view changes) among them, each owning its
 * state. What stays here joins them: checkpoints taken, made stable or installed by a state
 * transfer, STATUS, and the invariant check after every step (docs/architecture.md, "The
 * replica core").
 */
import {
  FETCH_TIMEOUT_MS,
  FULL_INVARIANT_CHECK_INTERVAL_MS,
  PROOF_REFRESH_INTERVAL_MS,
  STATE_TRANSFER_DELAY_MS,
  quorum,
} from './constants';
import {
  CheckpointMsg,
  FetchMsg,
  FetchReplyMsg,
  Frame,
  MsgType,
  StatusMsg,
  peekMacCount,
  peekRequest,
  peekSender,
  peekViewSeq,
  tryDecodeFrame,
} from './codec';
import { MacAuthenticator, prePrepareAuthDigest, sha256 } from './crypto';
import { FaultLedger } from './faults';
import type { Service } from './service';
import type { Action, ReplicaOptions } from './replica/api';
import { Agreement, batchDigests } from './replica/agreement';
import { BatchFetch } from './replica/batch-fetch';
import { Checkpoints, ProofEntry, VoteOutcome } from './replica/checkpoints';
import { ClientTable } from './replica/client-table';
import type { ReplicaCounter, ReplicaStats } from './replica/counters';
import { InvariantError, InvariantInput, brokenInvariant } from './replica/invariants';
import { AgreementLog } from './replica/log';
import { Outbox } from './replica/outbox';
import { Recovery } from './replica/recovery';
import { ReplySender } from './replica/replies';
import { decodeReplyTable } from './replica/reply-table';
import { RequestQueue } from './replica/requests';
import { Resender } from './replica/resend';
import { Settings, resolveSettings } from './replica/settings';
import { SignatureChecks } from './replica/signatures';
import { type BatchDigests, type Slot, resolved } from './replica/slot';
import { StateFetcher, Transfer } from './replica/state-transfer';
import { answerFetch } from './replica/transfer-server';
import { ViewChangeDriver } from './replica/view-change';
import { ViewChangeSet } from './replica/view-changes';

export type { Action, PersistedCert, ReplicaOptions, RestorePoint } from './replica/api';
export type { ReplicaStats } from './replica/counters';
export type { Slot } from './replica/slot';
export { encodeRestorePoint, decodeRestorePoint } from './replica/restore-point';
export { encodeReplyTable } from './replica/reply-table';
export { InvariantError } from './replica/invariants';
export { REPLICA_COUNTERS } from './replica/counters';
export type { ReplicaCounter } from './replica/counters';

export class Replica {
  readonly n: number;
  readonly f: number;
  readonly id: number;
  /** What this replica observed from each replica, by sender (docs/operations.md, "Faults"). */
  readonly faults: FaultLedger;
  /** Digest of checkpoint 0, the initial state: stable without proof. */
  readonly initialDigest: Buffer;
  /**
   * The largest frame one replica of this cluster sends another (a forwarded NEW-VIEW): what a
   * transport between replicas must carry.
   */
  readonly maxReplicaFrameBytes: number;

  // The parts, each owning its state (docs/architecture.md, "The replica core").
  private readonly s: Settings;
  /** This step's clock, actions and counters. */
  private readonly io: Outbox;
  /** The three phases and execution: where this replica is in the sequence. */
  private readonly agreement: Agreement;
  /** The view, whether it is active, the view-change timer; VIEW-CHANGE and NEW-VIEW. */
  private readonly vc: ViewChangeDriver;
  /** Queued, stored, awaited and relayed requests, and held reads. */
  private readonly requests: RequestQueue;
  /** Clients' request signatures checked, and their outcomes by request digest. */
  private readonly signatures: SignatureChecks;
  /** The last-reply table, and its copies as of each kept checkpoint. */
  private readonly clients = new ClientTable();
  /** Slots, quorums over them, and our prepared certificates. */
  private readonly slots: AgreementLog;
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

  private lastStatusAt = -Infinity;
  private lastProofRefresh = -Infinity;
  private halted: InvariantError | undefined;
  /** The version of the stable proof that last passed the invariant check. */
  private proofChecked = -1;
  /**
   * Whether the last frame `handleMessage` took was refused before dispatch (a cheap refusal,
   * malformed, an unknown sender, bad MACs): the host charges its connection for it
   * (REFUSED_INPUT_PENALTY_BYTES).
   */
  get lastInputRefused(): boolean {
    return this.inputRefused;
  }
  private inputRefused = false;
  /**
   * The costly check walks every slot only at its first step after a replay or after a tick
   * FULL_INVARIANT_CHECK_INTERVAL_MS since the last such walk, and
   * whenever the view, its activity or the low water mark moved since the last full walk (the
   * steps that replace or roll back slots wholesale). Other steps walk the slots above the
   * last executed seq of the previous check: where agreement is still under way and what
   * executed since. Walking all of them after every message cost a replica a fifth of its busy
   * CPU under a sequential NFS load (about 200 us per operation, CPU profile of `bfs bench micro`).
   */
  private fullCheckDue = true;
  private lastFullCheckAt = -Infinity;
  private fullChecked = { view: -1, active: false, lowWater: -1 };
  private checkedThrough = -1;
  /** The checkpoint restored from disk at start (opts.restore), if any. */
  private readonly restoredAt: number | undefined;

  constructor(
    opts: ReplicaOptions,
    readonly service: Service,
    readonly auth: MacAuthenticator,
  ) {
    this.faults = new FaultLedger(opts.n);
    const s = (this.s = resolveSettings(opts, auth.self));
    const { n, f, id, L } = s;
    this.n = n;
    this.f = f;
    this.id = id;
    this.maxReplicaFrameBytes = s.maxReplicaFrameBytes;
    const io = (this.io = new Outbox(n, s.otherReplicas));
    this.restoredAt = opts.restore?.seq;
    this.slots = new AgreementLog(n, f, id);
    const replies = new ReplySender(id, n, auth, io);
    this.resender = new Resender(
      n,
      id,
      auth,
      io,
      this.slots,
      s.otherReplicas,
      s.statusIntervalMs,
      s.resendIntervalMs,
      s.retainBelowStable,
    );
    this.requests = new RequestQueue(io);
    this.signatures = new SignatureChecks(opts.requestSignatures, io);
    this.cp = new Checkpoints(n, f, id, s.K, L, this.faults, io);
    this.fetcher = new StateFetcher(
      id,
      auth,
      io,
      service.state,
      this.cp,
      opts.fetchTimeoutMs ?? FETCH_TIMEOUT_MS,
      opts.stateTransferDelayMs ?? STATE_TRANSFER_DELAY_MS,
    );
    const r = opts.restore;
    // Checkpoint 0 is the initial state, stable by definition; or the restore point.
    let start: Buffer;
    if (!r) {
      const info = service.state.checkpoint(0);
      start = this.initialDigest = this.clients.stateDigest(info.digest);
      const passive = opts.rejoinAfterView ?? -1;
      const recovering = opts.rejoinAfterView !== undefined && !opts.logIntact;
      this.recovery = new Recovery(n, L, io, passive, recovering);
    } else {
      const kept = service.state.checkpoints();
      const root = service.state.digestAt(r.seq);
      if (!root || kept[kept.length - 1] !== r.seq || r.seq % s.K !== 0)
        throw new RangeError(`restore point ${r.seq} is not the state's latest checkpoint`);
      const table = decodeReplyTable(r.replyTable, r.view);
      if (!table) throw new RangeError('malformed reply table in the restore point');
      this.clients.replace(table);
      this.clients.adoptResults(r.results ?? []);
      start = this.clients.stateDigest(root);
      this.initialDigest = Buffer.from(r.initialDigest);
      this.recovery = new Recovery(n, L, io, r.view, !opts.logIntact);
    }
    const parts = {
      settings: s,
      service,
      auth,
      faults: this.faults,
      io,
      requests: this.requests,
      clients: this.clients,
      log: this.slots,
      cp: this.cp,
      recovery: this.recovery,
      replies,
      batchFetch: this.batchFetch,
      viewChanges: this.viewChanges,
      fetcher: this.fetcher,
      resender: this.resender,
      signatures: this.signatures,
    };
    this.vc = new ViewChangeDriver(parts, this.initialDigest, (seq, digest, proof) =>
      this.makeStable(seq, digest, proof),
    );
    this.agreement = new Agreement(parts, this.vc, (seq) => this.takeCheckpoint(seq));
    this.vc.drives(this.agreement);
    if (!r) {
      this.cp.own.set(0, start);
      this.clients.snapshot(0);
      this.vc.view = Math.max(0, opts.rejoinAfterView ?? -1);
    } else {
      this.cp.own.set(r.seq, start);
      this.clients.snapshot(r.seq);
      this.cp.lowWater = r.seq;
      this.agreement.startAt(r.seq);
      this.vc.view = r.view;
      for (const p of r.proof) {
        const f = this.vc.embedded(p);
        if (
          f?.body.type === MsgType.Checkpoint &&
          f.body.seq === r.seq &&
          start.equals(f.body.digest)
        )
          this.cp.stableProof.push({ sender: f.sender, frame: p });
      }
      if (this.cp.stableProof.length < quorum(n)) this.cp.stableProof = [];
    }
    this.agreement.restorePrepared(opts.prepared ?? []);
  }

  // ---- Where the replica is ------------------------------------------------------------------

  get view(): number {
    return this.vc.view;
  }

  /** False between sending a VIEW-CHANGE for `view` and accepting its NEW-VIEW. */
  get active(): boolean {
    return this.vc.active;
  }

  get lastExecuted(): number {
    return this.agreement.lastExecuted;
  }

  /** Writable for tests that break an invariant on purpose. */
  set lastExecuted(seq: number) {
    this.agreement.lastExecuted = seq;
  }

  get lastCommitted(): number {
    return this.agreement.lastCommitted;
  }

  get primary(): number {
    return this.vc.primary;
  }

  get isPrimary(): boolean {
    return this.vc.primary === this.id;
  }

  /** The agreement log's slots, by sequence number. */
  get log(): Map<number, Slot> {
    return this.slots.slots;
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

  /** Digest of the state at the last stable checkpoint. */
  get stableDigest(): Uint8Array | undefined {
    return this.cp.stableDigest;
  }

  /** The digests of the checkpoints this replica took and still keeps, by sequence number. */
  get checkpointDigests(): ReadonlyMap<number, Uint8Array> {
    return this.cp.own;
  }

  /** Counters of everything dropped or noteworthy, by reason. */
  get stats(): ReplicaStats {
    return this.io.stats;
  }

  /**
   * Set once an invariant broke (see invariants.ts): the replica has stopped, and every later
   * call throws this error again.
   */
  get stoppedBy(): InvariantError | undefined {
    return this.halted;
  }

  // ---- Steps ---------------------------------------------------------------------------------

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
    this.fullCheckDue = true;
    this.agreement.replay(entries);
    return this.end();
  }

  /** Handles one frame from the network. Never throws on bad input: drops and counts it. */
  handleMessage(from: number, bytes: Uint8Array, now: number): Action[] {
    this.begin(now);
    this.inputRefused = true;
    const refused = this.refusal(bytes);
    if (refused) {
      this.io.count(refused);
      return this.end();
    }
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
      batch = batchDigests(b);
      if (!batch) {
        this.io.count('dropMalformed');
        return this.end();
      }
      digest = prePrepareAuthDigest(frame.sender, b.view, b.seq, batch.digest);
    }
    if (
      !this.auth.verifyFrame(frame.sender, frame.signed, frame.macs, digest) &&
      !this.requestSigned(frame, bytes, digest)
    ) {
      this.io.count('dropBadMac');
      // Blamed on the connection it came by (the transport authenticated that peer), not on
      // the id it claims: a frame whose MACs fail may be an impersonation.
      this.faults.note(from, 'badMac');
      return this.end();
    }
    this.inputRefused = false;
    this.dispatch(frame, bytes, digest, batch);
    return this.end();
  }

  /**
   * A read-write request whose MAC fails here but whose signature verifies, accepted where the
   * MAC attack would otherwise stall a correct primary: at the primary (a client that spoils
   * only the primary's MAC would leave the backups awaiting, and timing out on, a request the
   * primary never saw), and for a separately transmitted (large) request at a backup (the
   * pre-prepare carries only its digest: dropping the body means waiting for it). The primary
   * verifies every request it orders anyway, so a bad MAC buys no more there than a good one;
   * a backup verifies small requests with bad MACs only inside pre-prepares, where a correct
   * primary vouches that their signature checked.
   */
  private requestSigned(frame: Frame, bytes: Uint8Array, digest: Buffer | undefined): boolean {
    const b = frame.body;
    if (b.type !== MsgType.Request || b.readOnly || !this.signatures.on) return false;
    if (bytes.length <= this.s.largeRequestBytes && !this.isPrimary) return false;
    if (b.clientId !== frame.sender || frame.sender < this.n) return false;
    if (!this.signatures.valid(resolved(b, bytes, digest!))) return false;
    this.io.count('requestAcceptedOnSignature');
    return true;
  }

  /**
   * The cheap refusals: what the rules would drop on a few header bytes of the frame, before it
   * is decoded, its batch hashed or a MAC checked (a PRE-PREPARE not from its view's primary,
   * outside our view or window, or a replay of the one its slot holds; a PREPARE or COMMIT
   * outside them; an old request, or a copy of one handled less than RETRANSMISSION_INTERVAL_MS
   * ago). Counted as the rule that refuses them counts them.
   */
  private refusal(bytes: Uint8Array): ReplicaCounter | undefined {
    const sender = peekSender(bytes);
    if (sender === undefined) return undefined;
    switch (bytes[1]) {
      case MsgType.PrePrepare: {
        const h = peekViewSeq(bytes, MsgType.PrePrepare);
        if (!h) return undefined;
        return this.agreement.prePrepareRefusal(sender, h.view, h.seq, peekMacCount(bytes), bytes);
      }
      case MsgType.Prepare:
      case MsgType.Commit: {
        const type = bytes[1];
        const h = peekViewSeq(bytes, type);
        return h && this.agreement.phaseRefusal(type, sender, h.view, h.seq);
      }
      case MsgType.Request: {
        const h = peekRequest(bytes);
        if (!h || h.clientId !== sender || sender < this.n) return undefined;
        return this.agreement.requestRefusal(
          h.clientId,
          h.timestamp,
          h.readOnly,
          h.replier,
          bytes.length,
        );
      }
    }
    return undefined;
  }

  /**
   * Whether requests wait in the primary's queue for `endOfInput` (or a tick) instead of going
   * into a pre-prepare as each arrives. A host that hands the core frames in bursts (one socket
   * read) sets it and calls `endOfInput` after each burst: otherwise the first request of a
   * burst takes a free slot of the window alone and the rest wait for the next. Measured under
   * load with the window of 2: 69% of all pre-prepares carried a single request.
   */
  get deferPrePrepares(): boolean {
    return this.agreement.deferPrePrepares;
  }

  set deferPrePrepares(defer: boolean) {
    this.agreement.deferPrePrepares = defer;
  }

  /** The end of a burst of input (see `deferPrePrepares`): batches what the primary queued. */
  endOfInput(now: number): Action[] {
    this.begin(now);
    this.agreement.maybePrePrepare();
    return this.end();
  }

  /** Whether the primary holds requests a pre-prepare could take (for `endOfInput`). */
  get hasQueuedRequests(): boolean {
    return this.requests.queued > 0;
  }

  /** Clock tick: status exchange, re-sends for stuck slots, batching left-overs. */
  tick(now: number): Action[] {
    this.begin(now);
    if (now - this.lastFullCheckAt >= FULL_INVARIANT_CHECK_INTERVAL_MS) this.fullCheckDue = true;
    this.vc.noteTick(now);
    // A held commit waits at most one tick.
    if (this.io.holdsCommits) this.io.releaseCommits();
    if (now - this.lastStatusAt >= this.s.statusIntervalMs) {
      this.lastStatusAt = now;
      const status: StatusMsg = {
        type: MsgType.Status,
        view: this.view,
        lastExecuted: this.lastCommitted,
        stable: this.lowWater,
      };
      this.io.send(this.s.otherReplicas, this.auth.sealMulticast(status, this.n));
    }
    if (now - this.lastProofRefresh >= PROOF_REFRESH_INTERVAL_MS) this.refreshVotes(now);
    this.vc.timer();
    this.fetcher.tick(this.lastCommitted);
    // Reads held back by a prepared batch that a view change then dropped.
    this.agreement.releaseReads();
    this.vc.retryWithheld(now);
    if (!this.active) {
      this.vc.resendOwn(now);
      return this.end();
    }
    // Only while a re-proposed body is missing: the scan walks the whole log.
    if (this.batchFetch.due(now, this.s.resendIntervalMs)) this.vc.fetchBatches();
    this.agreement.maybeFillToCheckpoint();
    this.resender.resendStuck(this.lowWater, this.view, this.recovery.passiveThroughView);
    this.agreement.maybePrePrepare();
    this.agreement.relayAwaited();
    return this.end();
  }

  /**
   * Our vote for the stable checkpoint again, under our current keys: the proof every replica
   * keeps (and quotes in VIEW-CHANGEs) must verify after keys are refreshed or a replica
   * restarted with a proof from its disk. And our votes for checkpoints not stable yet:
   * CHECKPOINT is sent once, and a vote lost (a restart re-runs its commit log before its peers
   * listen) left a checkpoint one vote short for good, the log window full.
   */
  private refreshVotes(now: number): void {
    this.lastProofRefresh = now;
    for (const [seq, digest] of this.cp.own) {
      if (seq === 0 || seq < this.lowWater) continue;
      const msg: CheckpointMsg = { type: MsgType.Checkpoint, seq, digest };
      const frame = this.auth.sealMulticast(msg, this.n);
      this.io.send(this.s.otherReplicas, frame);
      if (seq === this.lowWater) this.cp.refreshProof(this.id, frame);
      else this.io.count('checkpointVoteResent');
    }
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
        return this.agreement.onRequest(b, bytes, digest!); // handleMessage hashes every request
      case MsgType.PrePrepare:
        if (!fromReplica) return this.io.count('dropNotReplica');
        // The stripped form only travels inside VIEW-CHANGE and NEW-VIEW.
        if (b.batch) return this.io.count('dropStrippedPrePrepare');
        return this.agreement.onPrePrepareFrame(s, b, bytes, frame.macs.length === this.n, batch);
      case MsgType.Prepare:
      case MsgType.Commit:
        if (!fromReplica) return this.io.count('dropNotReplica');
        return this.agreement.onPhase(s, b, bytes);
      case MsgType.Checkpoint:
        if (!fromReplica) return this.io.count('dropNotReplica');
        return this.onVoteOutcome(this.cp.onVote(s, b, bytes));
      case MsgType.Status:
        if (!fromReplica) return this.io.count('dropNotReplica');
        return this.onStatus(s, b);
      case MsgType.ViewChange:
        if (!fromReplica) return this.io.count('dropNotReplica');
        return this.vc.onViewChange(s, b, bytes);
      case MsgType.NewView:
        if (!fromReplica) return this.io.count('dropNotReplica');
        return this.vc.onNewView(s, b, bytes);
      case MsgType.Fetch:
        if (!fromReplica || s === this.id) return this.io.count('dropNotReplica');
        return this.onFetch(s, b);
      case MsgType.FetchReply:
        if (!fromReplica || s === this.id) return this.io.count('dropNotReplica');
        return this.onFetchReply(s, b);
      case MsgType.BatchFetch:
        if (!fromReplica || s === this.id) return this.io.count('dropNotReplica');
        return this.vc.onBatchFetch(s, b);
      case MsgType.ForwardedNewView:
        if (!fromReplica || s === this.id) return this.io.count('dropNotReplica');
        return this.vc.onForwardedNewView(s, b.newView);
      case MsgType.Reply:
      case MsgType.ReplyBatch:
        return this.io.count('dropUnexpectedReply');
    }
  }

  private onStatus(sender: number, msg: StatusMsg): void {
    if (sender === this.id) return;
    this.recovery.onReport(sender, msg.lastExecuted);
    // Checkpoints carry no view: the proof's frames, with their multicast authenticators, are
    // valid for the peer as they stand and show it where to fetch state from.
    if (msg.stable < this.lowWater)
      for (const p of this.cp.stableProof) if (p.sender !== sender) this.io.send([sender], p.frame);
    if (msg.view < this.view && this.active) this.vc.forwardNewView(sender);
    if (msg.view !== this.view) return this.io.count('dropWrongView');
    this.resender.onStatus(sender, msg, this.active, this.lastCommitted, this.lowWater);
  }

  // ---- Checkpoints and garbage collection ----------------------------------------------------

  private takeCheckpoint(seq: number): void {
    const info = this.service.state.checkpoint(seq);
    const digest = this.clients.stateDigest(info.digest);
    this.cp.own.set(seq, digest);
    this.clients.snapshot(seq);
    this.voteFor(seq, digest);
  }

  /** Multicasts our CHECKPOINT for `seq` and counts it with the others' votes. */
  private voteFor(seq: number, digest: Buffer): void {
    const msg: CheckpointMsg = { type: MsgType.Checkpoint, seq, digest };
    const frame = this.auth.sealMulticast(msg, this.n);
    this.io.send(this.s.otherReplicas, frame);
    this.onVoteOutcome(this.cp.record(this.id, seq, digest, frame));
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

  private makeStable(seq: number, digest: Buffer, proof: ProofEntry[]): void {
    if (seq <= this.lowWater) return;
    this.cp.advance(seq, proof);
    this.fetcher.onStable(seq);
    this.recovery.onStable(seq);
    this.slots.discardThrough(seq, seq - this.s.retainBelowStable);
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
    this.agreement.maybePrePrepare();
  }

  /**
   * Undoes tentative execution back to the latest checkpoint at or below `seq` that is kept,
   * restoring the page store and the last-reply table.
   */
  rollback(seq: number): number {
    return this.agreement.rollback(seq);
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
    this.agreement.installed(t.seq);
    if (t.proof.length >= quorum(this.n)) this.makeStable(t.seq, t.digest, t.proof);
    // A checkpoint f + 1 vouched for (see VoteOutcome 'weak'): our vote may make it stable.
    else this.voteFor(t.seq, t.digest);
    this.vc.onTransferred();
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
    this.agreement.tryExecute();
  }

  // ---- Invariants ----------------------------------------------------------------------------

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
    const costly = this.s.costlyInvariants && this.io.list.length > 0;
    const full =
      this.fullCheckDue ||
      this.fullChecked.view !== this.view ||
      this.fullChecked.active !== this.active ||
      this.fullChecked.lowWater !== this.lowWater;
    const input = this.invariantInput();
    if (!full) {
      input.checkedThrough = this.checkedThrough;
      input.highestSlot = this.slots.highest;
    }
    const broken = brokenInvariant(input, costly);
    if (broken !== undefined) {
      this.halted = new InvariantError(this.id, broken);
      throw this.halted;
    }
    if (costly) {
      this.proofChecked = this.cp.proofVersion;
      this.checkedThrough = this.agreement.lastExecuted;
      if (full) {
        this.fullCheckDue = false;
        this.lastFullCheckAt = this.io.now;
        this.fullChecked = { view: this.view, active: this.active, lowWater: this.lowWater };
      }
    }
    return this.io.list;
  }

  private invariantInput(): InvariantInput {
    return {
      id: this.id,
      n: this.n,
      K: this.s.K,
      L: this.s.L,
      active: this.vc.active,
      lowWater: this.cp.lowWater,
      lastCommitted: this.agreement.lastCommitted,
      lastExecuted: this.agreement.lastExecuted,
      catchUpTo: this.agreement.catchUpTo,
      restoredAt: this.restoredAt,
      stableDigest: this.cp.stableDigest,
      stableProof: this.cp.stableProof,
      proofChecked: this.proofChecked === this.cp.proofVersion,
      ownCheckpoints: this.cp.own,
      tableSnapshots: this.clients.snapshotSeqs(),
      log: this.slots.slots,
      certs: this.slots.certs,
      viewChangeOut: this.viewChanges.own !== undefined,
    };
  }
}
