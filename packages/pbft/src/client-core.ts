/**
 * The client side of PBFT for one client id, pure and synchronous like the replica core: at most
 * one outstanding request (the PBFT rule; a process gets concurrency from several ids).
 */
import {
  CLIENT_FULL_RESULT_GRACE_MS,
  CLIENT_FULL_RESULT_GRACE_SRTT,
  CLIENT_RETRANSMIT_INITIAL_MS,
  CLIENT_RETRANSMIT_MAX_MS,
  CLIENT_RETRANSMIT_MIN_MS,
  CLIENT_RETRANSMIT_MS_PER_MIB,
  LARGE_REQUEST_BYTES,
  REQUESTS_TO_ALL,
  MAX_OP_BYTES,
  maxFaulty,
  primaryOf,
  quorum,
} from './constants';
import {
  DecodeError,
  Frame,
  BatchedReply,
  MsgType,
  REPLY_DIGEST_ONLY,
  REPLY_READ_ONLY,
  REPLY_TENTATIVE,
  RequestMsg,
  requestSigningBytes,
  decodeFrame,
  peekReply,
} from './codec';
import { MacAuthenticator, sha256 } from './crypto';
import { FaultLedger } from './faults';
import type { RequestSigner } from './request-signatures';

/** The retransmission timeout is at least this many smoothed completion times. */
export const RTO_SRTT_FACTOR = 4;
/**
 * A read-only request its read set (ReadTargets) has not answered with a quorum after this many
 * smoothed completion times, and at least READ_WIDEN_MIN_MS, goes to the other replicas too.
 */
export const READ_WIDEN_SRTT_FACTOR = 2;
export const READ_WIDEN_MIN_MS = 5;
/** Reads sent to every replica after a read set disagreed (ReadTargets). */
export const READ_ALL_AFTER_DISAGREEMENT = 64;

/**
 * Smoothed completion latency (EWMA, 1/8 gain as TCP's SRTT) and the bytes of operations
 * outstanding; shareable by a process's ids.
 */
export class RttEstimator {
  srttMs = 0;
  outstandingBytes = 0;
  sample(ms: number): void {
    this.srttMs = this.srttMs === 0 ? ms : 0.875 * this.srttMs + 0.125 * ms;
  }
}

/**
 * Which replicas get a read-only request first: a quorum (2f + 1), not all n. Every replica
 * executes a read it receives, and the client needs 2f + 1 matching replies, so sending to n
 * only woke one more process per read on the critical path. Measured interleaved, read-only
 * 0/0 p50: 0.35-0.47 ms to all four, 0.26-0.27 ms to the same three, 0.30 ms to three rotating
 * per read. So a process keeps one read set (from `first`, e.g. its first client id mod n:
 * processes spread over the replicas) and moves past a replica only while it is suspected: one
 * that missed a read, until it is heard from again. A read whose set disagrees or is slow
 * widens to the rest (ClientCore). Shared by a process's ids.
 */
export class ReadTargets {
  private readonly suspect: boolean[];
  private readonly first: number;
  /** Reads still to send to every replica after a read set disagreed (see `disagreed`). */
  private allFor = 0;
  constructor(
    readonly n: number,
    first = 0,
    private readonly size = quorum(n),
  ) {
    this.suspect = new Array<boolean>(n).fill(false);
    this.first = ((first % n) + n) % n;
  }

  /** The replicas for the next read: `size` of them not suspected, or all if too few are left. */
  take(): number[] {
    if (this.allFor > 0) {
      this.allFor--;
      return Array.from({ length: this.n }, (_, i) => i);
    }
    const out: number[] = [];
    for (let k = 0; k < this.n && out.length < this.size; k++) {
      const r = (this.first + k) % this.n;
      if (!this.suspect[r]) out.push(r);
    }
    if (out.length < this.size) return Array.from({ length: this.n }, (_, i) => i);
    return out;
  }

  /**
   * A read set answered without 2f + 1 agreeing: reads overlap writes (replicas answer from
   * different states) or a replica lies. Then any 2f + 1 of all n are likelier to agree than one
   * fixed set, so the next READ_ALL_AFTER_DISAGREEMENT reads go to every replica.
   */
  disagreed(): void {
    this.allFor = READ_ALL_AFTER_DISAGREEMENT;
  }

