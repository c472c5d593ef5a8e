/**
 * The replica's own invariants, checked after every handled message, tick, end of input and
 * replay (the idea of TigerBeetle's `invariants()`): a state that breaks one is a bug of ours,
 * not bad input, so the replica stops with the values that broke it rather than go on to send
 * what a correct replica never would. The cheap checks are O(1) and run after every step; the
 * costly ones walk the log and decode the stable proof (when it changed), after every step that
 * returns actions, unless `ReplicaOptions.costlyInvariants` is false. A step may skip the slots
 * that passed the previous check and are settled (`checkedThrough`); see `Replica.end` for when.
 */
import { quorum } from '../constants';
import { MsgType, tryDecodeFrame } from '../codec';
import type { ProofEntry } from './checkpoints';
import type { OwnCert } from './log';
import type { Slot } from './slot';

/** A broken invariant: the replica that hit it has stopped. */
export class InvariantError extends Error {
  constructor(replica: number, what: string) {
    super(`replica ${replica}: invariant broken: ${what}`);
    this.name = 'InvariantError';
  }
}

/** What the checks read of a replica. */
export interface InvariantInput {
  id: number;
  n: number;
  /** Checkpoint interval and log window. */
  K: number;
  L: number;
  active: boolean;
  lowWater: number;
  lastCommitted: number;
  lastExecuted: number;
  /** Slots up to here may still commit in an earlier view. */
  catchUpTo: number;
  /** The checkpoint restored from disk at start (its proof may be short), if any. */
  restoredAt: number | undefined;
  stableDigest: Uint8Array | undefined;
  stableProof: readonly ProofEntry[];
  /** The stable proof passed the check before and has not changed since: skip it. */
  proofChecked: boolean;
  /** Our own checkpoint digests and the checkpoints whose client tables we keep. */
  ownCheckpoints: ReadonlyMap<number, Uint8Array>;
  tableSnapshots: Iterable<number>;
  log: ReadonlyMap<number, Slot>;
  certs: ReadonlyMap<number, OwnCert>;
  /** A VIEW-CHANGE of ours waits for its NEW-VIEW. */
  viewChangeOut: boolean;
  /**
   * Slots and prepared certificates at or below this seq passed the last costly check and are
   * not walked again by this one (undefined: walk them all).
   */
  checkedThrough?: number;
  /** No slot lies above it (AgreementLog.highest): where a partial walk stops. */
  highestSlot?: number;
}

/** Returns what is broken, or undefined when every check holds. */
export function brokenInvariant(s: InvariantInput, costly: boolean): string | undefined {
  return cheapCheck(s) ?? (costly ? (logCheck(s) ?? checkpointCheck(s)) : undefined);
}

/**
 * Execution order: h <= last committed <= last executed <= last committed + 1 (one batch runs
 * tentatively at a time, never across a checkpoint boundary: checkpoints hold committed state).
 */
function cheapCheck(s: InvariantInput): string | undefined {
  const { lowWater: h, lastCommitted: c, lastExecuted: e } = s;
  if (!(0 <= h && h <= c && c <= e && e <= c + 1))
    return `need h <= committed <= executed <= committed + 1: h=${h} committed=${c} executed=${e}`;
  if (e > c && e % s.K === 0) return `tentative execution at checkpoint ${e}`;
  if (h % s.K !== 0) return `low water mark ${h} is not a checkpoint (K=${s.K})`;
  if (!s.stableDigest) return `no digest of our own for the stable checkpoint ${h}`;
  if (s.active && s.viewChangeOut) return 'active in a view while our VIEW-CHANGE is out';
  return undefined;
}

/**
 * Every slot is filed under its sequence number and lies below the highest point any rule may
 * accept one at; an executed slot has its batch and is not beyond the last executed; our own
 * prepare and commit in a slot name the one digest of its pre-prepare; our prepared
 * certificates lie above h and agree with the slot of their view.
 */
