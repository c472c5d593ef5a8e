/**
 * Primary monitoring (Aardvark, Clement et al., NSDI 2009, section 4.3), beside the view-change
 * timer that restarts at every commit (view-change.ts): three rules that need no commit to be
 * missing, each a reason for a backup to start a view change.
 *
 * 1. The per-request timer: the oldest request this replica still awaits, counted from when it
 *    first learned of it (or from the start of the view, or of the last pause), may be at most
 *    `requestTimeoutMs` old, plus `requestTimeoutMsPerMiB` per MiB of requests awaited. Other
 *    requests' commits do not restart it, so a primary that leaves some clients out is found.
 * 2. Adaptive expectations: over windows of `windowMs` during which requests were awaited
 *    (`demandShare` of the window), a backup measures what the primary delivered: requests and
 *    bytes committed per second, and the mean time an awaited request stayed awaited (Little's
 *    law: the awaited count integrated over the window, divided by the awaited requests that
 *    committed). A window scores the best of its three ratios to the expectation (the best
 *    window of each of the last `views` views): a lone client's sequential operations deliver
 *    little throughput at low latency, a bulk load of large requests few requests but many
 *    bytes, a loaded service high throughput at a higher latency, and only a slow primary is
 *    poor at all three. `strikes` judged windows in a row below the bar are a reason to replace
 *    the primary (one window can lose most of its commits to one lost message).
 * 3. Regular view changes: the bar starts at `minScore` and rises by `risePerWindow` with every
 *    window judged in the view (Aardvark raises its required throughput while a view lasts), so
 *    a primary that only just meets the expectation is replaced soon, and even one that delivers
 *    the best the recent views did after (1 - minScore) / risePerWindow judged windows: a slow
 *    primary holds a bounded share of the time.
 *
 * Where no view has set an expectation yet (the first view, or every replica restarted), a
 * backup judges by a yardstick the primary cannot stretch: the window's mean time from a
 * pre-prepare to its commit here, which the backups' own prepares and commits make (2f + 1 of
 * them need no message of the primary after its pre-prepare). A correct primary keeps a request
 * waiting for about one batch in flight before it proposes it, so an awaited request commits
 * within a few agreements: the yardstick is `yardstickAgreements` of them, but at least
 * `yardstickMinMs`, for the latency measure (rates have no yardstick).
 *
 * The first `graceWindows` windows of a view are neither judged nor remembered (the backlog of
 * the view change drains then). A window in which no awaited request committed is not judged
 * either: a primary that orders nothing at all is rule 1's and the commit timer's to find, and
 * a faulty client's requests no correct primary orders (a bad signature) would otherwise make
 * every quiet window look like a primary delivering nothing. Before a window closes the host
 * verifies what it still awaits (verify before blaming, view-change.ts) and takes each request
 * forgotten for a bad signature out of the window's measure (`forget`). Pure: the clock comes
 * with each call.
 */

/** The monitor's settings (Settings.monitor, from ReplicaOptions and constants.ts). */
export interface MonitorSettings {
  /** Rule 1's limit (ms); 0 turns rule 1 off. */
  readonly requestTimeoutMs: number;
  /** Added to rule 1's limit per MiB of requests awaited (ms). */
  readonly requestTimeoutMsPerMiB: number;
  /** A window's length (ms); 0 turns rules 2 and 3 off. */
  readonly windowMs: number;
  /** Windows at the start of a view that are not judged. */
  readonly graceWindows: number;
  /** The bar at the start of a view (a share of the expectation). */
  readonly minScore: number;
  /** What the bar rises by with every window judged in the view. */
  readonly risePerWindow: number;
  /** Views whose best windows make the expectation. */
  readonly views: number;
  /** Share of a window with requests awaited for it to count. */
  readonly demandShare: number;
  /** Judged windows in a row below the bar that make a verdict. */
  readonly strikes: number;
  /** The yardstick: agreements an awaited request may take where no view set an expectation. */
  readonly yardstickAgreements: number;
  /** ... but at least this long (ms). */
  readonly yardstickMinMs: number;
}