  /** An authenticated reply from `replica`: it is alive. */
  heardFrom(replica: number): void {
    this.suspect[replica] = false;
  }

  /** `replica` did not answer a read in time: leave it out of reads until it is heard from. */
  missed(replica: number): void {
    this.suspect[replica] = true;
  }
}

export interface ClientCoreOptions {
  n: number;
  /** This client's node id (>= n). */
  id: number;
  /** First timestamp minus one; must exceed any timestamp this id used before (e.g. wall clock us). */
  initialTimestamp: number;
  retransmitInitialMs?: number;
  largeRequestBytes?: number;
  /**
   * Whether read-write requests go to every replica at once (Aardvark), not to the primary
   * alone: the backups then time each request from when the client sent it, so a primary that
   * sits on one is found within the per-request timeout. Default REQUESTS_TO_ALL.
   */
  requestsToAll?: boolean;
  /** Latency estimator, shared among the ids of one process so all learn at once. */
  rtt?: RttEstimator;
  /** Where read-only requests go first; shared among the ids of one process. */
  readTargets?: ReadTargets;
  /**
   * Another id of this client process (the first of its ids) to receive this id's replies in
   * REPLY-BATCH frames, one MAC per executed batch for the whole process (see ClientGroup).
   */
  replyTo?: number;
  /** Fault attribution (wrong replies, bad MACs by replica); shared among the ids of one process. */
  faults?: FaultLedger;
  /**
   * Signs read-write requests with the client process's key (docs/pbft.md, "Defenses"); the
   * replicas of a cluster that checks request signatures order no unsigned request. Absent:
   * requests go unsigned.
   */
  signer?: RequestSigner;
}

export interface ClientSend {
  to: number[];
  bytes: Uint8Array;
}

export interface ClientOutput {
  sends: ClientSend[];
  /** The agreed result, once the outstanding request completed. */
  result?: Uint8Array;
  /** Timestamp of the completed request, and whether it completed on the read-only path. */
  timestamp?: number;
  readOnly?: boolean;
}

interface ReplyVote {
  /** Result digest and the view the reply was sent in. */
  digest: Uint8Array;
  view: number;
  tentative: boolean;
  readOnly: boolean;
}

interface Outstanding {
  op: Uint8Array;
  readOnly: boolean;
  timestamp: number;
  startedAt: number;
  deadline: number;
  timeout: number;
  /** The latest reply of each replica, by replica id. */
  votes: (ReplyVote | undefined)[];
  /** Full results received, with their digests; almost always one. */
  fullResults: { digest: Uint8Array; result: Uint8Array }[];
  /** Replica designated to send the full result for this request. */
  replier: number;
  /** Full results were already asked of every replica (digest quorum without a full result). */
  askedAll: boolean;
  /** When to ask every replica for the full result (set once a digest quorum lacks one). */
  fullResultDueAt: number | undefined;
  /** Read-only: the replicas it went to, and whether it has since gone to all. */
  readSet: number[];
  widened: boolean;
  /** Read-only: when to send it to the rest if the read set has not agreed by then. */
  widenAt: number;
  frame: Uint8Array | undefined;
  /** Read-write: its signature, made once, so that retransmissions stay byte-identical. */
  signature: Uint8Array | undefined;
}

export class ClientCore {
  readonly n: number;
  readonly f: number;
  readonly id: number;
  private readonly quorum: number;
  readonly stats: Record<string, number> = {};
  view = 0;
  readonly rtt: RttEstimator;
  readonly readTargets: ReadTargets;
  readonly faults: FaultLedger;
  private timestamp: number;
  private current: Outstanding | undefined;
  /**
   * The last read-write request accepted: a reply for it that comes after the quorum and
   * disagrees is still a wrong reply (a liar is often the slowest), counted once per replica.
   */
  private accepted: { timestamp: number; digest: Uint8Array; heard: boolean[] } | undefined;
  private readonly retransmitInitialMs: number;
  private readonly largeRequestBytes: number;
  private readonly requestsToAll: boolean;
  private readonly replicas: number[];
  private readonly replyTo: number | undefined;
  private readonly signer: RequestSigner | undefined;
  /**
   * Replica designated for the next request. It starts at id mod n (spreading the full-result
   * work) and moves on whenever the designated replica failed to send a full result, so a
   * crashed replica costs one extra round trip once, not a timeout on every request.
   */
  private replier: number;

