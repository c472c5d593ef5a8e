/**
 * Plain verdicts about replicas ("replica 2 is sending wrong replies") from what the replicas
 * and the relay observed from each other over the last FAULT_WINDOW_MS, and from which replicas
 * are down or failing their disk. Pure: statuses in, verdicts out.
 */
import { FAULT_KINDS, type FaultCounts, type FaultKind } from '@bfs/pbft';

/** The window fault counts are taken over (FaultWindow). */
export const FAULT_WINDOW_MS = 60_000;

/**
 * How many faults of a kind, within the window, make a verdict. An honest replica produces none
 * of these but for races: a bad MAC or two around a key refresh, a reply computed on a state a
 * view change then rolled back. One mismatching checkpoint digest or equivocation is already
 * proof; the others allow for such races.
 */
export const FAULT_THRESHOLDS: Readonly<Record<FaultKind, number>> = {
  wrongReply: 3,
  badMac: 10,
  digestMismatch: 1,
  rejectedProposal: 3,
  equivocation: 1,
};

const FAULT_TEXT: Readonly<Record<FaultKind, string>> = {
  wrongReply: 'is sending wrong replies',
  badMac: 'is sending frames with bad MACs (wrong keys, or a node impersonating it)',
  digestMismatch: 'is sending mismatching digests',
  rejectedProposal: 'is proposing what the others reject',
  equivocation: 'is equivocating (two different messages for the same slot)',
};

export type VerdictKind = FaultKind | 'down' | 'diskFailing';

export interface Verdict {
  replica: number;
  kind: VerdictKind;
  /** Faults of that kind in the window, summed over the observers (0 for down, diskFailing). */
  count: number;
  /** Who observed them: 'relay' or 'replica i'. */
  observers: string[];
  text: string;
}

/** What one node observed from each replica over the window (its FaultReport's `recent`). */
export interface FaultObservation {
  /** A replica id, or 'relay' for the relay's own client. */
  observer: number | 'relay';
  recent: FaultCounts[];
}

export interface VerdictInput {
  n: number;
  f: number;
  observations: FaultObservation[];
  /** Replicas whose status could not be had, with the reason. */
  down: { replica: number; error: string }[];
  diskFailing: number[];
}

/**
 * A replica is named for a kind of fault when the relay (the operator's own process) saw at
 * least the threshold from it, or f + 1 replicas did each: a lone Byzantine replica cannot get
 * a correct one named by accusing it.
 */
export function verdicts(input: VerdictInput): Verdict[] {
  const out: Verdict[] = [];
  for (const d of input.down)
    out.push({
      replica: d.replica,
      kind: 'down',
      count: 0,
      observers: [],
      text: `replica ${d.replica} is down (${d.error})`,
    });
  for (const r of input.diskFailing)
    out.push({
      replica: r,
      kind: 'diskFailing',
      count: 0,
      observers: [`replica ${r}`],
      text: `replica ${r} is failing disk writes: it votes no more until it restarts from disk`,
    });
  for (let r = 0; r < input.n; r++) {
    for (const kind of FAULT_KINDS) {
      const threshold = FAULT_THRESHOLDS[kind];
      const seen = input.observations
        .filter((o) => o.observer !== r)
        .map((o) => ({ o, count: o.recent[r]?.[kind] ?? 0 }))
        .filter((s) => s.count > 0);
      const byRelay = seen.some((s) => s.o.observer === 'relay' && s.count >= threshold);
      const replicas = seen.filter((s) => s.o.observer !== 'relay' && s.count >= threshold);
      if (!byRelay && replicas.length < input.f + 1) continue;
      const count = seen.reduce((a, s) => a + s.count, 0);
      const observers = seen.map((s) =>
        s.o.observer === 'relay' ? 'relay' : `replica ${s.o.observer}`,
      );
      out.push({
        replica: r,
        kind,
        count,
        observers,
        text:
          `replica ${r} ${FAULT_TEXT[kind]}: ${count} in the last ` +
          `${FAULT_WINDOW_MS / 1000} s, seen by ${observers.join(', ')}`,
      });
    }
  }
  return out.sort((a, b) => a.replica - b.replica);
}
