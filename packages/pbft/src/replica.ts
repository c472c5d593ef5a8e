/**
 * The PBFT replica core for the normal case (OSDI 1999 section 4; TOCS 2002 sections 2-5):
 * a pure, synchronous state machine. Messages and clock ticks go in; frames to send and events
 * (executions, stable checkpoints) come out. No sockets, timers, promises or Date inside.
 */
import {
  CHECKPOINT_INTERVAL,
  LARGE_REQUEST_BYTES,
  LOG_WINDOW,
  MAX_BATCH_BYTES,
  MAX_BATCH_REQUESTS,
  MAX_OUTSTANDING_PREPREPARES,
  MAX_PENDING_READ_ONLY,
  MAX_PENDING_REQUESTS,
  MAX_RESEND_SLOTS,
  MAX_RESULT_BYTES,
  MAX_STORED_REQUESTS,
  RESEND_INTERVAL_MS,
  STATUS_INTERVAL_MS,
  maxFaulty,
  primaryOf,
  quorum,
} from './constants';
import {
  BatchEntry,
  Body,
  CheckpointMsg,
  DecodeError,
  Frame,
  MsgType,
  PrePrepareMsg,
  PrepareMsg,
  REPLY_DIGEST_ONLY,
  REPLY_READ_ONLY,
  REPLY_TENTATIVE,
  RequestMsg,
  StatusMsg,
  decodeFrame,
} from './codec';
import { MacAuthenticator, sha256 } from './crypto';
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
  statusIntervalMs?: number;
  resendIntervalMs?: number;
  /** Committed slots kept below the stable checkpoint for lagging peers (default L). */
  retainBelowStable?: number;
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
  | { kind: 'committed'; seq: number; digest: Uint8Array }
  /** A checkpoint became stable: persist the page store at `seq`; `proof` holds 2f+1 frames. */
  | { kind: 'stable'; seq: number; digest: Uint8Array; proof: Uint8Array[] };

/** Counters of everything dropped or noteworthy, by reason. */
export type ReplicaStats = Record<string, number>;

interface ResolvedRequest {
  msg: RequestMsg;
  frame: Uint8Array;
  digest: Buffer;
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
}

interface ClientRecord {
  lastTimestamp: number;
  result: Uint8Array;
  resultDigest: Buffer;
  view: number;
  tentative: boolean;
}

const EMPTY = new Uint8Array(0);

export class Replica {
  readonly n: number;
  readonly f: number;
  readonly id: number;
  readonly stats: ReplicaStats = {};
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
  private out: Action[] = [];
  private now = 0;

