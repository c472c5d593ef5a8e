/**
 * The client side of PBFT for one client id, pure and synchronous like the replica core: at most
 * one outstanding request (the PBFT rule; a process gets concurrency from several ids).
 */
import {
  CLIENT_RETRANSMIT_INITIAL_MS,
  CLIENT_RETRANSMIT_MAX_MS,
  CLIENT_RETRANSMIT_MIN_MS,
  LARGE_REQUEST_BYTES,
  MAX_OP_BYTES,
  maxFaulty,
  primaryOf,
  quorum,
} from './constants';
import {
  DecodeError,
  Frame,
  MsgType,
  REPLY_DIGEST_ONLY,
  REPLY_READ_ONLY,
  REPLY_TENTATIVE,
  RequestMsg,
  decodeFrame,
} from './codec';
import { MacAuthenticator, sha256 } from './crypto';

/** The retransmission timeout is at least this many smoothed completion times. */
export const RTO_SRTT_FACTOR = 4;

/** Smoothed completion latency (EWMA, 1/8 gain as TCP's SRTT); shareable by a process's ids. */
export class RttEstimator {
  srttMs = 0;
  sample(ms: number): void {
    this.srttMs = this.srttMs === 0 ? ms : 0.875 * this.srttMs + 0.125 * ms;
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
  /** Latency estimator, shared among the ids of one process so all learn at once. */
  rtt?: RttEstimator;
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
  /** Result digest (hex) and the view the reply was sent in. */
  key: string;
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
  votes: Map<number, ReplyVote>;
  fullResults: Map<string, Uint8Array>;
  /** Replica designated to send the full result for this request. */
  replier: number;
  /** Full results were already asked of every replica (digest quorum without a full result). */
  askedAll: boolean;
}

export class ClientCore {
  readonly n: number;
  readonly f: number;
  readonly id: number;
  readonly stats: Record<string, number> = {};
  view = 0;
  readonly rtt: RttEstimator;
  private timestamp: number;
  private current: Outstanding | undefined;
  private readonly retransmitInitialMs: number;
  private readonly largeRequestBytes: number;
  private readonly replicas: number[];
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
    this.id = opts.id;
    if (opts.id < opts.n) throw new RangeError('client ids must not collide with replica ids');
    this.timestamp = opts.initialTimestamp;
    this.retransmitInitialMs = clamp(opts.retransmitInitialMs ?? CLIENT_RETRANSMIT_INITIAL_MS);
    this.largeRequestBytes = opts.largeRequestBytes ?? LARGE_REQUEST_BYTES;
    this.replicas = Array.from({ length: this.n }, (_, i) => i);
    this.replier = this.id % this.n;
    this.rtt = opts.rtt ?? new RttEstimator();
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
    this.current = {
      op,
      readOnly,
      timestamp: ++this.timestamp,
      startedAt: now,
      deadline: now + timeout,
      timeout,
      votes: new Map(),
      fullResults: new Map(),
      replier: this.replier,
      askedAll: false,
    };
    return { sends: [this.requestSend(false)] };
  }

  private requestSend(retry: boolean): ClientSend {
    const c = this.current!;
    // Retransmissions are byte-identical (a large request is known by its digest); replicas
    // answer them with full results.
    const replier = c.replier;
    const msg: RequestMsg = {
      type: MsgType.Request,
      clientId: this.id,
      timestamp: c.timestamp,
      readOnly: c.readOnly,
      replier,
      op: c.op,
    };
    const bytes = this.auth.sealMulticast(msg, this.n);
    const toAll = retry || c.readOnly || bytes.length > this.largeRequestBytes;
    return { to: toAll ? this.replicas : [primaryOf(this.view, this.n)], bytes };
  }

  /** `now` (ms) feeds the adaptive retransmission timeout; omit it to keep the fixed one. */
  handleMessage(bytes: Uint8Array, now?: number): ClientOutput {
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
    const c = this.current;
    if (!c || m.timestamp !== c.timestamp || m.clientId !== this.id) {
      this.count('dropStaleReply');
      return { sends: [] };
    }
    if (!this.auth.verifyFrame(frame.sender, frame.signed, frame.macs)) {
      this.count('dropBadMac');
      return { sends: [] };
    }
    const readOnly = (m.flags & REPLY_READ_ONLY) !== 0;
    if (readOnly !== c.readOnly) {
      this.count('dropStaleReply');
      return { sends: [] };
    }
    let hex: string;
    if (m.flags & REPLY_DIGEST_ONLY) hex = Buffer.from(m.result).toString('hex');
    else {
      hex = sha256(m.result).toString('hex');
      c.fullResults.set(hex, m.result);
    }
    const key = hex;
    c.votes.set(frame.sender, {
      key,
      view: m.view,
      tentative: (m.flags & REPLY_TENTATIVE) !== 0,
      readOnly,
    });
    const result = this.tryAccept(c, key, hex, m.view);
    if (!result) {
      if (!c.askedAll && this.hasDigestQuorum(c, key) && !c.fullResults.has(hex)) {
        // The designated replier is slow or faulty: ask every replica for the full result now
        // (a retransmission), and designate another replica from the next request on.
        c.askedAll = true;
        if (this.replier === c.replier) this.replier = (c.replier + 1) % this.n;
        this.count('askedAllForFullResult');
        return { sends: [this.requestSend(true)] };
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
  private tryAccept(
    c: Outstanding,
    key: string,
    hex: string,
    view: number,
  ): Uint8Array | undefined {
    if (!this.hasDigestQuorum(c, key)) return undefined;
    const result = c.fullResults.get(hex);
    if (!result) return undefined;
    this.view = view;
    this.current = undefined;
    this.count(c.readOnly ? 'completedReadOnly' : 'completed');
    return result;
  }

  /**
   * Whether the matching votes for `key` would accept the result, had it arrived in full.
   * Committed replies match whatever view they were sent in (a view change may re-run a
   * committed request at some replicas); tentative and read-only ones must share one view,
   * which is what makes 2f + 1 of them survive a view change.
   */
  private hasDigestQuorum(c: Outstanding, key: string): boolean {
    const perView = new Map<number, number>();
    let committed = 0;
    for (const v of c.votes.values()) {
      if (v.key !== key) continue;
      const k = (perView.get(v.view) ?? 0) + 1;
      perView.set(v.view, k);
      if (k >= quorum(this.n)) return true;
      if (!v.tentative && !v.readOnly) committed++;
    }
    return committed >= this.f + 1;
  }

  private count(reason: string): void {
    this.stats[reason] = (this.stats[reason] ?? 0) + 1;
  }

  /** Retransmits with exponential backoff; a read-only request that stalls turns read-write. */
  tick(now: number): ClientOutput {
    const c = this.current;
    if (!c || now < c.deadline) return { sends: [] };
    c.timeout = clamp(c.timeout * 2);
    c.deadline = now + c.timeout;
    if (c.readOnly) {
      this.count('readOnlyRetriedReadWrite');
      c.readOnly = false;
      c.timestamp = ++this.timestamp;
      c.votes.clear();
      c.fullResults.clear();
      return { sends: [this.requestSend(false)] };
    }
    this.count('retransmit');
    return { sends: [this.requestSend(true)] };
  }
}

function clamp(ms: number): number {
  return Math.min(CLIENT_RETRANSMIT_MAX_MS, Math.max(CLIENT_RETRANSMIT_MIN_MS, ms));
}