  constructor(
    opts: ClientCoreOptions,
    readonly auth: MacAuthenticator,
  ) {
    this.n = opts.n;
    this.f = maxFaulty(opts.n);
    this.quorum = quorum(opts.n);
    this.id = opts.id;
    if (opts.id < opts.n) throw new RangeError('client ids must not collide with replica ids');
    this.timestamp = opts.initialTimestamp;
    this.retransmitInitialMs = clamp(opts.retransmitInitialMs ?? CLIENT_RETRANSMIT_INITIAL_MS);
    this.largeRequestBytes = opts.largeRequestBytes ?? LARGE_REQUEST_BYTES;
    this.requestsToAll = opts.requestsToAll ?? REQUESTS_TO_ALL;
    this.replicas = Array.from({ length: this.n }, (_, i) => i);
    this.replier = this.id % this.n;
    this.rtt = opts.rtt ?? new RttEstimator();
    this.readTargets = opts.readTargets ?? new ReadTargets(this.n, opts.id);
    this.faults = opts.faults ?? new FaultLedger(this.n);
    this.replyTo = opts.replyTo === opts.id ? undefined : opts.replyTo;
    this.signer = opts.signer;
  }

  get busy(): boolean {
    return this.current !== undefined;
  }

  /** Starts a request: read-only ones go to every replica, read-write to the primary. */
  start(op: Uint8Array, readOnly: boolean, now: number): ClientOutput {
    if (this.current) throw new Error('client id already has an outstanding request');
    if (op.length > MAX_OP_BYTES)
      throw new RangeError(`operation of ${op.length} bytes exceeds ${MAX_OP_BYTES}`);
    // Under load a fixed timeout makes every client retransmit to every replica at once, which
    // only adds load: never time out before a few smoothed completion times.
    const timeout = clamp(Math.max(this.retransmitInitialMs, RTO_SRTT_FACTOR * this.rtt.srttMs));
    this.rtt.outstandingBytes += op.length;
    const readSet = readOnly ? this.readTargets.take() : this.replicas;
    // The full result must come from within the read set: the designated replier or the next
    // member after it (the designated replier moves on past one that failed to send it).
    let replier = this.replier;
    while (!readSet.includes(replier)) replier = (replier + 1) % this.n;
    this.current = {
      op,
      readOnly,
      timestamp: ++this.timestamp,
      startedAt: now,
      deadline: now + timeout + this.byteAllowanceMs(),
      timeout,
      votes: new Array<ReplyVote | undefined>(this.n).fill(undefined),
      fullResults: [],
      replier,
      askedAll: false,
      fullResultDueAt: undefined,
      readSet,
      widened: !readOnly,
      widenAt: now + readWidenDelay(timeout, this.rtt.srttMs),
      frame: undefined,
      signature: undefined,
    };
    if (this.current.readSet.length === this.n) this.current.widened = true;
    return { sends: [this.requestSend(false)] };
  }

  /**
   * Time beyond the retransmission timeout for the bytes of the process's outstanding requests
   * to go through (CLIENT_RETRANSMIT_MS_PER_MIB): outside the backoff's clamp, so that a large
   * request in a long queue is not sent again while it waits.
   */
  private byteAllowanceMs(): number {
    // Whole milliseconds: a small request's timeout stays what it was.
    return Math.floor((CLIENT_RETRANSMIT_MS_PER_MIB * this.rtt.outstandingBytes) / 2 ** 20);
  }

  /** The read-only request to the replicas its read set left out (same bytes). */
  private widen(c: Outstanding, now: number | undefined): ClientSend[] {
    c.widened = true;
    this.count('readOnlyWidened');
    if (now !== undefined && now >= c.widenAt)
      for (const r of c.readSet) if (c.votes[r] === undefined) this.readTargets.missed(r);
    const rest = this.replicas.filter((r) => !c.readSet.includes(r));
    return rest.length > 0 && c.frame ? [{ to: rest, bytes: c.frame }] : [];
  }