  private readonly K: number;
  private readonly L: number;
  private readonly maxBatchRequests: number;
  private readonly maxBatchBytes: number;
  private readonly maxOutstanding: number;
  private readonly largeRequestBytes: number;
  private readonly tentative: boolean;
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
    this.f = maxFaulty(opts.n);
    this.id = opts.id;
    if (!Number.isInteger(opts.id) || opts.id < 0 || opts.id >= opts.n)
      throw new RangeError(`replica id ${opts.id} outside 0..${opts.n - 1}`);
    if (auth.self !== opts.id) throw new RangeError('authenticator belongs to another node');
    this.K = opts.checkpointInterval ?? CHECKPOINT_INTERVAL;
    this.L = opts.logWindow ?? LOG_WINDOW;
    if (this.L < 2 * this.K) throw new RangeError('log window must hold two checkpoint intervals');
    this.maxBatchRequests = Math.min(
      opts.maxBatchRequests ?? MAX_BATCH_REQUESTS,
      MAX_BATCH_REQUESTS,
    );
    this.maxBatchBytes = opts.maxBatchBytes ?? MAX_BATCH_BYTES;
    this.maxOutstanding = opts.maxOutstandingPrePrepares ?? MAX_OUTSTANDING_PREPREPARES;
    this.largeRequestBytes = opts.largeRequestBytes ?? LARGE_REQUEST_BYTES;
    this.tentative = opts.tentative ?? true;
    this.statusIntervalMs = opts.statusIntervalMs ?? STATUS_INTERVAL_MS;
    this.resendIntervalMs = opts.resendIntervalMs ?? RESEND_INTERVAL_MS;
    this.retainBelowStable = opts.retainBelowStable ?? this.L;
    this.allReplicas = Array.from({ length: this.n }, (_, i) => i);
    this.otherReplicas = this.allReplicas.filter((i) => i !== this.id);
    // Checkpoint 0 is the initial state, stable by definition.
    const info = service.state.checkpoint(0);
    const d = this.stateDigest(info.digest);
    this.ownCheckpoints.set(0, d);
    this.clientSnapshots.set(0, new Map());
  }

  get primary(): number {
    return primaryOf(this.view, this.n);
  }

  get isPrimary(): boolean {
    return this.primary === this.id;
  }

  /** Highest sequence number accepted: H = h + L. */
  get highWater(): number {
    return this.lowWater + this.L;
  }

  /** Handles one frame from the network. Never throws on bad input: drops and counts it. */
  handleMessage(_from: number, bytes: Uint8Array, now: number): Action[] {
    this.now = now;
    this.out = [];
    let frame: Frame;
    try {
      frame = decodeFrame(bytes);
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      this.count('dropMalformed');
      return this.out;
    }
    if (!this.auth.hasKey(frame.sender)) {
      this.count('dropUnknownSender');
      return this.out;
    }
    if (!this.auth.verifyFrame(frame.sender, frame.signed, frame.macs)) {
      this.count('dropBadMac');
      return this.out;
    }
    this.dispatch(frame, bytes);
    return this.out;
  }

  /** Clock tick: status exchange, re-sends for stuck slots, batching left-overs. */
  tick(now: number): Action[] {
    this.now = now;
    this.out = [];
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
    for (const slot of this.log.values()) {
      if (slot.committed || now - slot.lastProgress < this.resendIntervalMs) continue;
      if (slot.seq <= this.lowWater) continue;
      slot.lastProgress = now;
      this.count('resendStuckSlot');
      if (slot.pp && this.isPrimary) {
        this.send(this.otherReplicas, slot.pp.frame);
        this.sendLargeRequests(this.otherReplicas, slot);
      }
      if (slot.sentPrepare) this.multicast(this.phaseMsg(MsgType.Prepare, slot));
      if (slot.sentCommit) this.multicast(this.phaseMsg(MsgType.Commit, slot));
    }
    this.maybePrePrepare();
    return this.out;
  }

  /** Every decoded message type ends up here after authentication. */
  private dispatch(frame: Frame, bytes: Uint8Array): void {
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
        return this.onRequest(b, bytes, frame.signed);
      case MsgType.PrePrepare:
        if (!fromReplica) return this.count('dropNotReplica');
        return this.onPrePrepare(s, b, bytes);
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
      case MsgType.Reply:
        return this.count('dropUnexpectedReply');
    }
  }

  // ---- Requests ------------------------------------------------------------------------------

  private onRequest(msg: RequestMsg, frame: Uint8Array, signed: Uint8Array): void {
    const rec = this.clients.get(msg.clientId);
    if (msg.readOnly) {
      const req = { msg, frame, digest: sha256(signed) };
      if (this.lastExecuted === this.lastCommitted) this.executeReadOnly(req);
      else if (this.pendingReadOnly.length < MAX_PENDING_READ_ONLY) this.pendingReadOnly.push(req);
      else this.count('dropReadOnlyQueueFull');
      return;
    }
    const digest = sha256(signed);
    const hex = digest.toString('hex');
    const req: ResolvedRequest = { msg, frame, digest };
    if (this.waiting.size > 0) this.resolveWaiting(hex, req);
    if (rec && msg.timestamp < rec.lastTimestamp) return this.count('dropOldTimestamp');
    if (rec && msg.timestamp === rec.lastTimestamp) {
      // A retransmission of the last executed request: re-send its reply, in full since the
      // client evidently lacks it (the designated replier may be faulty).
      this.count('resendReply');
      this.sendReply(msg.clientId, msg.timestamp, rec, -1, false);
      return;
    }
    if (this.requestStore.size >= MAX_STORED_REQUESTS) {
      const oldest = this.requestStore.keys().next().value as string;
      this.requestStore.delete(oldest);
      this.count('evictStoredRequest');
    }
    this.requestStore.set(hex, req);
    const key = `${msg.clientId}:${msg.timestamp}`;
    if (this.isPrimary) {
      if (this.pendingKeys.has(key) || this.orderedKeys.has(key))
        return this.count('dupPendingRequest');
      if (this.pending.length >= MAX_PENDING_REQUESTS) return this.count('dropPendingQueueFull');
      this.pendingKeys.add(key);
      this.pending.push(req);
      this.maybePrePrepare();
    } else {
      // Relay to the primary once (OSDI 1999 section 4.4), and see whether a pre-prepare waits.
      if (this.forwarded.size >= MAX_STORED_REQUESTS) this.forwarded.clear();
      if (!this.forwarded.has(key) && frame.length <= this.largeRequestBytes) {
        this.forwarded.add(key);
        this.send([this.primary], frame);
      }
    }
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
    const full = replier === -1 || replier === this.id;
    let flags = full ? 0 : REPLY_DIGEST_ONLY;
    if (rec.tentative) flags |= REPLY_TENTATIVE;
    if (readOnly) flags |= REPLY_READ_ONLY;
    const bytes = this.auth.sealTo(
      {
        type: MsgType.Reply,
        view: rec.view,
        timestamp,
        clientId,
        replica: this.id,
        flags,
        result: full ? rec.result : rec.resultDigest,
      },
      clientId,
    );
    this.send([clientId], bytes);
  }

  // ---- Primary: batching and pre-prepares ------------------------------------------------------

  private maybePrePrepare(): void {
    if (!this.isPrimary) return;
    while (
      this.pending.length > 0 &&
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
      if (reqs.length === 0) continue;
      const seq = ++this.lastAssigned;
      const nondet = this.service.proposeNondet(this.now);
      const msg: PrePrepareMsg = {
        type: MsgType.PrePrepare,
        view: this.view,
        seq,
        nondet,
        entries,
      };
      const frame = this.auth.sealMulticast(msg, this.n);
      this.send(this.otherReplicas, frame);
      const slot = this.slot(seq);
      const digests = reqs.map((r) => r.digest);
      slot.pp = {
        msg,
        frame,
        digest: batchDigest(nondet, digests),
        requestDigests: digests,
        requests: reqs,
      };
      slot.lastProgress = this.now;
      this.count('prePrepareSent');
      this.count('requestsOrdered', reqs.length);
      this.checkPrepared(slot);
    }
  }

  // ---- Backups: pre-prepare, prepare, commit ---------------------------------------------------

  private inWindow(view: number, seq: number): boolean {
    if (view !== this.view) {
      this.count('dropWrongView');
      return false;
    }
    if (seq <= this.lowWater || seq > this.highWater) {
      this.count('dropOutsideWaterMarks');
      return false;
    }
    return true;
  }

  private onPrePrepare(sender: number, msg: PrePrepareMsg, frame: Uint8Array): void {
    if (sender !== primaryOf(msg.view, this.n) || sender === this.id)
      return this.count('dropPrePrepareNotFromPrimary');
    if (!this.inWindow(msg.view, msg.seq)) return;
    const requests: (ResolvedRequest | undefined)[] = [];
    const digests: Buffer[] = [];
    for (const e of msg.entries) {
      if ('inline' in e) {
        const r = this.checkInlineRequest(e.inline);
        if (!r) return this.count('dropPrePrepareBadRequest');
        requests.push(r);
        digests.push(r.digest);
      } else {
        const d = Buffer.from(e.digest);
        digests.push(d);
        requests.push(this.requestStore.get(d.toString('hex')));
      }
    }
    const digest = batchDigest(msg.nondet, digests);
    const slot = this.slot(msg.seq);
    if (slot.pp) {
      if (!slot.pp.digest.equals(digest)) this.count('dropConflictingPrePrepare');
      else this.count('dupPrePrepare');
      return;
    }
    if (!this.service.checkNondet(msg.nondet, this.now)) return this.count('dropNondetRejected');
    slot.pp = { msg, frame, digest, requestDigests: digests, requests };
    slot.lastProgress = this.now;
    this.afterPrePrepare(slot);
  }

  /** Decodes and authenticates a client request carried inside a pre-prepare. */
  private checkInlineRequest(bytes: Uint8Array): ResolvedRequest | undefined {
    let f: Frame;
    try {
      f = decodeFrame(bytes);
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      return undefined;
    }
    const m = f.body;
    if (m.type !== MsgType.Request || m.readOnly || m.clientId !== f.sender) return undefined;
    if (f.sender < this.n || !this.auth.verifyFrame(f.sender, f.signed, f.macs)) return undefined;
    return { msg: m, frame: bytes, digest: sha256(f.signed) };
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
    if (!slot.sentPrepare && !this.isPrimary) {
      slot.sentPrepare = true;
      slot.prepares.set(this.id, slot.pp.digest.toString('hex'));
      this.multicast(this.phaseMsg(MsgType.Prepare, slot));
    }
    this.checkPrepared(slot);
  }

  private phaseMsg(type: MsgType.Prepare | MsgType.Commit, slot: Slot): PrepareMsg {
    return { type, view: slot.view, seq: slot.seq, digest: slot.pp!.digest };
  }

  private onPhase(sender: number, msg: PrepareMsg, frame: Uint8Array): void {
    if (!this.inWindow(msg.view, msg.seq)) return;
    const slot = this.slot(msg.seq);
    const hex = Buffer.from(msg.digest).toString('hex');
    if (msg.type === MsgType.Prepare) {
      if (sender === primaryOf(msg.view, this.n)) return this.count('dropPrepareFromPrimary');
      if (slot.prepares.get(sender) === hex) return this.count('dupPrepare');
      slot.prepares.set(sender, hex);
      slot.prepareFrames.set(sender, frame);
      this.checkPrepared(slot);
    } else {
      if (slot.commits.get(sender) === hex) return this.count('dupCommit');
      slot.commits.set(sender, hex);
      this.checkCommitted(slot);
    }
  }

  private checkPrepared(slot: Slot): void {
    const pp = slot.pp;
    if (slot.prepared || !pp || pp.requests.some((r) => r === undefined)) return;
    const hex = pp.digest.toString('hex');
    let matching = 0;
    for (const [r, d] of slot.prepares) if (r !== this.primary && d === hex) matching++;
    if (matching < 2 * this.f) return;
    slot.prepared = true;
    slot.lastProgress = this.now;
    slot.sentCommit = true;
    slot.commits.set(this.id, hex);
    this.multicast(this.phaseMsg(MsgType.Commit, slot));
    this.checkCommitted(slot);
    this.tryExecute();
  }

  private checkCommitted(slot: Slot): void {
    if (slot.committed || !slot.prepared) return;
    const hex = slot.pp!.digest.toString('hex');
    let matching = 0;
    for (const d of slot.commits.values()) if (d === hex) matching++;
    if (matching < quorum(this.n)) return;
    slot.committed = true;
    slot.lastProgress = this.now;
    this.tryExecute();
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
        this.executeSlot(slot, false);
        this.lastCommitted = slot.seq;
        this.markCommitted(slot);
        continue;
      }
      if (this.tentative && slot.prepared && slot.seq % this.K !== 0) {
        this.executeSlot(slot, true);
        continue;
      }
      break;
    }
    if (this.lastExecuted === this.lastCommitted && this.pendingReadOnly.length > 0) {
      for (const r of this.pendingReadOnly.splice(0)) this.executeReadOnly(r);
    }
    this.maybePrePrepare();
  }

  private executeSlot(slot: Slot, tentative: boolean): void {
    const pp = slot.pp!;
    const executed: Extract<Action, { kind: 'executed' }>['requests'] = [];
    for (const r of pp.requests) {
      const m = r!.msg;
      const rec = this.clients.get(m.clientId);
      const key = `${m.clientId}:${m.timestamp}`;
      this.forwarded.delete(key);
      this.orderedKeys.delete(key);
      this.requestStore.delete(r!.digest.toString('hex'));
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
      this.sendReply(m.clientId, m.timestamp, nrec, m.replier, false);
    }
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
    }
    this.out.push({ kind: 'committed', seq: slot.seq, digest: slot.pp!.digest });
    if (slot.seq % this.K === 0) this.takeCheckpoint(slot.seq);
  }

  // ---- Checkpoints and garbage collection ----------------------------------------------------

  /**
   * The checkpoint digest covers the page-store root and the last-reply table (which PBFT keeps
   * as part of the service state so exactly-once survives state transfer).
   */
  private stateDigest(root: Uint8Array): Buffer {
    const ids = [...this.clients.keys()].sort((a, b) => a - b);
    const table = Buffer.allocUnsafe(ids.length * (4 + 8 + 32));
    let p = 0;
    for (const id of ids) {
      const r = this.clients.get(id)!;
      table.writeUInt32BE(id, p);
      table.writeUInt32BE(Math.floor(r.lastTimestamp / 0x100000000), p + 4);
      table.writeUInt32BE(r.lastTimestamp >>> 0, p + 8);
      r.resultDigest.copy(table, p + 12);
      p += 44;
    }
    return sha256(root, table);
  }

  private takeCheckpoint(seq: number): void {
    const info = this.service.state.checkpoint(seq);
    const digest = this.stateDigest(info.digest);
    this.ownCheckpoints.set(seq, digest);
    const snap = new Map<number, ClientRecord>();
    for (const [id, r] of this.clients) snap.set(id, { ...r });
    this.clientSnapshots.set(seq, snap);
    const msg: CheckpointMsg = { type: MsgType.Checkpoint, seq, digest };
    const frame = this.auth.sealMulticast(msg, this.n);
    this.send(this.otherReplicas, frame);
    this.recordCheckpointVote(this.id, seq, digest, frame);
  }

  private onCheckpoint(sender: number, msg: CheckpointMsg, frame: Uint8Array): void {
    if (msg.seq <= this.lowWater) return this.count('dropOldCheckpoint');
    if (msg.seq > this.highWater + this.L || msg.seq % this.K !== 0)
      return this.count('dropCheckpointOutOfRange');
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
    votes.set(sender, { hex: Buffer.from(digest).toString('hex'), frame });
    const own = this.ownCheckpoints.get(seq);
    if (!own) return;
    const ownHex = own.toString('hex');
    const matching = [...votes].filter(([, v]) => v.hex === ownHex);
    if (matching.length >= quorum(this.n))
      this.makeStable(
        seq,
        own,
        matching.map(([s, v]) => ({ sender: s, frame: v.frame })),
      );
    else if (votes.size - matching.length > this.f) this.count('checkpointDigestMismatch');
  }

  private makeStable(
    seq: number,
    digest: Buffer,
    proof: { sender: number; frame: Uint8Array }[],
  ): void {
    if (seq <= this.lowWater) return;
    this.lowWater = seq;
    this.stableProof = proof;
    // Committed slots stay a while below h so a lagging peer can still catch up from them.
    for (const s of this.log.keys()) if (s <= seq - this.retainBelowStable) this.log.delete(s);
    for (const s of this.checkpointVotes.keys()) if (s < seq) this.checkpointVotes.delete(s);
    for (const s of this.ownCheckpoints.keys()) if (s < seq) this.ownCheckpoints.delete(s);
    for (const s of this.clientSnapshots.keys()) if (s < seq) this.clientSnapshots.delete(s);
    this.service.state.discardBelow(seq);
    this.count('stableCheckpoints');
    this.out.push({ kind: 'stable', seq, digest, proof: proof.map((p) => p.frame) });
    this.maybePrePrepare();
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
    this.clients.clear();
    for (const [id, r] of this.clientSnapshots.get(to)!) this.clients.set(id, { ...r });
    this.lastExecuted = this.lastCommitted = to;
    for (const slot of this.log.values()) if (slot.seq > to) slot.executed = false;
    return to;
  }

  // ---- Lagging peers ---------------------------------------------------------------------------

  private onStatus(sender: number, msg: StatusMsg): void {
    if (sender === this.id) return;
    if (msg.view !== this.view) return this.count('dropWrongView');
    // The proof's frames carry multicast authenticators, valid for the peer as they stand.
    if (msg.stable < this.lowWater)
      for (const p of this.stableProof) if (p.sender !== sender) this.send([sender], p.frame);
    if (msg.lastExecuted >= this.lastCommitted) return;
    const oldest = this.lowWater - this.retainBelowStable;
    if (msg.lastExecuted < oldest || !this.log.has(msg.lastExecuted + 1)) {
      // Behind our log: only state transfer (issue 6) can bring it forward.
      this.count('peerNeedsStateTransfer');
      return;
    }
    const last = Math.min(this.lastCommitted, msg.lastExecuted + MAX_RESEND_SLOTS);
    for (let s = msg.lastExecuted + 1; s <= last; s++) {
      const slot = this.log.get(s);
      if (!slot?.pp) continue;
      this.count('resendToLaggingPeer');
      if (sender !== primaryOf(slot.view, this.n)) {
        this.send([sender], slot.pp.frame);
        this.sendLargeRequests([sender], slot);
      }
      if (slot.sentPrepare)
        this.send([sender], this.auth.sealTo(this.phaseMsg(MsgType.Prepare, slot), sender));
      if (slot.sentCommit)
        this.send([sender], this.auth.sealTo(this.phaseMsg(MsgType.Commit, slot), sender));
    }
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

  private slot(seq: number): Slot {
    let s = this.log.get(seq);
    if (!s) {
      s = {
        seq,
        view: this.view,
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
    this.out.push({ kind: 'send', to, bytes });
  }

  private count(reason: string, k = 1): void {
    this.stats[reason] = (this.stats[reason] ?? 0) + k;
  }

  /** Digest of the state at the last stable checkpoint. */
  get stableDigest(): Uint8Array | undefined {
    return this.ownCheckpoints.get(this.lowWater);
  }
}

/** Batch digest: the nondet value and every request digest, in order. */
export function batchDigest(nondet: Uint8Array, requestDigests: Uint8Array[]): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(nondet.length);
  return sha256(len, nondet, ...requestDigests);
}
