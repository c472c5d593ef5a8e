/**
 * The agreement log (OSDI 1999 sections 4.2-4.3): one slot per sequence number with its
 * pre-prepare, prepares and commits, the quorum rules over them, and our own prepared
 * certificates (what a VIEW-CHANGE of ours vouches for, kept beyond the slots they came from).
 */
import { primaryOf, quorum } from '../constants';
import type { PreparedCert } from '../codec';
import { Slot, emptySlot } from './slot';

/** Our prepared certificate for a sequence number: the view and digest it is for. */
export interface OwnCert {
  view: number;
  digest: Buffer;
  /** The pre-prepare whole (VIEW-CHANGEs carry it stripped): its body serves re-proposals. */
  cert: PreparedCert;
}

export class AgreementLog {
  readonly slots = new Map<number, Slot>();
  /** Own prepared certificates above h, the highest view per sequence number. */
  readonly certs = new Map<number, OwnCert>();
  /** Sequence numbers of slots that became prepared and may not have executed (read-only rule). */
  readonly preparedAhead = new Set<number>();
  /** Slots whose pre-prepare waits for a separately transmitted request. */
  readonly waiting = new Set<number>();
  /** The highest seq a slot was ever made for: no slot lies above it. */
  highest = -1;

  constructor(
    private readonly n: number,
    private readonly f: number,
    private readonly id: number,
  ) {}

  get(seq: number): Slot | undefined {
    return this.slots.get(seq);
  }

  /** The slot for `seq`, created (ordered in `view`) if there is none. */
  slot(seq: number, view: number, now: number): Slot {
    let s = this.slots.get(seq);
    if (!s) {
      this.slots.set(seq, (s = emptySlot(seq, view, now)));
      if (seq > this.highest) this.highest = seq;
    }
    return s;
  }

  /**
   * Whether other replicas vouch for a batch: f + 1 commits or 2f prepares (from backups) of its
   * digest include a correct replica, which checked the nondet value when it was proposed.
   */
  vouched(slot: Slot, digest: Buffer): boolean {
    const hex = digest.toString('hex');
    let commits = 0;
    for (const [r, d] of slot.commits) if (r !== this.id && d === hex) commits++;
    if (commits >= this.f + 1) return true;
    let prepares = 0;
    const primary = primaryOf(slot.view, this.n);
    for (const [r, d] of slot.prepares) if (r !== this.id && r !== primary && d === hex) prepares++;
    return prepares >= 2 * this.f;
  }

  /**
   * The prepares that make `slot` prepared: 2f frames from distinct backups matching its
   * pre-prepare (OSDI 1999 section 4.2), or undefined while there are fewer.
   */
  preparedProof(slot: Slot): Uint8Array[] | undefined {
    const pp = slot.pp;
    if (!pp) return undefined;
    const primary = primaryOf(slot.view, this.n);
    const matching: Uint8Array[] = [];
    for (const [r, d] of slot.prepares) {
      const fr = slot.prepareFrames.get(r);
      if (r !== primary && d === pp.hex && fr) matching.push(fr);
    }
    return matching.length < 2 * this.f ? undefined : matching;
  }

  /** Commits that match the slot's pre-prepare. */
  matchingCommits(slot: Slot): number {
    if (!slot.pp) return 0;
    const hex = slot.pp.hex;
    let k = 0;
    for (const d of slot.commits.values()) if (d === hex) k++;
    return k;
  }

  /** Whether 2f + 1 matching commits are in: committed-local once prepared too. */
  hasCommitQuorum(slot: Slot): boolean {
    return this.matchingCommits(slot) >= quorum(this.n);
  }

  /**
   * Checkpoint `seq` became stable: certificates up to it go, and slots up to `keepFrom`
   * (committed slots stay a while below h so a lagging peer can still catch up from them).
   */
  discardThrough(seq: number, keepFrom: number): void {
    for (const s of this.slots.keys()) if (s <= keepFrom) this.slots.delete(s);
    for (const s of this.certs.keys()) if (s <= seq) this.certs.delete(s);
    // Only reads prune this set as they go: a write-only load would otherwise grow it forever.
    for (const s of this.preparedAhead) if (s <= seq) this.preparedAhead.delete(s);
  }
}