/** What one window delivered, or (as an expectation) the best that windows delivered. */
export interface Delivery {
  /** Requests committed per second. */
  readonly rate: number;
  /** Request bytes committed per second. */
  readonly byteRate: number;
  /** Mean time an awaited request stayed awaited (ms); Infinity when none committed. */
  readonly latencyMs: number;
}

/** What the monitor reads of the awaited requests at a tick (RequestQueue). */
export interface AwaitedLoad {
  readonly count: number;
  readonly bytes: number;
  /** When this replica first learned of the oldest one; undefined when none is awaited. */
  readonly oldestSince: number | undefined;
}

/** Why a backup replaces the primary: rules 1, 2 and 3. */
export type Verdict = 'requestTimeout' | 'slowPrimary' | 'termEnded';

const MIB = 1024 * 1024;

/** A window against the expectation: the best of its throughput, byte and latency ratios. */
export function score(w: Delivery, e: Delivery): number {
  // An infinite expectation is none (the yardstick's rates): its ratio is 0.
  const rate = e.rate > 0 ? w.rate / e.rate : 1;
  const bytes = e.byteRate > 0 ? w.byteRate / e.byteRate : 1;
  const latency = Number.isFinite(w.latencyMs) ? e.latencyMs / Math.max(w.latencyMs, 1e-9) : 0;
  return Math.max(rate, bytes, latency);
}

/** The best of two deliveries, measure by measure. */
export function best(a: Delivery, b: Delivery): Delivery {
  return {
    rate: Math.max(a.rate, b.rate),
    byteRate: Math.max(a.byteRate, b.byteRate),
    latencyMs: Math.min(a.latencyMs, b.latencyMs),
  };
}

export class PrimaryMonitor {
  /** Request ages count from here at the earliest (start of the view or of the last pause). */
  private agesFrom: number | undefined;
  private windowFrom = 0;
  private lastSampleAt = 0;
  private demandMs = 0;
  private awaitedMs = 0;
  private requests = 0;
  private bytes = 0;
  private served = 0;
  /** Pre-prepare to commit times of the window's batches: their sum (ms) and count. */
  private agreementMs = 0;
  private agreements = 0;
  /** Windows closed and windows judged in this view. */
  private windows = 0;
  private judged = 0;
  /** Judged windows in a row below the bar. */
  private below = 0;
  /** The best window of each earlier view (newest last, at most `views - 1`) and of this one. */
  private readonly history: Delivery[] = [];
  private current: Delivery | undefined;

  constructor(private readonly s: MonitorSettings) {}

  /** The bar a judged window must reach now (rule 3 raises it). */
  get bar(): number {
    return this.s.minScore + this.s.risePerWindow * this.judged;
  }

  /** What the recent views delivered at best; undefined before any window counted. */
  get expectation(): Delivery | undefined {
    let e = this.current;
    for (const h of this.history) e = e ? best(e, h) : h;
    return e;
  }

  /** A view became active at `now`: ages and windows start over, the last view's best is kept. */
  enterView(now: number): void {
    if (this.current) {
      this.history.push(this.current);
      if (this.history.length > Math.max(0, this.s.views - 1)) this.history.shift();
    }
    this.current = undefined;
    this.windows = 0;
    this.judged = 0;
    this.below = 0;
    this.pause(now);
  }

  /**
   * What this replica saw since `now` cannot be held against the primary (its host stalled, it
   * installed a checkpoint, it is catching up): ages count from `now`, the window starts over.
   */
  pause(now: number): void {
    this.agesFrom = now;
    this.startWindow(now);
  }

  private startWindow(now: number): void {
    this.windowFrom = now;
    this.lastSampleAt = now;
    this.demandMs = 0;
    this.awaitedMs = 0;
    this.requests = 0;
    this.bytes = 0;
    this.served = 0;
    this.agreementMs = 0;
    this.agreements = 0;
  }