function logCheck(s: InvariantInput): string | undefined {
  const top = Math.max(s.lowWater + s.L, s.catchUpTo + s.L, s.lastCommitted + 1);
  const from = s.checkedThrough;
  if (from === undefined) {
    for (const [seq, slot] of s.log) {
      if (slot.seq !== seq) return `slot ${slot.seq} filed under ${seq}`;
      const broken = slotCheck(s, slot, top);
      if (broken !== undefined) return broken;
    }
  } else {
    // By number, not over the whole map: a partial walk runs after nearly every message, and
    // a log of some 270 slots cost 14 us a walk even unpacked (CPU profile of a replica).
    const last = Math.min(top, s.highestSlot ?? top);
    for (let seq = from + 1; seq <= last; seq++) {
      const slot = s.log.get(seq);
      if (slot === undefined) continue;
      if (slot.seq !== seq) return `slot ${slot.seq} filed under ${seq}`;
      const broken = slotCheck(s, slot, top);
      if (broken !== undefined) return broken;
    }
  }
  for (const seq of s.certs.keys()) {
    if (from !== undefined && seq <= from) continue;
    const c = s.certs.get(seq)!;
    if (seq <= s.lowWater) return `prepared certificate ${seq} at or below h=${s.lowWater}`;
    const slot = s.log.get(seq);
    if (slot?.pp && slot.view === c.view && !slot.pp.digest.equals(c.digest))
      return `two digests for view ${c.view}, seq ${seq}: certificate and slot`;
  }
  return undefined;
}

function slotCheck(s: InvariantInput, slot: Slot, top: number): string | undefined {
  const seq = slot.seq;
  if (seq > top) return `slot ${seq} above every window (h=${s.lowWater}, catch-up ${s.catchUpTo})`;
  if (slot.executed && (!slot.pp || seq > s.lastExecuted))
    return `slot ${seq} executed without its batch or beyond ${s.lastExecuted}`;
  const hex = slot.pp?.hex;
  const prep = slot.prepares.get(s.id);
  const commit = slot.commits.get(s.id);
  if ((prep !== undefined && prep !== hex) || (commit !== undefined && commit !== hex))
    return `our vote in slot ${seq} (view ${slot.view}) names another digest than its pre-prepare`;
  return undefined;
}

/**
 * Checkpoints: each kept one is a multiple of K at or above h with its client table kept; the
 * stable one's proof holds CHECKPOINT frames of distinct replicas for exactly (h, digest), and
 * 2f + 1 of them unless h is the initial state or the checkpoint restored from disk (whose
 * persisted proof may have been short; it fills up as the others re-send their votes).
 */
function checkpointCheck(s: InvariantInput): string | undefined {
  const snaps = new Set(s.tableSnapshots);
  for (const seq of s.ownCheckpoints.keys()) {
    if (seq % s.K !== 0 || seq < s.lowWater) return `own checkpoint ${seq} kept (h=${s.lowWater})`;
    if (!snaps.has(seq)) return `checkpoint ${seq} kept without its client table`;
  }
  if (snaps.size !== s.ownCheckpoints.size) return 'a client table kept without its checkpoint';
  return s.proofChecked ? undefined : proofCheck(s);
}

/** See checkpointCheck. */
function proofCheck(s: InvariantInput): string | undefined {
  const senders = new Set<number>();
  for (const p of s.stableProof) {
    const f = tryDecodeFrame(p.frame);
    const b = f?.body;
    if (!f || f.sender !== p.sender || b?.type !== MsgType.Checkpoint)
      return 'a proof entry is no CHECKPOINT of its sender';
    if (b.seq !== s.lowWater || !s.stableDigest!.every((x, i) => x === b.digest[i]))
      return `a proof entry votes for ${b.seq}, not for the stable checkpoint ${s.lowWater}`;
    if (senders.has(p.sender)) return `replica ${p.sender} twice in the stable proof`;
    senders.add(p.sender);
  }
  if (senders.size < quorum(s.n) && s.lowWater !== 0 && s.lowWater !== s.restoredAt)
    return `stable checkpoint ${s.lowWater} proved by ${senders.size} votes, fewer than 2f + 1`;
  return undefined;
}