  private requestSend(retry: boolean): ClientSend {
    const c = this.current!;
    // Read-write retransmissions are byte-identical (a large request is known by its digest);
    // replicas answer them with full results. A read-only request runs afresh at each replica
    // (no reply table), so asking again it asks every replica for the full result.
    const replier = retry && c.readOnly ? -1 : c.replier;
    const msg: RequestMsg = {
      type: MsgType.Request,
      clientId: this.id,
      timestamp: c.timestamp,
      readOnly: c.readOnly,
      replier,
      op: c.op,
    };
    if (this.replyTo !== undefined) msg.replyTo = this.replyTo;
    if (this.requestsToAll && !c.readOnly) msg.toAll = true;
    // Read-only requests go unsigned: one that fails is retried read-write, signed.
    if (this.signer && !c.readOnly)
      msg.signature = c.signature ??= this.signer.sign(this.id, requestSigningBytes(msg));
    const bytes = this.auth.sealMulticast(msg, this.n);
    if (c.readOnly && !retry) {
      c.frame = bytes;
      return { to: c.readSet, bytes };
    }
    const toAll = retry || c.readOnly || msg.toAll || bytes.length > this.largeRequestBytes;
    return { to: toAll ? this.replicas : [primaryOf(this.view, this.n)], bytes };
  }

  /**
   * `now` (ms) feeds the adaptive retransmission timeout; omit it to keep the fixed one. `from`:
   * the node the transport authenticated the frame's connection as, to blame for a bad MAC
   * (by default the sender the frame claims).
   */
  handleMessage(bytes: Uint8Array, now?: number, from?: number): ClientOutput {
    // A REPLY to a request this client never made or no longer tracks is refused on its header
    // alone: a replica flooding such replies costs us a few bytes' reading each.
    const head = peekReply(bytes);
    if (head && !this.tracks(head.clientId, head.timestamp)) {
      this.count('dropStaleReply');
      return { sends: [] };
    }
    let frame: Frame;
    try {
      frame = decodeFrame(bytes);
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      this.count('dropMalformed');
      return { sends: [] };
    }
    const m = frame.body;
    if (m.type !== MsgType.Reply || frame.sender >= this.n || m.replica !== frame.sender) {
      this.count('dropNotReply');
      return { sends: [] };
    }
    // Cheap staleness checks first: late replies to completed requests skip the MAC work.
    if (!this.wants(m)) {
      this.count('dropStaleReply');
      return { sends: [] };
    }
    if (!this.auth.verifyFrame(frame.sender, frame.signed, frame.macs)) {
      this.count('dropBadMac');
      this.faults.note(from ?? frame.sender, 'badMac');
      return { sends: [] };
    }
    return this.handleReply(frame.sender, m, now);
  }

  /** Whether a reply for `clientId` and `timestamp` could concern us (the outstanding or last accepted request). */
  private tracks(clientId: number, timestamp: number): boolean {
    return (
      clientId === this.id &&
      (this.current?.timestamp === timestamp || this.accepted?.timestamp === timestamp)
    );
  }

  /**
   * Whether `m` answers the outstanding request, or is a late reply to the last accepted one
   * that disagrees with it (before any MAC work; late replies that agree skip it).
   */
  wants(m: BatchedReply): boolean {
    if (m.clientId !== this.id) return false;
    const c = this.current;
    if (c !== undefined && m.timestamp === c.timestamp) return true;
    const a = this.accepted;
    if (a === undefined || m.timestamp !== a.timestamp || m.flags & REPLY_READ_ONLY) return false;
    return !sameBytes(m.flags & REPLY_DIGEST_ONLY ? m.result : sha256(m.result), a.digest);
  }

