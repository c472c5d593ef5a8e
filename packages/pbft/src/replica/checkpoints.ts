/**
 * Checkpoints and water marks (OSDI 1999 section 4.3): the digests of the checkpoints this
 * replica took, the CHECKPOINT votes of every replica, and the stable checkpoint with its proof
 * of 2f + 1 matching votes, which sets the low water mark h. The log window is h .. h + L.
 */
import { MAX_CHECKPOINT_VOTES_PER_SENDER, quorum } from '../constants';
import type { CheckpointMsg } from '../codec';
import type { FaultLedger } from '../faults';
import type { Outbox } from './outbox';

/** One replica's CHECKPOINT frame in a proof. */
export interface ProofEntry {
  sender: number;
  frame: Uint8Array;
}

/**
 * What a vote leads to, for the replica to act on: `stable`, our own checkpoint reached 2f + 1
 * matching votes; `corrupt`, 2f + 1 replicas agree on another digest than ours; `ahead`, a
 * quorum-proved checkpoint we did not take (we are behind); `weak`, f + 1 votes (a correct
 * replica's among them) for a checkpoint at or beyond our high water mark that we did not take.
 */
export type VoteOutcome =
  | { kind: 'stable'; seq: number; digest: Buffer; proof: ProofEntry[] }
  | { kind: 'corrupt' | 'ahead' | 'weak'; seq: number; digest: Buffer; proof: ProofEntry[] };

export class Checkpoints {
  /** Low water mark h: the last stable checkpoint. */
  lowWater = 0;
  /** Proof of the stable checkpoint: 2f+1 matching CHECKPOINT frames (may be empty after a restore). */
  stableProof: ProofEntry[] = [];
  /** Bumped whenever the stable proof changes (the invariant checker re-checks it then). */
  proofVersion = 0;
  /** The digests of the checkpoints we took and still keep, by sequence number. */
  readonly own = new Map<number, Buffer>();
  /** Votes above h (and far above: how a replica that fell behind learns it must fetch state). */
  private readonly votes = new Map<number, Map<number, { hex: string; frame: Uint8Array }>>();
  /**
   * A checkpoint every replica voted for without 2f + 1 matching digests: replicas executed
   * different histories up to it, so it can never become stable. Undefined while none was seen.
   */
  splitAt: number | undefined;

  constructor(
    private readonly n: number,
    private readonly f: number,
    private readonly id: number,
    private readonly K: number,
    private readonly L: number,
    private readonly faults: FaultLedger,
    private readonly io: Outbox,
  ) {}

  /** Highest sequence number accepted: H = h + L. */
  get highWater(): number {
    return this.lowWater + this.L;
  }

  /** Digest of the state at the stable checkpoint. */
  get stableDigest(): Buffer | undefined {
    return this.own.get(this.lowWater);
  }

  /** The votes we hold for `seq`, by sender (for the invariant checker and tests). */
  votesAt(seq: number): ReadonlyMap<number, { hex: string; frame: Uint8Array }> | undefined {
    return this.votes.get(seq);
  }

  /** A CHECKPOINT from another replica. */
  onVote(sender: number, msg: CheckpointMsg, frame: Uint8Array): VoteOutcome | undefined {
    const h = this.lowWater;
    if (msg.seq === h && this.own.get(h)?.equals(msg.digest)) {
      this.refreshProof(sender, frame);
      return undefined;
    }
    if (msg.seq === h && this.own.has(h)) this.faults.note(sender, 'digestMismatch');
    if (msg.seq <= h) return void this.io.count('dropOldCheckpoint');
    if (msg.seq % this.K !== 0) return void this.io.count('dropCheckpointOutOfRange');
    // Each sender has a bounded number of pending votes; its lowest goes first.
    const mine = [...this.votes].filter(([, v]) => v.has(sender)).map(([q]) => q);
    if (mine.length >= MAX_CHECKPOINT_VOTES_PER_SENDER && !mine.includes(msg.seq)) {
      const lowest = Math.min(...mine);
      if (msg.seq < lowest) return void this.io.count('dropCheckpointOutOfRange');
      this.votes.get(lowest)!.delete(sender);
      this.io.count('evictCheckpointVote');
    }
    return this.record(sender, msg.seq, msg.digest, frame);
  }

