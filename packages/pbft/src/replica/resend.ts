/**
 * Re-sends (OSDI 1999 leaves them to the implementation): slots that made no progress for a
 * re-send interval go out again, and a peer whose STATUS shows it stopped behind what we
 * committed gets the messages of the slots it lacks. What each peer reported is kept here too:
 * f + 1 peers ahead of us mean we are the one behind (no view change of our own then).
 */
import { MAX_RESEND_SLOTS, primaryOf } from '../constants';
import { MsgType, StatusMsg } from '../codec';
import { MacAuthenticator, prePrepareAuthDigest } from '../crypto';
import type { AgreementLog } from './log';
import type { Outbox } from './outbox';
import { Slot, phaseMsg } from './slot';

export class Resender {
  /** When each peer last reported, in our view, execution beyond ours. */
  private readonly peersAheadAt = new Map<number, number>();
  /** What we last re-sent to each lagging peer: from which sequence number, and when. */
  private readonly resentTo = new Map<number, { from: number; at: number }>();
  /** The last execution point each peer reported in a STATUS of our view. */
  private readonly reportedExecuted = new Map<number, number>();
  private lastStuckScan = -Infinity;

  constructor(
    private readonly n: number,
    private readonly id: number,
    private readonly auth: MacAuthenticator,
    private readonly io: Outbox,
    private readonly log: AgreementLog,
    private readonly otherReplicas: number[],
    private readonly statusIntervalMs: number,
    private readonly resendIntervalMs: number,
    /** Committed slots kept below the stable checkpoint for lagging peers. */
    private readonly retainBelowStable: number,
  ) {}

  /** How many peers reported execution beyond ours within the last `windowMs`. */
  peersAhead(windowMs: number): number {
    let ahead = 0;
    for (const at of this.peersAheadAt.values()) if (this.io.now - at <= windowMs) ahead++;
    return ahead;
  }

  /**
   * A STATUS of our view from `sender`; `active` and `lastCommitted` are ours. Re-sends the
   * slots the peer lacks when it needs them.
   */
  onStatus(
    sender: number,
    msg: StatusMsg,
    active: boolean,
    lastCommitted: number,
    lowWater: number,
  ): void {
    const now = this.io.now;
    if (active && msg.lastExecuted > lastCommitted) this.peersAheadAt.set(sender, now);
    else this.peersAheadAt.delete(sender);
    const previous = this.reportedExecuted.get(sender);
    this.reportedExecuted.set(sender, msg.lastExecuted);
    if (msg.lastExecuted >= lastCommitted) return;
    // Under load every peer is a batch or two behind what we committed, its messages in flight:
    // re-sending those doubled a tenth of all PRE-PREPAREs (measured: 60-77 of 547 batches per
    // replica). A peer needs them only when it has stopped, or when the first slot it lacks
    // committed here more than a STATUS interval ago.
    const next = this.log.get(msg.lastExecuted + 1);
    if (
      previous !== undefined &&
      msg.lastExecuted > previous &&
      next !== undefined &&
      now - next.lastProgress < this.statusIntervalMs
    )
      return this.io.count('peerBehindInFlight');
    const oldest = lowWater - this.retainBelowStable;
    if (msg.lastExecuted < oldest || next === undefined) {
      // Behind our log: only state transfer can bring it forward.
      this.io.count('peerNeedsStateTransfer');
      return;
    }
    // The same slots again only once the peer had time to use them (it reports every 100 ms;
    // re-sending on each report buried a lagging replica under duplicates).
    const prev = this.resentTo.get(sender);
    if (prev && prev.from === msg.lastExecuted && now - prev.at < 2 * this.resendIntervalMs)
      return this.io.count('resendToLaggingPeerHeld');
    this.resentTo.set(sender, { from: msg.lastExecuted, at: now });
    const last = Math.min(lastCommitted, msg.lastExecuted + MAX_RESEND_SLOTS);
    for (let s = msg.lastExecuted + 1; s <= last; s++) {
      const slot = this.log.get(s);
      if (slot?.pp) this.resendSlot(sender, slot);
    }
  }

