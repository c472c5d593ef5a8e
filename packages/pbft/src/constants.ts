/** Named settings of the replication library, with the original PBFT code's values. */

/** Requests executed between checkpoints (K). */
export const CHECKPOINT_INTERVAL = 128;
/** Log window L = 2K: sequence numbers accepted above the low water mark. */
export const LOG_WINDOW = 2 * CHECKPOINT_INTERVAL;
/** Client retransmission timeout: initial value and clamp, in milliseconds. */
export const CLIENT_RETRANSMIT_INITIAL_MS = 150;
export const CLIENT_RETRANSMIT_MIN_MS = 10;
export const CLIENT_RETRANSMIT_MAX_MS = 1000;
/**
 * A client waits this much longer than its retransmission timeout (beyond its clamp) per MiB of
 * requests its process has outstanding, this one included: a large request's bytes go to every
 * replica and queue behind the others', and with the timeout alone most 1 MiB write-back flushes
 * of a new relay were sent again to every replica. 100 ms a MiB allows for 10 MiB/s through
 * agreement.
 */
export const CLIENT_RETRANSMIT_MS_PER_MIB = 100;
/**
 * With a quorum of digest replies but no full result, the client waits this long (or
 * CLIENT_FULL_RESULT_GRACE_SRTT smoothed completion times, if longer) for the designated
 * replier before asking every replica for the full result. The replier's reply is often just
 * behind the others; asking at once made a fifth of all requests under load cost four extra
 * full replies.
 */
export const CLIENT_FULL_RESULT_GRACE_MS = 5;
/**
 * Under load the replier's REPLY-BATCH can trail the others by a scheduler time slice: with one
 * smoothed completion time of grace, 0.7-0.9% of requests still asked every replica. A slow
 * replier costs this wait once per client id: the next request designates another replica.
 */
export const CLIENT_FULL_RESULT_GRACE_SRTT = 2;

/** Largest f such that n >= 3f + 1. */
export function maxFaulty(n: number): number {
  if (!Number.isSafeInteger(n) || n < 4)
    throw new RangeError(`PBFT needs n >= 4 replicas, got ${n}`);
  return Math.floor((n - 1) / 3);
}

/**
 * Certificate size: 2f + 1 when n = 3f + 1. For larger n it is ceil((n + f + 1) / 2), the least
 * size at which any two quorums share at least one correct replica.
 */
export function quorum(n: number): number {
  return Math.ceil((n + maxFaulty(n) + 1) / 2);
}

/** Replies a client needs to accept a committed result: f + 1. */
export function replyQuorum(n: number): number {
  return maxFaulty(n) + 1;
}

/** Primary of view v: v mod n. */
export function primaryOf(view: number, n: number): number {
  return view % n;
}

/** Digest length in bytes (SHA-256). */
export const DIGEST_BYTES = 32;
/** MAC length in bytes: HMAC-SHA256 truncated to 128 bits (RFC 2104 section 5 allows >= 80). */
export const MAC_BYTES = 16;
/**
 * Largest operation a client may submit, in bytes: an NFS WRITE of 1 MiB (BFS's MAX_IO_SIZE)
 * plus its headers fits, and so does a write-back flush of that much data. Bulk bandwidth
 * depends on it: agreement, MACs and the commit log cost per operation, not per byte.
 */
export const MAX_OP_BYTES = 1024 * 1024 + 64 * 1024;
/** Largest result a replica may return, in bytes: a READ of 1 MiB plus its headers fits. */
export const MAX_RESULT_BYTES = 1024 * 1024 + 64 * 1024;
/**
 * Largest last result a restore point keeps whole (RestorePoint.results): enough for every
 * NFS result but a large READ or READDIR that went read-write, whose client gets only digests
 * after a restart of every replica. 32 client ids of a relay make at most 512 KiB a checkpoint.
 */
export const MAX_RESTORED_RESULT_BYTES = 16 * 1024;
/** Largest non-deterministic value the primary may propose, in bytes. */
export const MAX_NONDET_BYTES = 64;
/** Requests larger than this travel separately to every replica; pre-prepares carry their digest. */
export const LARGE_REQUEST_BYTES = 1024;
/**
 * Whether clients send every read-write request to all replicas at once (Aardvark, NSDI 2009
 * section 4.1), not to the primary alone: each backup times the request from when the client
 * sent it (the per-request timer), so a primary cannot hold one for longer than that timeout
 * unseen. Costs each backup one small frame and one MAC check per request; pre-prepares still
 * carry small requests whole.
 */