  /**
   * A reply from replica `sender` whose authenticity the caller checked: the MAC of its REPLY,
   * or of the REPLY-BATCH it came in (ClientGroup).
   */
  handleReply(sender: number, m: BatchedReply, now?: number): ClientOutput {
    const c = this.current;
    const a = this.accepted;
    if (sender < this.n && a && m.timestamp === a.timestamp && !a.heard[sender] && this.wants(m)) {
      a.heard[sender] = true;
      this.count('lateWrongReply');
      this.faults.note(sender, 'wrongReply');
      return { sends: [] };
    }
    if (!c || m.timestamp !== c.timestamp || m.clientId !== this.id || sender >= this.n) {
      this.count('dropStaleReply');
      return { sends: [] };
    }
    this.readTargets.heardFrom(sender);
    const readOnly = (m.flags & REPLY_READ_ONLY) !== 0;
    if (readOnly !== c.readOnly) {
      this.count('dropStaleReply');
      return { sends: [] };
    }
    let digest: Uint8Array;
    if (m.flags & REPLY_DIGEST_ONLY) digest = m.result;
    else {
      digest = sha256(m.result);
      c.fullResults.push({ digest, result: m.result });
    }
    c.votes[sender] = {
      digest,
      view: m.view,
      tentative: (m.flags & REPLY_TENTATIVE) !== 0,
      readOnly,
    };
    const result = this.tryAccept(c, digest, m.view);
    if (!result) {
      // The whole read set answered and not even 2f + 1 digests agree (a replica lags or lies):
      // the rest now. Every replica answered so (reads overlapping writes ran on different
      // states): read-write at once rather than after the timeout. A digest quorum that only
      // lacks its full result is the designated replier's fault: asked for below.
      if (
        c.readOnly &&
        c.readSet.every((r) => c.votes[r] !== undefined) &&
        !c.votes.some((v) => v !== undefined && this.hasDigestQuorum(c, v.digest))
      ) {
        if (!c.widened) {
          this.readTargets.disagreed();
          return { sends: this.widen(c, undefined) };
        }
        if (c.votes.every((v) => v !== undefined)) return { sends: [this.retryReadWrite(c)] };
      }
      if (
        !c.askedAll &&
        c.fullResultDueAt === undefined &&
        this.hasDigestQuorum(c, digest) &&
        fullResult(c, digest) === undefined
      ) {
        if (now === undefined) return { sends: [this.askAllForFullResult(c)] };
        // Never later than halfway to the retransmission: otherwise, with the smoothed time
        // inflated (a view change), the retransmission always came first and a dead
        // designated replier stayed designated, costing every request a timeout.
        const grace = Math.max(
          CLIENT_FULL_RESULT_GRACE_MS,
          CLIENT_FULL_RESULT_GRACE_SRTT * this.rtt.srttMs,
        );
        c.fullResultDueAt = now + Math.min(grace, Math.max(0, (c.deadline - now) / 2));
      }
      return { sends: [] };
    }
    if (now !== undefined) this.rtt.sample(Math.max(0, now - c.startedAt));
    return { sends: [], result, timestamp: c.timestamp, readOnly: c.readOnly };
  }

  /**
   * Committed replies need f + 1 matches; tentative and read-only ones 2f + 1 (OSDI 1999
   * sections 4.1 and 5.1). A digest quorum completes only with one full result to match it.
   */
  private tryAccept(c: Outstanding, digest: Uint8Array, view: number): Uint8Array | undefined {
    if (!this.hasDigestQuorum(c, digest)) return undefined;
    const result = fullResult(c, digest);
    if (!result) return undefined;
    this.view = view;
    this.current = undefined;
    this.rtt.outstandingBytes -= c.op.length;
    this.count(c.readOnly ? 'completedReadOnly' : 'completed');
    // Read-write replies disagreeing with the accepted result are wrong. Read-only ones may
    // differ honestly (reads that overlap writes run on different states): not counted.
    if (!c.readOnly) {
      const heard = c.votes.map((v) => v !== undefined);
      this.accepted = { timestamp: c.timestamp, digest, heard };
      c.votes.forEach((v, r) => {
        if (v !== undefined && !v.readOnly && !sameBytes(v.digest, digest))
          this.faults.note(r, 'wrongReply');
      });
    }
    return result;
  }