  /** Whether the window closes at the tick at `now` (the host verifies before it does). */
  windowDue(now: number): boolean {
    return (
      this.s.windowMs > 0 && this.agesFrom !== undefined && now - this.windowFrom >= this.s.windowMs
    );
  }

  /**
   * An awaited request this replica learned of at `since` was forgotten (its signature failed):
   * the time it was sampled as awaited in this window no longer counts against the primary.
   */
  forget(since: number): void {
    const counted = this.lastSampleAt - Math.max(since, this.windowFrom);
    if (counted > 0) this.awaitedMs = Math.max(0, this.awaitedMs - counted);
  }

  /** A batch committed here, `agreementMs` after its pre-prepare (undefined: not seen). */
  onCommitted(requests: number, bytes: number, served: number, agreementMs?: number): void {
    this.requests += requests;
    this.bytes += bytes;
    this.served += served;
    if (agreementMs !== undefined) {
      this.agreementMs += agreementMs;
      this.agreements++;
    }
  }

  /** What the yardstick expects of the window just closed (no rates: latency alone). */
  private yardstick(): Delivery {
    const agreement = this.agreements > 0 ? this.agreementMs / this.agreements : 0;
    return {
      rate: Infinity,
      byteRate: Infinity,
      latencyMs: Math.max(this.s.yardstickAgreements * agreement, this.s.yardstickMinMs),
    };
  }

  /**
   * A tick of the active view at `now`. `judge`: whether this replica may blame the primary
   * (a backup); the primary only measures, for the views it will judge later.
   */
  tick(now: number, load: AwaitedLoad, judge: boolean): Verdict | undefined {
    if (this.agesFrom === undefined) {
      this.pause(now);
      return undefined;
    }
    if (this.requestTooOld(now, load)) return 'requestTimeout';
    if (this.s.windowMs <= 0) return undefined;
    const dt = now - this.lastSampleAt;
    this.lastSampleAt = now;
    if (load.count > 0) {
      this.demandMs += dt;
      this.awaitedMs += load.count * dt;
    }
    if (now - this.windowFrom < this.s.windowMs) return undefined;
    return this.closeWindow(now, judge);
  }

  /** Rule 1. */
  private requestTooOld(now: number, load: AwaitedLoad): boolean {
    if (this.s.requestTimeoutMs <= 0 || load.oldestSince === undefined) return false;
    const limit = this.s.requestTimeoutMs + (this.s.requestTimeoutMsPerMiB * load.bytes) / MIB;
    return now - Math.max(load.oldestSince, this.agesFrom!) >= limit;
  }

  /** Rules 2 and 3, at the end of a window. */
  private closeWindow(now: number, judge: boolean): Verdict | undefined {
    const elapsed = now - this.windowFrom;
    const w: Delivery = {
      rate: (1000 * this.requests) / elapsed,
      byteRate: (1000 * this.bytes) / elapsed,
      latencyMs: this.served > 0 ? this.awaitedMs / this.served : Infinity,
    };
    const counts =
      this.windows >= this.s.graceWindows &&
      this.demandMs >= this.s.demandShare * elapsed &&
      this.served > 0;
    // Before the window's measures are cleared; only while no earlier view set an expectation.
    const yard =
      this.history.length === 0 && this.s.yardstickAgreements > 0 ? this.yardstick() : undefined;
    this.windows++;
    this.startWindow(now);
    if (!counts) return undefined;
    const e = this.expectation;
    const bar = this.bar;
    this.current = this.current ? best(this.current, w) : w;
    if (!judge || (!e && !yard)) return undefined;
    this.judged++;
    // Against its own best (rule 3 still ends the view) and, while it is the only measure, the
    // yardstick too (a primary slow from the start is its own best).
    const sc = Math.min(e ? score(w, e) : Infinity, yard ? score(w, yard) : Infinity);
    this.below = sc >= bar ? 0 : this.below + 1;
    if (this.below < this.s.strikes) return undefined;
    return sc < this.s.minScore ? 'slowPrimary' : 'termEnded';
  }
}