export const REQUESTS_TO_ALL = true;
/** Most requests one pre-prepare may carry. */
export const MAX_BATCH_REQUESTS = 256;
/** Most bytes of inline requests one pre-prepare may carry. */
export const MAX_BATCH_BYTES = 256 * 1024;
/** Pre-prepares the primary keeps in flight (assigned, not yet committed); more requests batch up. */
export const MAX_OUTSTANDING_PREPREPARES = 2;
/**
 * Largest body of one REPLY-BATCH, in bytes: the replies of one executed batch to one client
 * process go in as few batches of at most this size as they fit; a reply bigger than this on its
 * own goes as a REPLY.
 */
export const MAX_REPLY_BATCH_BYTES = 64 * 1024;
/** Largest frame any node accepts, in bytes; anything bigger is malformed. */
export const MAX_FRAME_BYTES = MAX_BATCH_BYTES + MAX_OP_BYTES + 64 * 1024;
/**
 * Largest VIEW-CHANGE or NEW-VIEW frame, in bytes, accepted only between replicas. Both carry
 * batch digests, never batches (PBFT's digest-only view change), so their size depends on n and
 * the log window only (codec.ts, `maxViewChangeBytes` and `maxNewViewBytes`): with n = 4 and the
 * default window a NEW-VIEW is at most 317 KiB, under MAX_FRAME_BYTES; with n = 7, 1.1 MiB. A
 * replica refuses a configuration whose largest NEW-VIEW would not fit in this (about n > 19 at
 * the default window).
 */
export const MAX_VIEW_CHANGE_FRAME_BYTES = 16 * 1024 * 1024;
/**
 * Session keys a node keeps after retiring them, per peer, to check frames quoted in
 * certificates (prepared certificates, checkpoint proofs, VIEW-CHANGEs in a NEW-VIEW), which
 * carry the MACs of when they were sent: an hour of refreshes at the default period. Never used
 * for a message received directly.
 */
export const MAX_QUOTED_KEY_EPOCHS = 60;
/**
 * A primary that ordered nothing for this long (ms) with the last batch above its stable
 * checkpoint fills the rest of the checkpoint interval with null batches, so that an idle
 * service keeps no prepared certificates above a stable checkpoint: certificates quote frames
 * under the keys of when they were sent, and a VIEW-CHANGE quoting keys retired beyond
 * MAX_QUOTED_KEY_EPOCHS would be refused everywhere.
 */
export const IDLE_CHECKPOINT_MS = 10_000;
/** Largest replica group the codec accepts (MAC vector length). */
export const MAX_REPLICAS = 64;
/** Requests a replica keeps that are not yet ordered (large requests, forwarded ones). */
export const MAX_STORED_REQUESTS = 4096;
/**
 * A replica handles copies of one client's same request (same timestamp and designated
 * replier) at most once per this interval (ms) at first, twice this after the next copy it
 * handled, and so on (up to RETRANSMISSION_MAX_INTERVAL_MS): re-sending the reply, relaying it
 * to the primary, waiting for it again; copies in between are dropped on their header, before
 * any hash or MAC (`dropRetransmissionTooSoon`). A correct client's copies come further apart:
 * its retransmission timeout is at least CLIENT_RETRANSMIT_MIN_MS and doubles with each copy,
 * and its one copy asking everyone for the full result (replier -1, a different key) comes
 * CLIENT_FULL_RESULT_GRACE_MS or more after the request. A client that sends faster gets about
 * log2(RETRANSMISSION_MAX_INTERVAL_MS / RETRANSMISSION_INTERVAL_MS) copies of a request handled,
 * then two a second.
 */
export const RETRANSMISSION_INTERVAL_MS = 5;
/** The longest interval of RETRANSMISSION_INTERVAL_MS's doubling: half the client's longest. */
export const RETRANSMISSION_MAX_INTERVAL_MS = 500;
/**
 * What a client frame the replica refuses (on its header, malformed, from an unknown sender, a
 * bad MAC) costs its connection in the input scheduler's deficit, on top of its bytes: a
 * connection sending what is refused, cheap as each refusal is, gets a small share of the
 * replica's input (a 200-byte copy counts as some 80), while a correct client, whose frames are
 * all handled, keeps its share. Client connections only: a correct replica's stale frames after
 * a view change must not delay the rest of its input.
 */
export const REFUSED_INPUT_PENALTY_BYTES = 16 * 1024;
/**
 * Refused frames (as for REFUSED_INPUT_PENALTY_BYTES) a client connection may deliver within
 * REFUSED_FRAMES_WINDOW_MS before the transport stops reading it for a while
 * (REFUSED_THROTTLE_MS): the penalty bounds the share of each round such a connection gets, but
 * rounds come thousands of times a second when the replica is idle enough, so without a bound
 * on the rate a client re-sending as fast as it can still cost each replica a core's worth of
 * reads and header checks. A correct client is refused a copy only when it re-sends sooner than
 * the retransmission bound allows, far below this rate even when a relay re-sends its whole
 * window at once.
 */
