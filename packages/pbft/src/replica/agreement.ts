/**
 * The three-phase agreement and execution (OSDI 1999 section 4.2; tentative execution, 5.1):
 * requests in, the primary's batching, PRE-PREPARE, PREPARE and COMMIT on the log's slots, and
 * execution in sequence order (tentative once prepared, final once committed). Owns where this
 * replica is in the sequence; the view is the view-change driver's (AgreementHost).
 */
import { MAX_RESULT_BYTES, REQUEST_RELAY_TIMEOUTS, primaryOf } from '../constants';
import {
  BatchEntry,
  DecodeError,
  MsgType,
  PrePrepareMsg,
  PrepareMsg,
  RequestMsg,
  reframe,
  tryDecodeFrame,
} from '../codec';
import { batchDigest, prePrepareAuthDigest, requestDigests, sha256 } from '../crypto';
import type { Service } from '../service';
import type { Action, PersistedCert } from './api';
import { decodeCommitted, decodePersistedCert } from './recovery';
import { SharedParts, UsesParts } from './parts';
import type { ReplyGroups, ReplySender } from './replies';
import type { ClientRecord } from './reply-table';
import type { ReplicaCounter } from './counters';
import { requestKey } from './requests';
import { RetransmissionBound } from './retransmissions';
import {
  BatchDigests,
  ResolvedRequest,
  Slot,
  largeFrames,
  phaseMsg,
  prePrepared,
  resolved,
} from './slot';

const EMPTY = new Uint8Array(0);

/** What one committed batch delivered (PrimaryMonitor measures it). */
export interface CommittedBatch {
  /** Requests in the batch, and their frame bytes. */
  readonly requests: number;
  readonly bytes: number;
  /** How many of them this replica awaited (knew of before they committed). */
  readonly served: number;
  /** From its pre-prepare here to its commit (ms); undefined where not seen (a replay). */
  readonly agreementMs: number | undefined;
}

/** What agreement needs of the view-change driver. */
export interface AgreementHost {
  /** The current view, and whether it is active. */
  readonly view: number;
  readonly active: boolean;
  /** A batch committed: progress, for the view-change timer and the primary monitor. */
  onCommitted(batch: CommittedBatch): void;
}

/** The parts agreement works with besides the shared ones. */
export interface AgreementParts extends SharedParts {
  readonly service: Service;
  readonly replies: ReplySender;
}

/** Request digests and batch digest of a full pre-prepare; undefined if one is malformed. */
export function batchDigests(msg: PrePrepareMsg): BatchDigests | undefined {
  try {
    const digests = requestDigests(msg);
    return { digests, digest: batchDigest(msg.nondet, digests) };
  } catch (e) {
    if (!(e instanceof DecodeError)) throw e;
    return undefined;
  }
}

export class Agreement extends UsesParts {
  lastExecuted = 0;
  lastCommitted = 0;
  private lastAssigned = 0;
  /** The highest prepared certificate taken back after a restart (restorePrepared). */
  private restoredPreparedThrough = 0;
  /** When this primary last ordered a request; null batches follow up to `fillTo`. */
  private lastBatchAt = 0;
  private fillTo = 0;
  /** Slots up to here may still commit in an earlier view (catch-up below the new view's start). */
  catchUpTo = 0;
  /** See Replica.deferPrePrepares. */
  deferPrePrepares = false;

  private readonly service: Service;
  private readonly replies: ReplySender;
  private readonly retransmissions: RetransmissionBound;

  constructor(
    parts: AgreementParts,
    private readonly host: AgreementHost,
    /** Execution reached checkpoint `seq`: take it (the replica's checkpoint glue). */
    private readonly takeCheckpoint: (seq: number) => void,
  ) {
    super(parts);
    this.service = parts.service;
    this.replies = parts.replies;
    this.retransmissions = new RetransmissionBound();
  }

  private get isPrimary(): boolean {
    return primaryOf(this.host.view, this.s.n) === this.s.id;
  }

  /** Restarted from checkpoint `seq` (a restore point): everything up to it ran. */
  startAt(seq: number): void {
    this.lastExecuted = this.lastCommitted = this.lastAssigned = seq;
  }

