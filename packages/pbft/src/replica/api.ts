/** The replica core's public surface: its options, what it persists, and the actions it returns. */
import type { RequestVerifier } from '../request-signatures';

export interface ReplicaOptions {
  n: number;
  id: number;
  checkpointInterval?: number;
  logWindow?: number;
  maxBatchRequests?: number;
  maxBatchBytes?: number;
  maxOutstandingPrePrepares?: number;
  largeRequestBytes?: number;
  /** Execute once prepared, before commit (tentative execution). Default true. */
  tentative?: boolean;
  /** See IDLE_CHECKPOINT_MS (the default); 0 turns the null batches off. */
  idleCheckpointMs?: number;
  /**
   * Hold back a COMMIT while its batch is the only one in flight, to leave with this replica's
   * next message to the replicas (the next PRE-PREPARE or PREPARE) in one socket write, or at
   * the next tick. Default false: a read right after a write then waits for the tick at the
   * replicas whose read set misses a holder (docs/pbft.md, "Held commits").
   */
  holdCommits?: boolean;
  /**
   * Check the costly invariants too, after every step that returns actions (they walk the log
   * and decode the stable proof; see replica/invariants.ts). Default true; the cheap ones always
   * run. Off only for benchmarks: a broken invariant then goes unnoticed until a cheap one trips.
   */
  costlyInvariants?: boolean;
  statusIntervalMs?: number;
  resendIntervalMs?: number;
  /** Committed slots kept below the stable checkpoint for lagging peers (default L). */
  retainBelowStable?: number;
  /** Initial view-change timeout (doubles after each view change that fails). */
  viewChangeTimeoutMs?: number;
  /**
   * Ticks further apart than this mean the host did not run (CPU starvation, a long synchronous
   * state install, a GC pause): the view-change deadline moves on by the stall, at most one
   * view-change timeout per deadline, so that the messages queued meanwhile are read before the
   * timer blames the primary. Real hosts set it (REPLICA_STALL_MS); unset, the deterministic
   * simulator's schedules are unchanged.
   */
  stallGraceMs?: number;
  /**
   * Primary monitoring, rule 1 (replica/primary-monitor.ts): the longest a replica awaits one
   * request, from when it first learned of it, before it starts a view change, whatever else
   * commits meanwhile (ms; default REQUEST_TIMEOUT_TIMEOUTS view-change timeouts; 0: off).
   */
  requestTimeoutMs?: number;
  /**
   * Rules 2 and 3: the length of a window over which backups measure what the primary delivers
   * against what the recent views delivered (ms; default MONITOR_WINDOW_TIMEOUTS view-change
   * timeouts; 0: off).
   */
  monitorWindowMs?: number;
  /** The share of the expectation a window must deliver at the start of a view (MONITOR_MIN_SCORE). */
  monitorMinScore?: number;
  /** What that share rises by per judged window of a view (MONITOR_RISE_PER_WINDOW; 0: no rise). */
  monitorRisePerWindow?: number;
  /**
   * Rule 2's yardstick where no view set an expectation: agreements an awaited request may take
   * (MONITOR_YARDSTICK_AGREEMENTS; 0: off).
   */
  monitorYardstickAgreements?: number;
  /** A log-based catch-up that has not reached a known stable checkpoint after this long fetches its state. */
  stateTransferDelayMs?: number;
  fetchTimeoutMs?: number;
  /**
   * Restart from a persisted stable checkpoint (crash recovery): `service.state` must hold
   * checkpoint `seq` as its latest kept one. See `Replica.recovering` for what the replica
   * refrains from until it has caught up.
   */
  restore?: RestorePoint;
  /**
   * Restart without a persisted checkpoint (the replica ran before, in views up to this one, but
   * never persisted a stable checkpoint): start from the initial state, recovering.
   */
  rejoinAfterView?: number;
  /**
   * After a restart (with `restore` or `rejoinAfterView`): the prepared certificates this
   * replica persisted ('prepared' actions) above its restored checkpoint, in any order.
   */
  prepared?: PersistedCert[];
  /**
   * The host vouches that `prepared` holds every certificate this replica persisted above its
   * restored checkpoint (its log is intact and was kept from before any of them): it does not
   * count as `recovering`, since its VIEW-CHANGE can vouch for everything it acted on.
   */
  logIntact?: boolean;
  /**
   * Checks clients' signatures on read-write requests (docs/pbft.md, "Defenses"): the primary
   * orders only requests whose signature verifies, and a backup accepts a request in a
   * pre-prepare whose MAC fails for it when its signature verifies. Absent: request signatures
   * are off, the MAC attack of a faulty client makes correct replicas change views. The hosts
   * turn it on by default; the core has no keys of its own.
   */
  requestSignatures?: RequestVerifier;
}