export const MAX_REFUSED_FRAMES_PER_WINDOW = 256;
export const REFUSED_FRAMES_WINDOW_MS = 100;
/**
 * How long a client connection over MAX_REFUSED_FRAMES_PER_WINDOW is not read (TCP holds the
 * client back; what it already queued waits): REFUSED_THROTTLE_MS the first time, doubling with
 * each throttle that follows within REFUSED_THROTTLE_MAX_MS of the last one's end, up to
 * REFUSED_THROTTLE_MAX_MS. A client sending only what is refused gets at most
 * MAX_REFUSED_FRAMES_PER_WINDOW frames a second read once it is at the longest pause.
 */
export const REFUSED_THROTTLE_MS = 50;
export const REFUSED_THROTTLE_MAX_MS = 1000;
/** Clients whose last handled copy a replica remembers for that bound (the oldest go first). */
export const MAX_RETRANSMISSION_RECORDS = 4096;
/**
 * Bytes of request frames each of those sets (large request bodies, requests awaited) keeps at
 * most, the oldest going first: with operations of up to MAX_OP_BYTES the count alone would
 * allow gigabytes. 128 MiB is over a hundred of the largest requests, nearly four times what a
 * relay's 32 client ids have outstanding at once.
 */
export const MAX_STORED_REQUEST_BYTES = 128 * 1024 * 1024;
/**
 * Largest client signature a REQUEST carries, in bytes: an ECDSA P-256 signature in its fixed
 * IEEE P1363 form (r | s) is exactly this; a longer one is malformed. See docs/pbft.md,
 * "Defenses".
 */
export const MAX_REQUEST_SIGNATURE_BYTES = 64;
/**
 * Outcomes of request signature checks a replica remembers, by request digest, the oldest
 * forgotten first: a retransmission, a re-queue after a view change or a request inside a
 * pre-prepare that this replica checked already costs no second verification (84 us each).
 * As many as the requests it stores.
 */
export const REQUEST_SIGNATURE_CACHE_ENTRIES = MAX_STORED_REQUESTS;
/** Requests the primary queues for ordering; beyond it clients must retransmit later. */
export const MAX_PENDING_REQUESTS = 16384;
/** Read-only requests a replica queues while it has tentative state. */
export const MAX_PENDING_READ_ONLY = 1024;
/** Interval of STATUS messages by which replicas learn what a lagging peer misses (ms). */
export const STATUS_INTERVAL_MS = 100;
/**
 * How often at most a replica's costly invariant check walks every slot of its log (on a tick);
 * between those walks each step walks only the slots where agreement is under way (see
 * `Replica.end`). Every tick (10 ms) walked some 270 slots a time under a sequential NFS load.
 */
export const FULL_INVARIANT_CHECK_INTERVAL_MS = 100;
/** A slot stuck this long without committing has its protocol messages re-sent (ms). */
export const RESEND_INTERVAL_MS = 200;
/**
 * ... or this share of the view-change timeout, if less: every replica that awaits the slot's
 * requests (clients send them to all, REQUESTS_TO_ALL) times out together, so a slot that lost
 * a message must get at least a few re-sends before the timeout (as with the defaults).
 */
export const RESEND_INTERVAL_TIMEOUTS = 0.2;
/** Slots re-sent to one lagging peer per STATUS message. */
export const MAX_RESEND_SLOTS = 32;
/** Node ids below this are replicas' range; client ids start here (leaves room for n <= 64). */
export const FIRST_CLIENT_ID = 1000;
/** Prepared certificates one VIEW-CHANGE (and pre-prepares one NEW-VIEW) may carry: a log window. */
export const MAX_VIEW_CHANGE_CERTS = 4096;
/**
 * A backup waiting this long for a request it knows about to execute starts a view change; the
 * timeout doubles with every view change that does not complete (OSDI 1999 section 4.5.2).
 */
export const VIEW_CHANGE_TIMEOUT_MS = 1000;
/**
 * Primary monitoring (replica/primary-monitor.ts, Aardvark section 4.3), rule 1: a replica that
 * has awaited one request for this many view-change timeouts since it first learned of it (and
 * since the view started) starts a view change, whatever else committed meanwhile. Two: under
 * the bench's 256 outstanding clients a correct primary's p99 is about a tenth of a timeout, and
 * a request awaited from before a view change gets a whole limit in the new view.
 */
export const REQUEST_TIMEOUT_TIMEOUTS = 2;
/**
 * A backup relays a request it awaits to the primary every this many view-change timeouts until
 * it sees it committed, REQUEST_RELAYS times at most: the primary's copy from the client (sent
 * to all) may have been lost, and the client's next retransmission may come after the
 * per-request timer (its backoff reaches CLIENT_RETRANSMIT_MAX_MS). A quarter: correct primaries
 * commit nearly every request well within it, and it leaves rule 1 (REQUEST_TIMEOUT_TIMEOUTS)
 * several relays.
 */
