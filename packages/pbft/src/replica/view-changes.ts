/**
 * The VIEW-CHANGE set (OSDI 1999 section 4.4): the latest checked VIEW-CHANGE of each replica
 * (only the highest view, so bounded by n), our own one while it waits for its NEW-VIEW, and
 * the NEW-VIEW of the current view with what peers still behind were sent or vouched of it.
 */
import type { CheckedViewChange } from './new-view';

export class ViewChangeSet {
  private readonly byReplica = new Map<number, CheckedViewChange>();
  /** Our VIEW-CHANGE, repeated until the NEW-VIEW arrives, and when we last sent it. */
  own: Uint8Array | undefined;
  ownSentAt = -Infinity;
  /** The NEW-VIEW that started the current view, forwarded to peers still behind. */
  newView: Uint8Array | undefined;
  private readonly forwardedAt = new Map<number, number>();
  /** The NEW-VIEW each replica last forwarded us (its view and digest), while we are behind. */
  private readonly vouches = new Map<number, { view: number; hex: string }>();

  /** Whether we hold a VIEW-CHANGE of `sender` for `view` or a later one. */
  holds(sender: number, view: number): boolean {
    const had = this.byReplica.get(sender);
    return had !== undefined && had.view >= view;
  }

  record(c: CheckedViewChange): void {
    this.byReplica.set(c.sender, c);
  }

  /** How many replicas ask for `view`. */
  asking(view: number): number {
    let k = 0;
    for (const c of this.byReplica.values()) if (c.view === view) k++;
    return k;
  }

  /** The VIEW-CHANGEs for views beyond `view`. */
  beyond(view: number): CheckedViewChange[] {
    return [...this.byReplica.values()].filter((c) => c.view > view);
  }

  /** Up to `q` VIEW-CHANGEs for `view`, in arrival order. */
  forView(view: number, q: number): CheckedViewChange[] {
    return [...this.byReplica.values()].filter((c) => c.view === view).slice(0, q);
  }

  /** View `v` started with `newView`: the VIEW-CHANGEs and vouches up to it are spent. */
  enter(v: number, newView: Uint8Array): void {
    this.own = undefined;
    this.newView = newView;
    this.forwardedAt.clear();
    for (const [r, x] of this.vouches) if (x.view <= v) this.vouches.delete(r);
    for (const [r, c] of this.byReplica) if (c.view <= v) this.byReplica.delete(r);
  }

  /** Whether to forward the NEW-VIEW to `peer` now (at most once per `minGapMs`). */
  mayForward(peer: number, now: number, minGapMs: number): boolean {
    const last = this.forwardedAt.get(peer) ?? -Infinity;
    if (now - last < minGapMs) return false;
    this.forwardedAt.set(peer, now);
    return true;
  }

  /** `sender` forwarded us the NEW-VIEW with hash `hex`: how many replicas vouch for it now. */
  vouch(sender: number, view: number, hex: string): number {
    this.vouches.set(sender, { view, hex });
    let k = 0;
    for (const v of this.vouches.values()) if (v.hex === hex) k++;
    return k;
  }
}
