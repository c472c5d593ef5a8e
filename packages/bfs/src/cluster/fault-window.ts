/**
 * Cumulative fault counters (a core's FaultLedger) turned into counts over the last minutes: a
 * bounded series of samples, one per FAULT_SAMPLE_MS, none kept older than the window. Pure: the
 * caller passes the time.
 */
import { FAULT_KINDS, type FaultCounts, noFaults } from '@bfs/pbft';
import { FAULT_WINDOW_MS } from './verdicts';

/** How often the counters are sampled (the window's resolution). */
export const FAULT_SAMPLE_MS = 1000;

/** What a node observed from each replica: over the window and since the process started. */
export interface FaultReport {
  windowSeconds: number;
  /** Indexed by replica id. */
  recent: FaultCounts[];
  total: FaultCounts[];
}

export class FaultWindow {
  private samples: { at: number; counts: FaultCounts[] }[] = [];

  constructor(
    readonly windowMs = FAULT_WINDOW_MS,
    readonly sampleMs = FAULT_SAMPLE_MS,
  ) {}

  /** Records the cumulative `counts` at time `at` (ms); at most one sample per sampleMs. */
  sample(at: number, counts: FaultCounts[]): void {
    const last = this.samples[this.samples.length - 1];
    // Counters that went down were reset (a new core): the old samples mean nothing now.
    if (last && decreased(last.counts, counts)) this.samples = [];
    else if (last && at - last.at < this.sampleMs) return;
    this.samples.push({ at, counts: counts.map((c) => ({ ...c })) });
    while (this.samples.length > 1 && this.samples[1]!.at <= at - this.windowMs)
      this.samples.shift();
  }

  /** The counts of the last windowMs before `at`, from the cumulative `counts` now. */
  report(at: number, counts: FaultCounts[]): FaultReport {
    this.sample(at, counts);
    const base = this.samples[0]!;
    return {
      windowSeconds: this.windowMs / 1000,
      recent: counts.map((c, r) => {
        const b = base.counts[r] ?? noFaults();
        const out = noFaults();
        for (const k of FAULT_KINDS) out[k] = Math.max(0, c[k] - b[k]);
        return out;
      }),
      total: counts.map((c) => ({ ...c })),
    };
  }
}

function decreased(before: FaultCounts[], now: FaultCounts[]): boolean {
  return before.some((b, r) => FAULT_KINDS.some((k) => (now[r]?.[k] ?? 0) < b[k]));
}