/** A prepared certificate as persisted ('prepared' action), with its batch's large requests. */
export interface PersistedCert {
  seq: number;
  view: number;
  prePrepare: Uint8Array;
  prepares: Uint8Array[];
  large: Uint8Array[];
}

/** What a replica persists to restart from its own disk (with the page store at `seq`). */
export interface RestorePoint {
  seq: number;
  /** The last-reply table as of `seq` (`Action` 'stable' carries it). */
  replyTable: Uint8Array;
  /** The 2f + 1 CHECKPOINT frames that made `seq` stable (may be empty: liveness only). */
  proof: Uint8Array[];
  /** The last view the replica was in (the 'view' action); it sends nothing in views up to it. */
  view: number;
  /** Digest of checkpoint 0 (`Replica.initialDigest`), which VIEW-CHANGEs from 0 are checked against. */
  initialDigest: Uint8Array;
  /**
   * The last results themselves, of the table's entries that had them and are at most
   * MAX_RESTORED_RESULT_BYTES: after a restart of every replica, a client whose reply was lost
   * still gets it in full on retransmission (the table alone carries digests).
   */
  results?: { clientId: number; result: Uint8Array }[];
}

/** What the core asks its host to do. */
export type Action =
  | { kind: 'send'; to: number[]; bytes: Uint8Array }
  /** A batch executed at `seq` (tentative until `committed` for the same seq follows). */
  | {
      kind: 'executed';
      seq: number;
      digest: Uint8Array;
      nondet: Uint8Array;
      requests: { clientId: number; timestamp: number; op: Uint8Array; skipped: boolean }[];
      tentative: boolean;
    }
  /**
   * The batch at `seq` committed. `prePrepare` and `large` (its separately transmitted request
   * frames) are what `replayCommitted` needs to re-run it after a restart.
   */
  | {
      kind: 'committed';
      seq: number;
      digest: Uint8Array;
      prePrepare: Uint8Array;
      large: Uint8Array[];
    }
  /**
   * A checkpoint became stable: persist the page store at `seq` with `replyTable`; `proof`
   * holds 2f+1 frames.
   */
  | {
      kind: 'stable';
      seq: number;
      digest: Uint8Array;
      proof: Uint8Array[];
      replyTable: Uint8Array;
      /** See RestorePoint.results. */
      results: { clientId: number; result: Uint8Array }[];
    }
  /**
   * This replica prepared the batch at `seq` in `view` (OSDI 1999 section 4.3: the pre-prepare,
   * whole, and 2f matching prepares), the certificate a VIEW-CHANGE of ours would carry for it.
   * The durable point of an operation: the host writes it to stable storage before it performs
   * any later action, of this list or of later ones (our COMMIT and our tentative replies come
   * after it), and hands it back as `ReplicaOptions.prepared` after a restart. 2f + 1 tentative
   * replies (or f + 1 committed ones) thus prove that 2f + 1 replicas hold it on disk.
   */
  | {
      kind: 'prepared';
      seq: number;
      view: number;
      prePrepare: Uint8Array;
      prepares: Uint8Array[];
      large: Uint8Array[];
    }
  /** The replica moved to `view`: persist it before anything later in the same list is sent. */
  | { kind: 'view'; view: number }
  /** State transfer installed stable checkpoint `seq` (pages and bytes fetched for it). */
  | { kind: 'transferred'; seq: number; pages: number; bytes: number; ms: number };