export const REQUEST_RELAY_TIMEOUTS = 0.25;
/**
 * Most relays of one request by one backup (REQUEST_RELAY_TIMEOUTS): at most this many copies
 * of each of a slow primary's awaited requests per backup, large ones included.
 */
export const REQUEST_RELAYS = 3;
/**
 * Added to that limit per MiB of requests the replica awaits (ms): large requests under a bulk
 * load queue behind each other, as for the clients' CLIENT_RETRANSMIT_MS_PER_MIB (10 MiB/s).
 */
export const REQUEST_TIMEOUT_MS_PER_MIB = 100;
/** Rule 2: a measurement window lasts this many view-change timeouts. */
export const MONITOR_WINDOW_TIMEOUTS = 1;
/** Windows at the start of a view that are neither judged nor remembered (the backlog drains). */
export const MONITOR_GRACE_WINDOWS = 2;
/**
 * A window that delivers less than this share of the expectation (the best of its throughput,
 * byte-throughput and latency ratios) replaces the primary: low enough that a loaded host's
 * noise (windows of one fault-free run differ by up to half) does not.
 */
export const MONITOR_MIN_SCORE = 0.3;
/**
 * Rule 3: the bar rises by this with every window judged in a view, so a view whose primary
 * delivers just what the best recent window did ends at the 38th judged window (the second in
 * a row above a bar of 1). What share of the time a slow primary gets does not depend on it
 * (a primary that delivers x of the best keeps a view for (x - MONITOR_MIN_SCORE) / rise
 * windows, a correct one for about (1 - MONITOR_MIN_SCORE) / rise): it sets how often correct
 * primaries pay a view change. At 0.05, with every backup awaiting every request, the
 * fault-free bench changed views every 10-15 s, each costing its window's p99 about 1 s.
 */
export const MONITOR_RISE_PER_WINDOW = 0.02;
/** Views (this one included) whose best windows make the expectation. */
export const MONITOR_VIEWS = 4;
/** Share of a window during which requests must be awaited for it to count. */
export const MONITOR_DEMAND_SHARE = 0.9;
/**
 * Judged windows in a row below the bar that replace the primary: in the simulator's lossy
 * sweeps (300 ms windows, re-sends after 200 ms) single windows of a correct primary fell
 * below 0.3 of the best one when a message was lost.
 */
export const MONITOR_STRIKES = 2;
/**
 * Rule 2's yardstick where no view has set an expectation (the first view, or after every
 * replica restarted): an awaited request may take this many pre-prepare-to-commit times on
 * average (a correct primary holds it for about one batch in flight, then it takes one more);
 * with the bar at MONITOR_MIN_SCORE a primary is replaced above about ten of them. 0 turns the
 * yardstick off.
 */
export const MONITOR_YARDSTICK_AGREEMENTS = 3;
/**
 * ... but at least this many view-change timeouts (50 ms by default): below it one tick's
 * granularity, a descheduled primary or a signature check per request would count.
 */
export const MONITOR_YARDSTICK_MIN_TIMEOUTS = 0.05;
/**
 * A replica host whose ticks (every 10 ms) come this far apart was stalled: its view-change
 * timer is forgiven the stall (ReplicaOptions.stallGraceMs).
 */
export const REPLICA_STALL_MS = 200;

/** Pieces (partitions or pages) one state-transfer FETCH asks for. */
export const MAX_FETCH_PIECES = 64;
/** Bytes of pieces one FETCH-REPLY carries at most; the fetcher asks again for the rest. */
export const MAX_FETCH_REPLY_BYTES = 384 * 1024;
/** A FETCH unanswered this long is asked of the next replica (ms); doubles on each timeout. */
export const FETCH_TIMEOUT_MS = 300;
/** Longest wait for a FETCH-REPLY after repeated timeouts (ms). */
export const MAX_FETCH_TIMEOUT_MS = 5000;
/**
 * A replica that knows of a stable checkpoint above what it has executed waits this long for the
 * log to bring it there before it fetches the checkpoint's state (ms); beyond the high water
 * mark it fetches at once.
 */
export const STATE_TRANSFER_DELAY_MS = 500;
/** Checkpoint sequence numbers one replica may have votes pending for (beyond them: dropped). */
export const MAX_CHECKPOINT_VOTES_PER_SENDER = 8;
/**
 * How often a replica re-sends its CHECKPOINT vote for its stable checkpoint under its current
 * keys, so that stable-checkpoint proofs stay verifiable across key refreshes and restarts (ms).
 */
export const PROOF_REFRESH_INTERVAL_MS = 1000;
