/** The replica's settings, resolved once from its options; every part reads them, none writes. */
import {
  CHECKPOINT_INTERVAL,
  IDLE_CHECKPOINT_MS,
  LARGE_REQUEST_BYTES,
  LOG_WINDOW,
  MAX_BATCH_BYTES,
  MAX_BATCH_REQUESTS,
  MAX_FRAME_BYTES,
  MAX_OUTSTANDING_PREPREPARES,
  MAX_VIEW_CHANGE_FRAME_BYTES,
  MONITOR_DEMAND_SHARE,
  MONITOR_GRACE_WINDOWS,
  MONITOR_MIN_SCORE,
  MONITOR_RISE_PER_WINDOW,
  MONITOR_STRIKES,
  MONITOR_YARDSTICK_AGREEMENTS,
  MONITOR_YARDSTICK_MIN_TIMEOUTS,
  MONITOR_VIEWS,
  MONITOR_WINDOW_TIMEOUTS,
  REQUEST_TIMEOUT_MS_PER_MIB,
  REQUEST_TIMEOUT_TIMEOUTS,
  RESEND_INTERVAL_MS,
  RESEND_INTERVAL_TIMEOUTS,
  STATUS_INTERVAL_MS,
  VIEW_CHANGE_TIMEOUT_MS,
  maxFaulty,
  quorum,
} from '../constants';
import { forwardedNewViewBytes, maxNewViewBytes, maxViewChangeBytes } from '../codec';
import type { ReplicaOptions } from './api';
import type { MonitorSettings } from './primary-monitor';

export interface Settings {
  readonly n: number;
  readonly f: number;
  readonly id: number;
  readonly K: number;
  readonly L: number;
  /** The largest VIEW-CHANGE a correct replica sends (codec.ts); bigger ones are refused. */
  readonly maxViewChangeBytes: number;
  /** See Replica.maxReplicaFrameBytes. */
  readonly maxReplicaFrameBytes: number;
  readonly maxBatchRequests: number;
  readonly maxBatchBytes: number;
  readonly maxOutstanding: number;
  readonly largeRequestBytes: number;
  readonly tentative: boolean;
  readonly holdCommits: boolean;
  readonly idleCheckpointMs: number;
  readonly statusIntervalMs: number;
  readonly resendIntervalMs: number;
  readonly retainBelowStable: number;
  readonly viewChangeTimeoutMs: number;
  /** See ReplicaOptions.stallGraceMs. */
  readonly stallGraceMs: number | undefined;
  /** Primary monitoring (see ReplicaOptions.requestTimeoutMs and monitorWindowMs). */
  readonly monitor: MonitorSettings;
  /** See ReplicaOptions.costlyInvariants. */
  readonly costlyInvariants: boolean;
  readonly otherReplicas: number[];
}

/** Defaults and bounds; throws RangeError for options no cluster can run with. */
export function resolveSettings(opts: ReplicaOptions, authSelf: number): Settings {
  const n = opts.n;
  const id = opts.id;
  if (!Number.isInteger(id) || id < 0 || id >= n)
    throw new RangeError(`replica id ${id} outside 0..${n - 1}`);
  if (authSelf !== id) throw new RangeError('authenticator belongs to another node');
  const f = maxFaulty(n);
  const K = opts.checkpointInterval ?? CHECKPOINT_INTERVAL;
  const L = opts.logWindow ?? LOG_WINDOW;
  if (L < 2 * K) throw new RangeError('log window must hold two checkpoint intervals');
  const maxVC = maxViewChangeBytes(n, L, 2 * f);
  const newView = maxNewViewBytes(n, L, quorum(n), maxVC);
  const maxReplicaFrameBytes = Math.max(MAX_FRAME_BYTES, forwardedNewViewBytes(newView));
  if (maxReplicaFrameBytes > MAX_VIEW_CHANGE_FRAME_BYTES)
    throw new RangeError(
      `n = ${n} with a log window of ${L}: a NEW-VIEW may take ` +
        `${newView} bytes, above MAX_VIEW_CHANGE_FRAME_BYTES ` +
        `(${MAX_VIEW_CHANGE_FRAME_BYTES})`,
    );
  const viewChangeTimeoutMs = opts.viewChangeTimeoutMs ?? VIEW_CHANGE_TIMEOUT_MS;
  return {
    n,
    f,
    id,
    K,
    L,
    maxViewChangeBytes: maxVC,
    maxReplicaFrameBytes,
    maxBatchRequests: Math.min(opts.maxBatchRequests ?? MAX_BATCH_REQUESTS, MAX_BATCH_REQUESTS),
    maxBatchBytes: opts.maxBatchBytes ?? MAX_BATCH_BYTES,
    maxOutstanding: opts.maxOutstandingPrePrepares ?? MAX_OUTSTANDING_PREPREPARES,
    largeRequestBytes: opts.largeRequestBytes ?? LARGE_REQUEST_BYTES,
    tentative: opts.tentative ?? true,
    holdCommits: opts.holdCommits ?? false,
    idleCheckpointMs: opts.idleCheckpointMs ?? IDLE_CHECKPOINT_MS,
    statusIntervalMs: opts.statusIntervalMs ?? STATUS_INTERVAL_MS,
    resendIntervalMs:
      opts.resendIntervalMs ??
      Math.min(RESEND_INTERVAL_MS, RESEND_INTERVAL_TIMEOUTS * viewChangeTimeoutMs),
    retainBelowStable: opts.retainBelowStable ?? L,
    viewChangeTimeoutMs,
    stallGraceMs: opts.stallGraceMs,
    monitor: {
      requestTimeoutMs: opts.requestTimeoutMs ?? REQUEST_TIMEOUT_TIMEOUTS * viewChangeTimeoutMs,
      requestTimeoutMsPerMiB: REQUEST_TIMEOUT_MS_PER_MIB,
      windowMs: opts.monitorWindowMs ?? MONITOR_WINDOW_TIMEOUTS * viewChangeTimeoutMs,
      graceWindows: MONITOR_GRACE_WINDOWS,
      minScore: opts.monitorMinScore ?? MONITOR_MIN_SCORE,
      risePerWindow: opts.monitorRisePerWindow ?? MONITOR_RISE_PER_WINDOW,
      views: MONITOR_VIEWS,
      demandShare: MONITOR_DEMAND_SHARE,
      strikes: MONITOR_STRIKES,
      yardstickAgreements: opts.monitorYardstickAgreements ?? MONITOR_YARDSTICK_AGREEMENTS,
      yardstickMinMs: MONITOR_YARDSTICK_MIN_TIMEOUTS * viewChangeTimeoutMs,
    },
    costlyInvariants: opts.costlyInvariants ?? true,
    otherReplicas: Array.from({ length: n }, (_, i) => i).filter((i) => i !== id),
  };
}
