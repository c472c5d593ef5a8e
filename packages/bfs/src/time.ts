import type { NfsTime } from 'nfs-server-ts';

/**
 * The agreed time of a PBFT operation (BFS's non-deterministic value). The primary proposes its
 * clock; backups accept the proposal only if it is within MAX_CLOCK_SKEW_NS of their own clock;
 * every replica then executes with max(proposed, lastChosen + 1 ns), so time never runs backwards
 * and two operations never share a timestamp.
 */

/** Largest accepted distance between a proposed time and a backup's own clock (5 seconds). */
export const MAX_CLOCK_SKEW_NS = 5_000_000_000n;

const NS_PER_S = 1_000_000_000n;

export function timeToNs(t: NfsTime): bigint {
  return BigInt(t.seconds) * NS_PER_S + BigInt(t.nseconds);
}

export function nsToTime(ns: bigint): NfsTime {
  return { seconds: Number(ns / NS_PER_S), nseconds: Number(ns % NS_PER_S) };
}

export function isValidTime(t: NfsTime): boolean {
  return (
    Number.isSafeInteger(t.seconds) &&
    t.seconds >= 0 &&
    t.seconds <= 0xffffffff &&
    Number.isInteger(t.nseconds) &&
    t.nseconds >= 0 &&
    t.nseconds < 1e9
  );
}

/** max(proposed, lastChosen + 1 ns). */
export function agreeTime(proposed: NfsTime, lastChosen: NfsTime): NfsTime {
  const p = timeToNs(proposed);
  const next = timeToNs(lastChosen) + 1n;
  return nsToTime(p > next ? p : next);
}

export type TimeCheck = { ok: true } | { ok: false; reason: string };

/**
 * A backup's check of the primary's proposal against its own clock `local`: a well-formed
 * nfstime3 within `maxSkewNs` either way. (Being behind the last chosen value is not a fault:
 * agreeTime moves it forward.)
 */
export function checkProposedTime(
  proposed: NfsTime,
  local: NfsTime,
  maxSkewNs: bigint = MAX_CLOCK_SKEW_NS,
): TimeCheck {
  if (!isValidTime(proposed)) return { ok: false, reason: 'malformed time' };
  const d = timeToNs(proposed) - timeToNs(local);
  if (d > maxSkewNs) return { ok: false, reason: `proposed time ${d}ns ahead of the local clock` };
  if (-d > maxSkewNs) return { ok: false, reason: `proposed time ${-d}ns behind the local clock` };
  return { ok: true };
}

/** The current wall-clock time as an nfstime3 (for the primary's proposal, never for execution). */
export function wallClockTime(nowMs: number = Date.now()): NfsTime {
  const ms = Math.floor(nowMs);
  return { seconds: Math.floor(ms / 1000), nseconds: (ms % 1000) * 1_000_000 };
}