  /** Checkpoint `seq` was installed by a state transfer: what the log holds above it runs again. */
  installed(seq: number): void {
    this.lastExecuted = this.lastCommitted = seq;
    this.lastAssigned = Math.max(this.lastAssigned, seq);
    for (const [at, slot] of this.log.slots) {
      if (at <= seq) this.log.slots.delete(at);
      else slot.executed = false;
    }
  }

  /** A view change started: the primary's idle fill ends with its view. */
  leaveView(): void {
    this.fillTo = 0;
  }

  /** A new view starts at `minS`: below it, slots may still commit in their own view. */
  enterView(minS: number): void {
    this.lastBatchAt = this.io.now;
    this.catchUpTo = Math.max(this.catchUpTo, minS);
  }

  /** The new view re-proposed slots up to `maxS`: the primary goes on above them. */
  reproposedThrough(maxS: number): void {
    this.lastAssigned = Math.max(maxS, this.lastCommitted);
  }

  /**
   * Takes back the prepared certificates persisted before a restart, so that a VIEW-CHANGE of
   * ours carries them and their bodies serve re-proposals (BATCH-FETCH). Our own records: the
   * frames are not re-checked here, their MACs (under keys of before the restart) are checked
   * by whoever receives them quoted. One that does not parse makes the log incomplete.
   */
  restorePrepared(records: PersistedCert[]): void {
    for (const c of records) {
      if (c.seq <= this.cp.lowWater || c.seq > this.cp.lowWater + this.s.L) continue;
      const had = this.log.certs.get(c.seq);
      if (had && had.view >= c.view) continue;
      try {
        const digest = decodePersistedCert(c, (req) => this.requests.keepBody(req));
        const cert = { prePrepare: c.prePrepare, prepares: c.prepares };
        this.log.certs.set(c.seq, { view: c.view, digest, cert });
        this.restoredPreparedThrough = Math.max(this.restoredPreparedThrough, c.seq);
        this.io.count('preparedRestored');
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
        this.io.count('preparedRestoreMalformed');
        this.recovery.recovering = true;
      }
    }
  }