  /** Records a vote (ours or another's) and says what it leads to. */
  record(
    sender: number,
    seq: number,
    digest: Uint8Array,
    frame: Uint8Array,
  ): VoteOutcome | undefined {
    let votes = this.votes.get(seq);
    if (!votes) this.votes.set(seq, (votes = new Map()));
    const hex = Buffer.from(digest).toString('hex');
    votes.set(sender, { hex, frame });
    this.noteVote(votes, sender, hex);
    const matching = [...votes].filter(([, v]) => v.hex === hex);
    const proof = matching.map(([s, v]) => ({ sender: s, frame: v.frame }));
    const agreed = Buffer.from(digest);
    if (matching.length < quorum(this.n)) {
      this.checkSplit(votes, seq);
      // f + 1 votes include a correct replica's: a state some correct replica committed. Where
      // our log window ends there, the log cannot bring us to it and the checkpoint cannot
      // become stable without our vote (the others' commit logs outran ours before a restart of
      // every replica): fetch it, then vote.
      if (matching.length >= this.f + 1 && seq >= this.highWater && !this.own.has(seq))
        return { kind: 'weak', seq, digest: agreed, proof };
      return undefined;
    }
    // 2f + 1 replicas vouch for this digest at seq: a stable checkpoint.
    const own = this.own.get(seq);
    if (own && own.toString('hex') === hex) return { kind: 'stable', seq, digest: own, proof };
    return { kind: own ? 'corrupt' : 'ahead', seq, digest: agreed, proof };
  }

  /**
   * Every replica voted and no digest can reach 2f + 1: the histories forked, which no protocol
   * step mends (docs/operations.md, "Replicas whose histories forked").
   */
  private checkSplit(votes: Map<number, { hex: string }>, seq: number): void {
    if (votes.size !== this.n || (this.splitAt !== undefined && seq >= this.splitAt)) return;
    const counts = new Map<string, number>();
    for (const v of votes.values()) counts.set(v.hex, (counts.get(v.hex) ?? 0) + 1);
    if (Math.max(...counts.values()) >= quorum(this.n)) return;
    this.splitAt = seq;
    this.io.count('checkpointSplit');
  }

  /**
   * Fault attribution for the checkpoint vote `sender` just cast: once 2f + 1 replicas vouch for
   * one digest, every vote for another is a mismatching digest, counted once per vote.
   */
  private noteVote(votes: Map<number, { hex: string }>, sender: number, hex: string): void {
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

  /** Makes `seq` the stable checkpoint: h moves up, older votes and digests go. */
  advance(seq: number, proof: ProofEntry[]): void {
    this.lowWater = seq;
    this.stableProof = proof;
    this.proofVersion++;
    for (const s of this.votes.keys()) if (s < seq) this.votes.delete(s);
    for (const s of this.own.keys()) if (s < seq) this.own.delete(s);
  }

  /** Our checkpoints above h are gone (a state transfer replaced the state under them). */
  dropAboveStable(): void {
    for (const s of this.own.keys()) if (s > this.lowWater) this.own.delete(s);
  }

  /** A fresher CHECKPOINT frame of `sender` for our stable checkpoint replaces its old one. */
  refreshProof(sender: number, frame: Uint8Array): void {
    const i = this.stableProof.findIndex((p) => p.sender === sender);
    if (i >= 0) this.stableProof[i] = { sender, frame };
    else this.stableProof.push({ sender, frame });
    this.proofVersion++;
    this.io.count('proofRefreshed');
  }
}