  private resendSlot(peer: number, slot: Slot): void {
    this.io.count('resendToLaggingPeer');
    if (peer !== primaryOf(slot.view, this.n)) {
      this.io.send([peer], this.prePrepareFrameFor(slot));
      this.sendLargeRequests([peer], slot);
    }
    // Sealed afresh, not the frame we keep: a peer that replaced its keys since (a restart)
    // drops a frame sealed under the old ones. Multicast authenticators: a prepare may end up
    // in the peer's prepared certificate.
    if (slot.sentPrepare)
      this.io.send([peer], this.auth.sealMulticast(phaseMsg(MsgType.Prepare, slot), this.n));
    if (slot.sentCommit)
      this.io.send([peer], this.auth.sealMulticast(phaseMsg(MsgType.Commit, slot), this.n));
  }

  /**
   * Re-sends our messages for slots of `view` stuck for a re-send interval. Slots count as
   * stuck after resendIntervalMs without progress: looking every quarter of that is enough,
   * where a look every tick cost a loaded replica several percent of its CPU (the log holds up
   * to two windows of slots).
   */
  resendStuck(lowWater: number, view: number, passiveThroughView: number): void {
    const now = this.io.now;
    if (now - this.lastStuckScan < this.resendIntervalMs / 4) return;
    this.lastStuckScan = now;
    for (const slot of this.log.slots.values()) {
      if (slot.seq <= lowWater || now - slot.lastProgress < this.resendIntervalMs) continue;
      // Messages of an earlier view are dropped by every replica in this one. And after a restart
      // we send nothing in views we may have voted in: the slots our commit log re-ran are among
      // them (re-sending those, large requests and all, every interval once flooded the links
      // and starved the restarted replica's own state transfer).
      if (slot.view !== view || slot.view <= passiveThroughView) continue;
      // A slot a NEW-VIEW re-proposed may be committed here from the earlier view while the
      // others still need our messages of this view to commit it.
      if (slot.committed && this.log.hasCommitQuorum(slot)) continue;
      slot.lastProgress = now;
      this.io.count('resendStuckSlot');
      if (slot.pp && this.id === primaryOf(slot.view, this.n)) {
        this.io.send(this.otherReplicas, this.prePrepareFrameFor(slot));
        this.sendLargeRequests(this.otherReplicas, slot);
      }
      if (slot.sentPrepare) this.multicastPhase(MsgType.Prepare, slot);
      if (slot.sentCommit) this.multicastPhase(MsgType.Commit, slot);
    }
  }

  private multicastPhase(type: MsgType.Prepare | MsgType.Commit, slot: Slot): void {
    this.io.send(this.otherReplicas, this.auth.sealMulticast(phaseMsg(type, slot), this.n));
  }

  /**
   * A slot's PRE-PREPARE to re-send. The frame as kept carries MACs under the keys of its time,
   * which a peer that replaced its keys since (a restart, or two refreshes) refuses: a lagging
   * replica restarted from disk dropped every re-sent slot as a bad MAC, could not catch up
   * until the next checkpoint, and timed out into a view change of its own. The primary re-seals
   * its own; anyone else can only pass the primary's frame on.
   */
  private prePrepareFrameFor(slot: Slot): Uint8Array {
    const pp = slot.pp!;
    if (this.id !== primaryOf(slot.view, this.n)) return pp.frame;
    const auth = prePrepareAuthDigest(this.id, slot.view, slot.seq, pp.digest);
    return this.auth.sealMulticast(pp.msg, this.n, auth);
  }

  /** Separately transmitted requests of a slot, for peers that may have missed the client's copy. */
  private sendLargeRequests(to: number[], slot: Slot): void {
    const pp = slot.pp!;
    pp.msg.entries.forEach((e, i) => {
      const r = pp.requests[i];
      if ('digest' in e && r) this.io.send(to, r.frame);
    });
  }
}