  /**
   * Whether the matching votes for `key` would accept the result, had it arrived in full.
   * Committed replies match whatever view they were sent in (a view change may re-run a
   * committed request at some replicas); tentative and read-only ones must share one view,
   * which is what makes 2f + 1 of them survive a view change.
   */
  private hasDigestQuorum(c: Outstanding, digest: Uint8Array): boolean {
    let committed = 0;
    for (const v of c.votes) {
      if (v === undefined || !sameBytes(v.digest, digest)) continue;
      if (!v.tentative && !v.readOnly && ++committed >= this.f + 1) return true;
      let sameView = 0;
      for (const w of c.votes)
        if (w !== undefined && w.view === v.view && sameBytes(w.digest, digest)) sameView++;
      if (sameView >= this.quorum) return true;
    }
    return false;
  }

  private count(reason: string): void {
    this.stats[reason] = (this.stats[reason] ?? 0) + 1;
  }

  /**
   * The designated replier is slow or faulty: ask every replica for the full result (a
   * retransmission), and designate another replica from the next request on.
   */
  private askAllForFullResult(c: Outstanding): ClientSend {
    c.askedAll = true;
    if (this.replier === c.replier) this.replier = (c.replier + 1) % this.n;
    this.count('askedAllForFullResult');
    return this.requestSend(true);
  }

  /** Retransmits with exponential backoff; a read-only request that stalls turns read-write. */
  tick(now: number): ClientOutput {
    const c = this.current;
    if (c && !c.askedAll && c.fullResultDueAt !== undefined && now >= c.fullResultDueAt)
      return { sends: [this.askAllForFullResult(c)] };
    if (c && c.readOnly && !c.widened && now >= c.widenAt) return { sends: this.widen(c, now) };
    if (!c || now < c.deadline) return { sends: [] };
    c.timeout = clamp(c.timeout * 2);
    c.deadline = now + c.timeout + this.byteAllowanceMs();
    if (c.readOnly) {
      // Those that did not answer missed the read, however late the tick (widen may not have
      // run: a stalled event loop).
      for (const r of c.readSet) if (c.votes[r] === undefined) this.readTargets.missed(r);
      return { sends: [this.retryReadWrite(c, now)] };
    }
    this.count('retransmit');
    // A retransmission asks every replica for the full result: if the designated replier never
    // answered, the next request designates another.
    if (!c.askedAll && c.votes[c.replier] === undefined && this.replier === c.replier)
      this.replier = (c.replier + 1) % this.n;
    c.askedAll = true;
    return { sends: [this.requestSend(true)] };
  }

  /** A read-only request that cannot complete as such runs as read-write (OSDI 1999 5.1). */
  private retryReadWrite(c: Outstanding, now?: number): ClientSend {
    this.count('readOnlyRetriedReadWrite');
    // The completion time sampled is the read-write run's: the read's wait is our own timeout,
    // and sampling it kept an inflated smoothed time inflated.
    if (now !== undefined) c.startedAt = now;
    c.readOnly = false;
    c.widened = true;
    c.timestamp = ++this.timestamp;
    c.votes.fill(undefined);
    c.fullResultDueAt = undefined;
    c.fullResults = [];
    c.askedAll = false;
    return this.requestSend(false);
  }
}

/**
 * How long a read waits for its read set before asking the rest: READ_WIDEN_SRTT_FACTOR smoothed
 * completion times (at least READ_WIDEN_MIN_MS), but never past half the retransmission timeout.
 * Uncapped, a smoothed time inflated by a view change put the widening after the timeout: a
 * dead replica in the read set was never found out (only a widened read marks it), every read
 * ran into the timeout and its sample kept the smoothed time inflated (one second per read).
 */
export function readWidenDelay(timeoutMs: number, srttMs: number): number {
  return Math.min(timeoutMs / 2, Math.max(READ_WIDEN_MIN_MS, READ_WIDEN_SRTT_FACTOR * srttMs));
}

function clamp(ms: number): number {
  return Math.min(CLIENT_RETRANSMIT_MAX_MS, Math.max(CLIENT_RETRANSMIT_MIN_MS, ms));
}

function fullResult(c: Outstanding, digest: Uint8Array): Uint8Array | undefined {
  for (const f of c.fullResults) if (sameBytes(f.digest, digest)) return f.result;
  return undefined;
}

/** Byte equality of two short digests (no allocation, unlike a hex key). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
