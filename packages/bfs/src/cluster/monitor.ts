/**
 * The relay's monitor behind its status page: every MONITOR_INTERVAL_MS one snapshot of the
 * cluster (clusterStatus, with the relay's own fault observations), the events between
 * successive snapshots (timeline.ts), and the relay's own measurements of the calls it
 * forwarded: operations and latency percentiles per second, for the last SERIES_SECONDS.
 */
import type { FaultCounts } from '@bfs/pbft';
import type { ClusterConfig } from './config';
import type { WriteBackSource } from './metrics';
import { FaultWindow } from './fault-window';
import { type ClusterStatus, clusterStatus } from './status-page';
import { Timeline, type TimelineEvent, diffEvents } from './timeline';

export const MONITOR_INTERVAL_MS = 1000;
/** Seconds of operations and latency the page charts. */
export const SERIES_SECONDS = 120;
/** Latencies kept per second for its percentiles (beyond it, a deterministic sample). */
const LATENCIES_PER_SECOND = 4096;

/** One second of calls the relay forwarded. */
export interface SeriesPoint {
  /** Epoch milliseconds of the start of the second. */
  t: number;
  ops: number;
  errors: number;
  readOnly: number;
  /** Latency percentiles in milliseconds; null when no call completed in that second. */
  p50: number | null;
  p90: number | null;
  p99: number | null;
}

/** Calls of one NFS procedure over the last PROCEDURE_WINDOW_MS. */
export interface ProcedureLatency {
  procedure: string;
  calls: number;
  errors: number;
  /** Milliseconds; of the last LATENCIES_PER_PROCEDURE calls at most. */
  p50: number;
  p90: number;
  p99: number;
}

/** The write-back buffer between two samples (about a second): rates, and what it held after. */
export interface WriteBackPoint {
  /** Epoch milliseconds of the sample. */
  t: number;
  /** UNSTABLE WRITEs answered from the buffer, per second. */
  buffered: number;
  /** Flush operations started, per second. */
  flushes: number;
  /** Data bytes flushed, per second. */
  flushedBytes: number;
  /** Flushed extents the replicas refused, per second. */
  flushErrors: number;
  /** What the buffer held at the sample (WriteBackGauges). */
  dirtyBytes: number;
  dirtyFiles: number;
}

/** Write-back samples turned into per-second rates, the last SERIES_SECONDS; pure. */
export class WriteBackSeries {
  private readonly points: WriteBackPoint[] = [];
  private last: { t: number; stats: WriteBackSource['stats'] } | undefined;

  constructor(readonly seconds = SERIES_SECONDS) {}

  sample(now: number, s: WriteBackSource): void {
    const prev = this.last;
    this.last = { t: now, stats: { ...s.stats } };
    if (!prev || now <= prev.t) return;
    const perSecond = (k: keyof WriteBackSource['stats']) =>
      ((s.stats[k] - prev.stats[k]) * 1000) / (now - prev.t);
    this.points.push({
      t: now,
      buffered: perSecond('buffered'),
      flushes: perSecond('flushOps'),
      flushedBytes: perSecond('flushedBytes'),
      flushErrors: perSecond('flushErrors'),
      dirtyBytes: s.gauges.dirtyBytes,
      dirtyFiles: s.gauges.dirtyFiles,
    });
    if (this.points.length > this.seconds) this.points.shift();
  }

  list(): WriteBackPoint[] {
    return [...this.points];
  }
}

/** What GET /api/status answers: the cluster now, the charts' series and the events. */
export interface RelayView extends ClusterStatus {
  series: SeriesPoint[];
  /** The write-back buffer's activity; null when it is off (--no-write-back). */
  writeBack: WriteBackPoint[] | null;
  procedures: ProcedureLatency[];
  events: TimelineEvent[];
}

/** The window of the per-procedure latencies. */
export const PROCEDURE_WINDOW_MS = 60_000;
/** Calls kept per procedure (the latest; older ones beyond it are forgotten early). */
const LATENCIES_PER_PROCEDURE = 2048;
/** Procedures tracked at most (NFSv3, v2 and MOUNT have fewer than this). */
const MAX_PROCEDURES = 64;

/** Latency percentiles per procedure over a sliding window; pure, the caller passes the time. */
export class ProcedureLatencies {
  private readonly calls = new Map<string, { at: number; ms: number; ok: boolean }[]>();

  constructor(readonly windowMs = PROCEDURE_WINDOW_MS) {}

  observe(now: number, procedure: string, ms: number, ok: boolean): void {
    let list = this.calls.get(procedure);
    if (!list) {
      if (this.calls.size >= MAX_PROCEDURES) return;
      this.calls.set(procedure, (list = []));
    }
    list.push({ at: now, ms, ok });
    if (list.length > LATENCIES_PER_PROCEDURE) list.shift();
  }

