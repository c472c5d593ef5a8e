/**
 * The cluster's events (view changes and their cause, state transfers, recoveries, key
 * refreshes, replicas down and up, disk failures, digest disagreements, verdicts), derived by
 * comparing successive status snapshots; kept in a bounded ring. Pure: snapshots and times in.
 */
import type { ClusterStatus } from './status-page';
import type { ReplicaStatus } from './status';

/** Events the relay keeps (the oldest go first). */
export const TIMELINE_MAX_EVENTS = 500;

export type TimelineKind =
  | 'view-change'
  | 'state-transfer'
  | 'recovery'
  | 'key-refresh'
  | 'down'
  | 'up'
  | 'disk'
  | 'disagree'
  | 'verdict';

export interface TimelineEvent {
  /** Epoch milliseconds of the snapshot the event was seen in. */
  at: number;
  kind: TimelineKind;
  /** The replica concerned, or null for the cluster (a view change). */
  replica: number | null;
  text: string;
}

type Up = ReplicaStatus | undefined;

function upAt(s: ClusterStatus, i: number): Up {
  const r = s.replicas[i];
  return r && !('error' in r) ? r : undefined;
}

/** How much `key` of a replica's counters grew between two snapshots (0 if either is missing). */
function grew(a: Up, b: Up, pick: (r: ReplicaStatus) => Record<string, number>, key: string) {
  if (!a || !b) return 0;
  return Math.max(0, (pick(b)[key] ?? 0) - (pick(a)[key] ?? 0));
}

/** The events between snapshot `prev` (undefined: the first) and `next`, taken at `at`. */
export function diffEvents(
  prev: ClusterStatus | undefined,
  next: ClusterStatus,
  at: number,
): TimelineEvent[] {
  const out: TimelineEvent[] = [];
  const add = (kind: TimelineKind, replica: number | null, text: string) =>
    out.push({ at, kind, replica, text });
  next.replicas.forEach((r, i) => {
    const a = prev ? upAt(prev, i) : undefined;
    const b = upAt(next, i);
    const wasKnown = prev !== undefined;
    if ('error' in r && (!wasKnown || a)) add('down', i, `replica ${i} is down (${r.error})`);
    if (b && wasKnown && !a) add('up', i, `replica ${i} is up (view ${b.view})`);
    if (!b) return;
    if (grew(a, b, (s) => s.stats, 'stateTransferStarted') > 0)
      add('state-transfer', i, `replica ${i} started a state transfer`);
    if (grew(a, b, (s) => s.stats, 'stateTransferDone') > 0)
      add('state-transfer', i, `replica ${i} finished a state transfer (stable ${b.stable})`);
    if (b.recovering && (!a || !a.recovering))
      add('recovery', i, `replica ${i} is recovering (restarted; counts as the faulty one)`);
    if (a && a.recovering && !b.recovering) add('recovery', i, `replica ${i} recovered`);
    if (grew(a, b, (s) => s.keys, 'keyRefresh') > 0)
      add('key-refresh', i, `replica ${i} refreshed its session keys`);
    if (grew(a, b, (s) => s.keys, 'keyRefreshFailed') > 0)
      add('key-refresh', i, `replica ${i} FAILED to refresh its session keys`);
    const failed = b.disk?.failed;
    if (failed && !a?.disk?.failed)
      add(
        'disk',
        i,
        `replica ${i}: disk writes fail (${failed.what}: ${failed.code ?? failed.error})`,
      );
    if (!failed && a?.disk?.failed) add('disk', i, `replica ${i}: disk writes succeed again`);
  });
  const maxView = (s: ClusterStatus) =>
    Math.max(-1, ...s.replicas.flatMap((r) => ('error' in r ? [] : [r.view])));
  if (prev && maxView(next) > maxView(prev)) {
    const old = prev.primary;
    const oldUp = old === null ? undefined : upAt(next, old);
    const timeouts = next.replicas.reduce(
      (a, _, i) =>
        a + grew(prev && upAt(prev, i), upAt(next, i), (s) => s.stats, 'viewChangeTimeout'),
      0,
    );
    const cause =
      old !== null && !oldUp
        ? `primary ${old} unreachable`
        : timeouts > 0
          ? `view-change timers expired: primary ${old ?? '?'} made no progress`
          : 'cause not seen';
    add(
      'view-change',
      null,
      `view change to view ${maxView(next)}, primary ${next.primary ?? '?'} (${cause})`,
    );
  }
  for (const i of next.disagreeing)
    if (!prev || !prev.disagreeing.includes(i))
      add('disagree', i, `replica ${i}: checkpoint digest disagrees with the majority`);
  for (const v of next.verdicts) {
    if (v.kind === 'down') continue;
    const known = prev?.verdicts.some((p) => p.replica === v.replica && p.kind === v.kind);
    if (!known) add('verdict', v.replica, v.text);
  }
  return out;
}

/** A bounded ring of events, oldest first. */
export class Timeline {
  private readonly events: TimelineEvent[] = [];
  constructor(readonly max = TIMELINE_MAX_EVENTS) {}

  push(events: TimelineEvent[]): void {
    this.events.push(...events);
    if (this.events.length > this.max) this.events.splice(0, this.events.length - this.max);
  }

  list(): TimelineEvent[] {
    return [...this.events];
  }
}
