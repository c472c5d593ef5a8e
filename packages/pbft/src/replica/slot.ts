/** The log's units: authenticated requests, and one slot per sequence number. */
import type { MsgType, PrePrepareMsg, PrepareMsg, RequestMsg } from '../codec';

/** An authenticated client request with its digest. */
export class ResolvedRequest {
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

export function resolved(msg: RequestMsg, frame: Uint8Array, digest: Buffer): ResolvedRequest {
  return new ResolvedRequest(msg, frame, digest);
}

/** The separately transmitted request frames of a batch, in entry order. */
export function largeFrames(pp: NonNullable<Slot['pp']>): Uint8Array[] {
  const large: Uint8Array[] = [];
  pp.msg.entries.forEach((e, i) => {
    if ('digest' in e) large.push(pp.requests[i]!.frame);
  });
  return large;
}

/** A slot's pre-prepare, with its batch digest in hex computed once. */
export function prePrepared(
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
  /** When the pre-prepare was sent (primary) or accepted here: the monitor's agreement time. */
  ppAt?: number;
  /** A pre-prepare whose nondet value our checker refused, kept in case others vouch for it. */
  refused?: Slot['pp'];
  /**
   * A batch a NEW-VIEW re-proposed by digest that we hold no body for: the new primary's
   * stripped PRE-PREPARE, filled in when a body with this digest arrives (BATCH-FETCH).
   */
  header?: { frame: Uint8Array; digest: Buffer; sources: number[] };
}

/** A batch's request digests and batch digest, computed once per PRE-PREPARE received. */
export interface BatchDigests {
  digests: Buffer[];
  digest: Buffer;
}
/** A fresh slot for `seq`, ordered in `view`, that has seen nothing yet. */
export function emptySlot(seq: number, view: number, now: number): Slot {
  return {
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
    lastProgress: now,
  };
}

/** Our PREPARE or COMMIT for a slot with its pre-prepare. */
export function phaseMsg(type: MsgType.Prepare | MsgType.Commit, slot: Slot): PrepareMsg {
  return { type, view: slot.view, seq: slot.seq, digest: slot.pp!.digest };
}