  /** Each procedure called within the window, busiest first. */
  list(now: number): ProcedureLatency[] {
    const out: ProcedureLatency[] = [];
    for (const [procedure, list] of this.calls) {
      while (list.length > 0 && list[0]!.at <= now - this.windowMs) list.shift();
      if (list.length === 0) continue;
      const sorted = list.map((c) => c.ms).sort((a, b) => a - b);
      out.push({
        procedure,
        calls: list.length,
        errors: list.filter((c) => !c.ok).length,
        p50: quantile(sorted, 0.5)!,
        p90: quantile(sorted, 0.9)!,
        p99: quantile(sorted, 0.99)!,
      });
    }
    return out.sort((a, b) => b.calls - a.calls || a.procedure.localeCompare(b.procedure));
  }
}

/** The q-quantile (0..1) of sorted `xs`, nearest rank. */
export function quantile(sorted: number[], q: number): number | null {
  if (sorted.length === 0) return null;
  const k = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[k]!;
}

/** Per-second buckets of observed calls; pure, the caller passes the time. */
export class CallSeries {
  private readonly points: SeriesPoint[] = [];
  private second = -1;
  private latencies: number[] = [];
  private current = { ops: 0, errors: 0, readOnly: 0 };

  constructor(readonly seconds = SERIES_SECONDS) {}

  observe(now: number, readOnly: boolean, ms: number, ok: boolean): void {
    this.roll(now);
    const c = this.current;
    c.ops++;
    if (!ok) c.errors++;
    if (readOnly) c.readOnly++;
    if (this.latencies.length < LATENCIES_PER_SECOND) this.latencies.push(ms);
    else this.latencies[c.ops % LATENCIES_PER_SECOND] = ms;
  }

  /** The completed seconds up to `now`, oldest first (seconds without calls count zero). */
  list(now: number): SeriesPoint[] {
    this.roll(now);
    return [...this.points];
  }

  private roll(now: number): void {
    const s = Math.floor(now / 1000);
    if (this.second < 0) this.second = s;
    while (this.second < s) {
      const sorted = this.latencies.sort((a, b) => a - b);
      this.points.push({
        t: this.second * 1000,
        ...this.current,
        p50: quantile(sorted, 0.5),
        p90: quantile(sorted, 0.9),
        p99: quantile(sorted, 0.99),
      });
      if (this.points.length > this.seconds) this.points.shift();
      this.latencies = [];
      this.current = { ops: 0, errors: 0, readOnly: 0 };
      // A long idle gap: only the last `seconds` of it matter.
      this.second = Math.max(this.second + 1, s - this.seconds);
    }
  }
}

export class RelayMonitor {
  private readonly timeline = new Timeline();
  private readonly calls = new CallSeries();
  private readonly procedures = new ProcedureLatencies();
  private readonly window = new FaultWindow();
  private last: ClusterStatus | undefined;
  private lastAt = 0;
  private pending: Promise<ClusterStatus> | undefined;
  private timer: NodeJS.Timeout | undefined;

  private readonly writeBackSeries = new WriteBackSeries();

  constructor(
    private readonly cfg: ClusterConfig,
    private readonly faults: () => FaultCounts[],
    /** The relay's write-back buffer, undefined when it is off. */
    private readonly writeBack: () => WriteBackSource | undefined = () => undefined,
  ) {}

  /** Polls the replicas every MONITOR_INTERVAL_MS until stop(). */
  start(): void {
    void this.poll();
    this.timer = setInterval(() => void this.poll(), MONITOR_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Records one call the relay forwarded (Relay's `observe`). */
  observe(readOnly: boolean, seconds: number, ok: boolean, procedure: string): void {
    const now = Date.now();
    this.calls.observe(now, readOnly, seconds * 1000, ok);
    this.procedures.observe(now, procedure, seconds * 1000, ok);
  }

  /**
   * The latest snapshot, fetched now if there is none yet or it is older than two intervals;
   * the relay's own observations in it are always of now (they cost nothing to read).
   */
  async status(): Promise<ClusterStatus> {
    const now = Date.now();
    if (this.last && now - this.lastAt < 2 * MONITOR_INTERVAL_MS)
      return { ...this.last, relayFaults: this.window.report(now, this.faults()) };
    return this.poll();
  }

  async view(): Promise<RelayView> {
    const s = await this.status();
    const now = Date.now();
    return {
      ...s,
      series: this.calls.list(now),
      writeBack: this.writeBack() ? this.writeBackSeries.list() : null,
      procedures: this.procedures.list(now),
      events: this.timeline.list(),
    };
  }

  private poll(): Promise<ClusterStatus> {
    if (this.pending) return this.pending;
    const now = Date.now();
    const relayFaults = this.window.report(now, this.faults());
    const wb = this.writeBack();
    if (wb) this.writeBackSeries.sample(now, wb);
    this.pending = clusterStatus(this.cfg, MONITOR_INTERVAL_MS, relayFaults)
      .then((s) => {
        this.timeline.push(diffEvents(this.last, s, now));
        this.last = s;
        this.lastAt = now;
        return s;
      })
      .finally(() => {
        this.pending = undefined;
      });
    return this.pending;
  }
}
