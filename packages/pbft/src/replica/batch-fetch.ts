/**
 * BATCH-FETCH: a NEW-VIEW re-proposes batches by digest, and a replica that lacks a body asks
 * one of the replicas whose certificates named it (they prepared the batch), another one each
 * round (one may have crashed, or lie). The answering side is rate-limited per peer.
 */
import type { BatchFetchMsg } from '../codec';
import type { Slot } from './slot';

export class BatchFetch {
  /**
   * Slots of this view re-proposed by digest whose bodies we lack. A new primary orders nothing
   * new until they are in: it cannot tell which queued requests they already hold.
   */
  readonly missing = new Set<number>();
  private round = 0;
  private lastAt = -Infinity;
  /** When we last answered each peer's BATCH-FETCH (one answer per half re-send interval). */
  private readonly answeredAt = new Map<number, number>();

  /** Whether to ask again: bodies are missing and the last round is `intervalMs` old. */
  due(now: number, intervalMs: number): boolean {
    return this.missing.size > 0 && now - this.lastAt >= intervalMs;
  }

  /**
   * A round: which peer to ask for which missing bodies of `view`. Rebuilds `missing` from the
   * log (bodies that arrived meanwhile drop out).
   */
  plan(
    slots: Iterable<Slot>,
    view: number,
    id: number,
    others: number[],
    now: number,
  ): Map<number, BatchFetchMsg['wanted']> {
    this.lastAt = now;
    this.missing.clear();
    const wanted = new Map<number, BatchFetchMsg['wanted']>();
    for (const slot of slots) {
      const h = slot.header;
      if (!h || slot.pp || slot.view !== view) continue;
      const from = h.sources.filter((r) => r !== id);
      const peers = from.length > 0 ? from : others;
      const peer = peers[(slot.seq + this.round) % peers.length]!;
      if (!wanted.has(peer)) wanted.set(peer, []);
      wanted.get(peer)!.push({ seq: slot.seq, digest: h.digest });
      this.missing.add(slot.seq);
    }
    if (wanted.size > 0) this.round++;
    return wanted;
  }

  /** Whether to answer `sender` now (at most once per `minGapMs`). */
  mayAnswer(sender: number, now: number, minGapMs: number): boolean {
    const last = this.answeredAt.get(sender) ?? -Infinity;
    if (now - last < minGapMs) return false;
    this.answeredAt.set(sender, now);
    return true;
  }

  /** Checkpoint `seq` became stable: bodies at or below it are no longer wanted. */
  discardThrough(seq: number): void {
    for (const s of this.missing) if (s <= seq) this.missing.delete(s);
  }
}