  /** See Replica.replayCommitted. */
  replay(entries: { prePrepare: Uint8Array; large: Uint8Array[] }[]): void {
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
      this.log.preparedAhead.add(slot.seq);
      this.tryExecute();
      if (this.lastCommitted !== pp.seq) break;
      this.io.count('replayedBatches');
    }
    this.lastAssigned = Math.max(this.lastAssigned, this.lastCommitted);
  }

  // ---- Requests ------------------------------------------------------------------------------

  onRequest(msg: RequestMsg, frame: Uint8Array, digest: Buffer): void {
    this.retransmissions.handled(msg.clientId, msg.timestamp, msg.replier, this.io.now);
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
    const large = frame.length > this.s.largeRequestBytes;
    if (large && this.log.waiting.size > 0) this.resolveWaiting(req.hex, req);
    if (rec && msg.timestamp < rec.lastTimestamp) return this.io.count('dropOldTimestamp');
    const key = requestKey(msg);
    const retransmitted = this.requests.hear(key, msg.toAll === true);
    if (rec && msg.timestamp === rec.lastTimestamp) {
      if (rec.tentative) this.requests.await(key, req);
      // The client's own copy came after the pre-prepare: its reply is on its way already.
      if (!retransmitted) return this.io.count('lateRequestCopy');
      // A retransmission of the last executed request: re-send its reply, in full since the
      // client evidently lacks it (the designated replier may be faulty).
      this.io.count('resendReply');
      this.replies.send(msg.clientId, msg.timestamp, rec, -1, false);
      return;
    }
    if (large) this.requests.storeBody(req);
    // Every replica waits for the requests it knows about, the primary too: one whose
    // pre-prepares cannot commit (its backups moved on) joins the view change instead of
    // holding the others back.
    this.requests.await(key, req);
    if (this.isPrimary) {
      const queued = this.requests.enqueue(key, req);
      if (queued === 'duplicate') return this.io.count('dupPendingRequest');
      if (queued === 'full') return this.io.count('dropPendingQueueFull');
      if (!this.deferPrePrepares) this.maybePrePrepare();
    } else {
      // A retransmission goes to the primary at once (OSDI 1999 section 4.4); of a request
      // sent to all the primary has the client's first copy, unless that was lost.
      if (retransmitted && this.requests.relayOnce(key, !large))
        this.io.send([primaryOf(this.host.view, this.s.n)], frame);
      this.requests.relayWhileAwaited(key);
    }
  }

  /** Backup: relays the requests that stay awaited (REQUEST_RELAY_TIMEOUTS, REQUEST_RELAYS). */
  relayAwaited(): void {
    if (this.isPrimary) return;
    const due = this.requests.relayDue(REQUEST_RELAY_TIMEOUTS * this.s.viewChangeTimeoutMs);
    if (due.length === 0) return;
    this.io.count('relayAwaited', due.length);
    for (const r of due) this.io.send([primaryOf(this.host.view, this.s.n)], r.frame);
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
    // A batch prepared before a restart may be one whose client has its result already.
    if (this.restoredPreparedThrough > this.lastCommitted) return false;
    // Entries are checked here rather than removed everywhere a slot is executed, replaced or
    // dropped; the set stays as small as the batches in flight.
    for (const seq of this.log.preparedAhead) {
      const slot = this.log.slots.get(seq);
      if (seq > this.lastCommitted && slot?.prepared && !slot.executed) return false;
      this.log.preparedAhead.delete(seq);
    }
    return true;
  }

  /** Runs the reads held back (by a prepared batch, or one a view change then dropped) once ready. */
  releaseReads(): void {
    if (this.requests.readsHeld > 0 && this.readOnlyReady())
      for (const r of this.requests.takeReads()) this.executeReadOnly(r);
  }

  private executeReadOnly(req: ResolvedRequest): void {
    const m = req.msg;
    const result = this.runService(m.op, m.clientId, EMPTY, true);
    const rec: ClientRecord = {
      lastTimestamp: m.timestamp,
      result,
      resultDigest: sha256(result),
      view: this.host.view,
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

  maybePrePrepare(): void {
    const view = this.host.view;
    if (!this.isPrimary || !this.host.active || view <= this.recovery.passiveThroughView) return;
    if (this.batchFetch.missing.size > 0) return;
    const s = this.s;
    while (
      (this.requests.queued > 0 || this.lastAssigned < this.fillTo) &&
      this.lastAssigned - this.lastCommitted < s.maxOutstanding &&
      this.lastAssigned + 1 <= this.cp.highWater
    ) {
      const entries: BatchEntry[] = [];
      const reqs: ResolvedRequest[] = [];
      let bytes = 0;
      while (this.requests.queued > 0 && reqs.length < s.maxBatchRequests) {
        const r = this.requests.peek()!;
        const large = r.frame.length > s.largeRequestBytes;
        const cost = large ? 0 : r.frame.length;
        if (reqs.length > 0 && bytes + cost > s.maxBatchBytes) break;
        this.requests.take();
        const rec = this.clients.get(r.msg.clientId);
        if (rec && r.msg.timestamp <= rec.lastTimestamp) continue;
        if (!this.signedForAll(r)) continue;
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
      const msg: PrePrepareMsg = { type: MsgType.PrePrepare, view, seq, nondet, entries };
      const digests = reqs.map((r) => r.digest);
      const digest = batchDigest(nondet, digests);
      const auth = prePrepareAuthDigest(s.id, view, seq, digest);
      const frame = this.auth.sealMulticast(msg, s.n, auth);
      this.io.send(s.otherReplicas, frame);
      const slot = this.slot(seq);
      slot.pp = prePrepared(msg, frame, digest, digests, reqs);
      slot.lastProgress = slot.ppAt = this.io.now;
      this.io.count('prePrepareSent');
      this.io.count('requestsOrdered', reqs.length);
      this.checkPrepared(slot);
    }
  }

  /**
   * Primary: whether a request may be ordered, its signature checked (Aardvark, NSDI 2009,
   * section 4.2: the primary orders only requests every correct backup can accept, whatever
   * their MACs say). One that fails is dropped here and no longer awaited: the client is faulty,
   * and its request must not make this replica change views either.
   */
  private signedForAll(r: ResolvedRequest): boolean {
    if (!this.signatures.on || this.signatures.valid(r)) return true;
    this.requests.unawait(requestKey(r.msg));
    this.io.count('dropBadRequestSignature');
    return false;
  }

  /**
   * Primary, idle for `idleCheckpointMs` with its last batch above a checkpoint boundary: null
   * batches up to the boundary (see IDLE_CHECKPOINT_MS), which then becomes stable.
   */
  maybeFillToCheckpoint(): void {
    const K = this.s.K;
    if (
      this.s.idleCheckpointMs <= 0 ||
      !this.isPrimary ||
      this.host.view <= this.recovery.passiveThroughView
    )
      return;
    if (this.fillTo > this.lastAssigned || this.requests.queued > 0) return;
    if (this.lastAssigned !== this.lastCommitted || this.lastCommitted % K === 0) return;
    if (this.io.now - this.lastBatchAt < this.s.idleCheckpointMs) return;
    this.fillTo = Math.ceil(this.lastCommitted / K) * K;
    this.io.count('idleCheckpointFill');
    this.maybePrePrepare();
  }

  // ---- Backups: pre-prepare, prepare, commit ---------------------------------------------------

  /**
   * Why a frame of `view` and `seq` falls outside what this replica takes, if it does (changes
   * nothing: the cheap refusals ask it before any MAC is checked).
   */
  private windowRefusal(
    view: number,
    seq: number,
  ): 'dropWrongView' | 'dropOutsideWaterMarks' | undefined {
    if (view !== this.host.view || !this.host.active) {
      // Below the start of the current view a slot may still commit in the view it was
      // ordered in: a replica that lagged behind the new view's checkpoint catches up so.
      if (view < this.host.view && seq <= this.catchUpTo && seq > this.lastCommitted) {
        const slot = this.log.slots.get(seq);
        if (!slot || slot.view === view || (slot.view < view && !slot.committed)) return undefined;
      }
      return 'dropWrongView';
    }
    // Below h only slots still kept and of this view: a replica ahead helps the others commit
    // what a NEW-VIEW re-proposed below its own stable checkpoint.
    const lowWater = this.cp.lowWater;
    const kept = seq <= lowWater && this.log.slots.get(seq)?.view === view;
    if ((seq <= lowWater && !kept) || seq > this.cp.highWater) return 'dropOutsideWaterMarks';
    return undefined;
  }

  private inWindow(view: number, seq: number): boolean {
    const refused = this.windowRefusal(view, seq);
    if (refused) {
      this.io.count(refused);
      return false;
    }
    // Catching up in an earlier view replaces what an even earlier view left uncommitted.
    if (view !== this.host.view || !this.host.active) {
      const slot = this.log.slots.get(seq);
      if (slot && slot.view < view) this.log.slots.delete(seq);
    }
    return true;
  }

  /**
   * What `onPrePrepareFrame` would refuse on the frame's header alone (its sender, view, seq,
   * number of MACs, or bytes identical to the pre-prepare the slot holds), asked before its
   * batch is hashed or a MAC checked: a flood of junk batches then costs a few bytes' reading
   * each. A batch body a NEW-VIEW re-proposed by digest passes whoever sends it.
   */
  prePrepareRefusal(
    sender: number,
    view: number,
    seq: number,
    macs: number | undefined,
    frame: Uint8Array,
  ): ReplicaCounter | undefined {
    const slot = this.log.slots.get(seq);
    if (slot?.header && !slot.pp && slot.view === view) return undefined;
    if (sender >= this.s.n) return 'dropNotReplica';
    if (sender !== primaryOf(view, this.s.n) || sender === this.s.id || macs !== this.s.n)
      return 'dropPrePrepareNotFromPrimary';
    const refused = this.windowRefusal(view, seq);
    if (refused) return refused;
    const pp = slot?.pp;
    if (
      pp &&
      slot!.view === view &&
      pp.frame.length === frame.length &&
      Buffer.compare(pp.frame, frame) === 0
    )
      return 'dupPrePrepare';
    return undefined;
  }

  /** What `onPhase` would refuse on a PREPARE's or COMMIT's header alone. */
  phaseRefusal(
    type: MsgType.Prepare | MsgType.Commit,
    sender: number,
    view: number,
    seq: number,
  ): ReplicaCounter | undefined {
    if (sender >= this.s.n) return 'dropNotReplica';
    const refused = this.windowRefusal(view, seq);
    if (refused) return refused;
    if (type === MsgType.Prepare && sender === primaryOf(view, this.s.n))
      return 'dropPrepareFromPrimary';
    return undefined;
  }

  /**
   * What `onRequest` would refuse on a REQUEST's header alone: an old timestamp, or a copy of
   * the client's request handled less than RETRANSMISSION_INTERVAL_MS ago. A large request
   * passes while a pre-prepare waits for a body: it may be the one.
   */
  requestRefusal(
    clientId: number,
    timestamp: number,
    readOnly: boolean,
    replier: number,
    frameBytes: number,
  ): ReplicaCounter | undefined {
    if (frameBytes > this.s.largeRequestBytes && this.log.waiting.size > 0) return undefined;
    const rec = this.clients.get(clientId);
    if (!readOnly && rec && timestamp < rec.lastTimestamp) return 'dropOldTimestamp';
    if (this.retransmissions.tooSoon(clientId, timestamp, replier, this.io.now))
      return 'dropRetransmissionTooSoon';
    return undefined;
  }

  /**
   * A PRE-PREPARE frame: the primary's proposal, or the body of a batch we wait for (a NEW-VIEW
   * re-proposed it by digest), which anyone may send us: the digest vouches for it.
   */
  onPrePrepareFrame(
    sender: number,
    msg: PrePrepareMsg,
    frame: Uint8Array,
    multicast: boolean,
    known: BatchDigests | undefined,
  ): void {
    const batch = known ?? batchDigests(msg);
    if (!batch) {
      if (sender === primaryOf(msg.view, this.s.n)) this.faults.note(sender, 'rejectedProposal');
      return this.io.count('dropPrePrepareBadRequest');
    }
    const slot = this.log.slots.get(msg.seq);
    if (slot?.header && !slot.pp && slot.view === msg.view) {
      if (!slot.header.digest.equals(batch.digest)) return this.io.count('dropBatchBodyMismatch');
      const body: PrePrepareMsg = { ...msg, view: slot.view, seq: slot.seq };
      const full = reframe(slot.header.frame, body);
      slot.header = undefined;
      this.io.count('batchBodyFilled');
      return this.installReproposal(slot, body, full, batch);
    }
    // Only the primary proposes, and to everyone: its frame may end up in a certificate.
    if (sender !== primaryOf(msg.view, this.s.n) || sender === this.s.id || !multicast) {
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
    const agreed = fromNewView || msg.view < this.host.view;
    const requests: (ResolvedRequest | undefined)[] = [];
    const digests = batch.digests;
    for (let i = 0; i < msg.entries.length; i++) {
      const e = msg.entries[i]!;
      if ('inline' in e) {
        const r = agreed
          ? this.agreedInlineRequest(e.inline, digests[i]!)
          : this.checkInlineRequest(e.inline, digests[i]);
        if (!r) {
          if (!fromNewView) this.faults.note(primaryOf(msg.view, this.s.n), 'rejectedProposal');
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
          this.faults.note(primaryOf(msg.view, this.s.n), 'equivocation');
      } else this.io.count('dupPrePrepare');
      return;
    }
    // Re-proposals (NEW-VIEW) and catch-up in an earlier view carry values agreed long ago.
    const pp = prePrepared(msg, frame, digest, digests, requests);
    if (
      !agreed &&
      !this.service.checkNondet(msg.nondet, this.io.now) &&
      !this.log.vouched(slot, digest)
    ) {
      // Late for it (we lagged), or a faulty primary: if f + 1 replicas commit it or 2f prepare
      // it, a correct one accepted the value in time; wait for that.
      slot.refused = pp;
      this.faults.note(primaryOf(msg.view, this.s.n), 'rejectedProposal');
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
    if (f.sender < this.s.n) return undefined;
    const digest = known ?? sha256(f.signed);
    const req = resolved(m, bytes, digest);
    if (this.auth.verifyFrame(f.sender, f.signed, f.macs, digest)) return req;
    // Our MAC entry fails: the client may have spoiled it for us alone (the MAC attack). A
    // correct primary ordered the request only once its signature verified, so a valid one
    // decides; a request that passes neither is the primary's fault.
    if (!this.signatures.on || !this.signatures.valid(req)) return undefined;
    this.io.count('requestAcceptedOnSignature');
    return req;
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
    if (f.sender < this.s.n) return undefined;
    return resolved(m, bytes, digest);
  }

  /** A large request arrived: fill it into any pre-prepare that carried only its digest. */
  private resolveWaiting(hex: string, req: ResolvedRequest): void {
    for (const seq of this.log.waiting) {
      const slot = this.log.slots.get(seq);
      const pp = slot?.pp;
      if (!slot || !pp) {
        this.log.waiting.delete(seq);
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
    slot.ppAt ??= this.io.now;
    if (!slot.pp || slot.pp.requests.some((r) => r === undefined)) {
      this.log.waiting.add(slot.seq);
      this.io.count('waitingForLargeRequest');
      return;
    }
    this.log.waiting.delete(slot.seq);
    if (
      !slot.sentPrepare &&
      this.s.id !== primaryOf(slot.view, this.s.n) &&
      slot.view > this.recovery.passiveThroughView
    ) {
      slot.sentPrepare = true;
      slot.prepares.set(this.s.id, slot.pp.hex);
      // Kept: our own prepare may be part of our prepared certificate in a VIEW-CHANGE.
      const own = this.auth.sealMulticast(phaseMsg(MsgType.Prepare, slot), this.s.n);
      slot.prepareFrames.set(this.s.id, own);
      this.io.send(this.s.otherReplicas, own);
    }
    this.checkPrepared(slot);
  }

  onPhase(sender: number, msg: PrepareMsg, frame: Uint8Array): void {
    if (!this.inWindow(msg.view, msg.seq)) return;
    const slot = this.slot(msg.seq, msg.view);
    const hex = Buffer.from(msg.digest).toString('hex');
    if (msg.type === MsgType.Prepare) {
      if (sender === primaryOf(msg.view, this.s.n)) return this.io.count('dropPrepareFromPrimary');
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
    if (r && !slot.pp && this.log.vouched(slot, r.digest)) {
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
    const matching = this.log.preparedProof(slot);
    if (!matching) return;
    slot.prepared = true;
    this.log.preparedAhead.add(slot.seq);
    const had = this.log.certs.get(slot.seq);
    if (slot.seq > this.cp.lowWater && (!had || had.view <= slot.view)) {
      const cert = { prePrepare: pp.frame, prepares: matching.slice(0, 2 * this.s.f) };
      this.log.certs.set(slot.seq, { view: slot.view, digest: pp.digest, cert });
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
      slot.commits.set(this.s.id, hex);
      const commit = this.auth.sealMulticast(phaseMsg(MsgType.Commit, slot), this.s.n);
      if (this.s.holdCommits && this.onlyBatchInFlight(slot)) {
        this.io.holdCommit(commit);
        this.io.count('commitHeld');
      } else this.io.send(this.s.otherReplicas, commit);
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
    for (let s = slot.seq + 1; s <= slot.seq + this.s.maxOutstanding; s++)
      if (this.log.slots.get(s)?.pp) return false;
    return true;
  }

  private checkCommitted(slot: Slot): void {
    if (slot.committed || !slot.prepared) return;
    if (!this.log.hasCommitQuorum(slot)) return;
    slot.committed = true;
    slot.lastProgress = this.io.now;
    // Commits already in for another digest than the one that committed (prepares are not
    // counted: a correct backup an equivocating primary misled prepares the other digest, but
    // never commits it without 2f prepares to match).
    const agreed = slot.pp!.digest.toString('hex');
    for (const [sender, hex] of slot.commits)
      if (hex !== agreed && sender !== this.s.id) this.faults.note(sender, 'digestMismatch');
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

  // ---- Re-proposals (NEW-VIEW) -------------------------------------------------------------------

  /**
   * A re-proposed batch with its body: the new primary takes it as its own proposal, a backup
   * as the primary's (its value agreed already: no nondet check).
   */
  installReproposal(slot: Slot, msg: PrePrepareMsg, frame: Uint8Array, batch: BatchDigests): void {
    const wasMissing = this.batchFetch.missing.delete(slot.seq);
    if (primaryOf(slot.view, this.s.n) !== this.s.id)
      return this.onPrePrepare(msg, frame, true, batch);
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
   * A re-proposed slot we had committed already (same digest: what committed anywhere survives
   * a view change) stays committed and executed; we still prepare and commit it in the new view
   * for the replicas that need our messages.
   */
  keepCommitted(slot: Slot, old: Slot | undefined): void {
    if (!old?.pp || !slot.pp) return;
    if (!old.pp.digest.equals(slot.pp.digest)) {
      // Only possible with more than f faulty replicas: keep what we committed, and say so.
      this.io.count('newViewConflictsWithCommitted');
      this.log.slots.set(old.seq, old);
      return;
    }
    slot.pp.requests = old.pp.requests;
    slot.committed = old.committed;
    slot.executed = old.executed;
    // It may have waited for a request body we held all along in the old slot.
    if (this.log.waiting.has(slot.seq)) this.afterPrePrepare(slot);
  }

  // ---- Execution -----------------------------------------------------------------------------

  /**
   * Executes in sequence order. A batch runs tentatively once prepared and every earlier batch
   * committed (OSDI 1999 section 5.1); it never runs tentatively across a checkpoint boundary, so
   * checkpoints always hold committed state and a rollback never goes below one.
   */
  tryExecute(): void {
    for (;;) {
      const next = this.log.slots.get(this.lastCommitted + 1);
      if (next && next.executed && next.committed) {
        this.lastCommitted = next.seq;
        this.markCommitted(next);
        continue;
      }
      if (this.lastExecuted !== this.lastCommitted) break;
      const slot = this.log.slots.get(this.lastExecuted + 1);
      if (!slot || !slot.pp) break;
      if (slot.committed) {
        if (slot.pp.requests.some((r) => r === undefined)) break;
        this.executeSlot(slot, false);
        this.lastCommitted = slot.seq;
        this.markCommitted(slot);
        continue;
      }
      if (
        this.s.tentative &&
        this.host.active &&
        slot.view === this.host.view &&
        slot.prepared &&
        slot.seq % this.s.K !== 0
      ) {
        this.executeSlot(slot, true);
        continue;
      }
      break;
    }
    this.releaseReads();
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
        view: this.host.view,
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
    let bytes = 0;
    let served = 0;
    for (const r of slot.pp!.requests) {
      const rec = this.clients.get(r!.msg.clientId);
      if (rec && rec.lastTimestamp === r!.msg.timestamp) rec.tentative = false;
      // Awaited until committed: tentative execution can still be lost to a view change.
      if (this.requests.committed(r!)) served++;
      bytes += r!.frame.length;
    }
    const agreementMs = slot.ppAt === undefined ? undefined : this.io.now - slot.ppAt;
    this.host.onCommitted({ requests: slot.pp!.requests.length, bytes, served, agreementMs });
    const pp = slot.pp!;
    this.io.emit({
      kind: 'committed',
      seq: slot.seq,
      digest: pp.digest,
      prePrepare: pp.frame,
      large: largeFrames(pp),
    });
    if (slot.seq % this.s.K === 0) this.takeCheckpoint(slot.seq);
  }

  /**
   * Undoes tentative execution back to the latest checkpoint at or below `seq` that is kept,
   * restoring the page store and the last-reply table.
   */
  rollback(seq: number): number {
    const to = this.clients.latestAtOrBelow(seq);
    if (to === undefined || to < this.cp.lowWater)
      throw new RangeError(`no checkpoint at or below ${seq}`);
    this.service.state.rollback(to);
    this.service.stateReplaced?.();
    this.clients.restore(to);
    this.lastExecuted = this.lastCommitted = to;
    for (const slot of this.log.slots.values()) if (slot.seq > to) slot.executed = false;
    return to;
  }

  /** Undoes tentative execution (it may be aborted) and re-runs what had committed above it. */
  abortTentative(): void {
    if (this.lastExecuted === this.lastCommitted) return;
    this.io.count('rollbackTentative');
    this.rollback(this.lastCommitted);
    this.tryExecute();
  }

  private slot(seq: number, view = this.host.view): Slot {
    return this.log.slot(seq, view, this.io.now);
  }
}
