/**
 * Prometheus metrics (prom-client) for replicas and relays. The PBFT core and the servers keep
 * plain counters by reason; these are mirrored into labelled Prometheus counters at scrape time,
 * so nothing is added to the per-message hot path.
 */
import * as http from 'node:http';
import type { KeyRefresher, Replica } from '@bfs/pbft';
import type { CheckpointedState } from '@bfs/page-store';
import type { ConnectionTable } from 'nfs-server-ts';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ClusterStatus } from './status-page';
import type { DiskStatus, ReplicaStatus } from './status';
import type { WriteBackGauges, WriteBackStats } from '../write-back';
import type { LookupCacheStats } from '../lookup-cache';

/** Mirrors a growing record of counts into a counter labelled by its keys. */
function mirrorCounter(
  registry: Registry,
  name: string,
  help: string,
  label: string,
  source: () => Record<string, number>,
): void {
  const seen = new Map<string, number>();
  new Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      for (const [key, value] of Object.entries(source())) {
        const delta = value - (seen.get(key) ?? 0);
        if (delta > 0) this.inc({ [label]: key }, delta);
        seen.set(key, value);
      }
    },
  });
}

/** Mirrors a growing count into an unlabelled counter. */
function mirrorTotal(registry: Registry, name: string, help: string, value: () => number): void {
  let seen = 0;
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const v = value();
      if (v > seen) this.inc(v - seen);
      seen = v;
    },
  });
}

function gauge(registry: Registry, name: string, help: string, value: () => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(value());
    },
  });
}

/**
 * Session-key refresh of a replica or relay (`prefix`): when it last refreshed, every how
 * often it should (0: only at start), and its counters (keyRefresh, keyRefreshFailed, NEW-KEY
 * announcements accepted and rejected by reason).
 */
function keyMetrics(
  registry: Registry,
  prefix: string,
  keys: KeyRefresher,
  refreshPeriodSeconds: number,
): void {
  gauge(
    registry,
    `${prefix}_key_epoch_seconds`,
    'When this node last refreshed the session keys of messages sent to it (Unix time).',
    () => keys.currentEpoch / 1000,
  );
  gauge(
    registry,
    `${prefix}_key_refresh_period_seconds`,
    'Configured period of session key refresh (0: only at start).',
    () => refreshPeriodSeconds,
  );
  mirrorCounter(
    registry,
    `${prefix}_key_events_total`,
    'Session key refresh: refreshes, failed refreshes, NEW-KEY announcements accepted and rejected by reason.',
    'event',
    () => keys.stats,
  );
}

export function replicaMetrics(
  replica: Replica,
  state: CheckpointedState,
  transportStats: Record<string, number>,
  keys?: { refresher: KeyRefresher; periodSeconds: number },
  disk?: DiskStatus,
): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ replica: String(replica.id) });
  collectDefaultMetrics({ register: registry });
  gauge(registry, 'bfs_replica_view', 'Current PBFT view.', () => replica.view);
  gauge(
    registry,
    'bfs_replica_primary',
    'Replica id of the primary of the current view.',
    () => replica.primary,
  );
  gauge(
    registry,
    'bfs_replica_last_executed',
    'Last sequence number executed (tentatively or not).',
    () => replica.lastExecuted,
  );
  gauge(
    registry,
    'bfs_replica_last_committed',
    'Last sequence number committed.',
    () => replica.lastCommitted,
  );
  gauge(
    registry,
    'bfs_replica_stable_checkpoint',
    'Last stable checkpoint (low water mark).',
    () => replica.lowWater,
  );
  gauge(
    registry,
    'bfs_replica_checkpoints_kept',
    'Checkpoints the page store keeps.',
    () => state.checkpoints().length,
  );
  mirrorCounter(
    registry,
    'bfs_replica_events_total',
    'Replica events by kind: messages dropped by reason (dropBadMac, dropMalformed, out of window...), requests ordered, re-sends.',
    'event',
    () => replica.stats,
  );
  mirrorCounter(
    registry,
    'bfs_replica_transport_events_total',
    'PBFT transport events by kind (dropped oversize frames, reconnections...).',
    'event',
    () => transportStats,
  );
  gauge(
    registry,
    'bfs_replica_recovering',
    '1 while a restarted replica has not passed its recovery horizon (it counts as the faulty one).',
    () => (replica.recovering ? 1 : 0),
  );
  if (disk) {
    gauge(
      registry,
      'bfs_replica_persist_failed',
      '1 while a durable write failed and the replica, fenced, votes no more (until it restarts from disk).',
      () => (disk.failed ? 1 : 0),
    );
    gauge(
      registry,
      'bfs_replica_persist_failures',
      'Durable writes (log, checkpoint, view, keys) that failed since the process started.',
      () => disk.failures,
    );
    gauge(
      registry,
      'bfs_replica_disk_restarts',
      'Restarts from disk after a failed durable write, since the process started.',
      () => disk.restarts,
    );
  }
  if (keys) keyMetrics(registry, 'bfs_replica', keys.refresher, keys.periodSeconds);
  return registry;
}

export interface RelayMetrics {
  registry: Registry;
  /** Records one forwarded call. */
  observe(readOnly: boolean, seconds: number, ok: boolean): void;
}

/** The write-back buffer as its metrics read it (Relay.writeBack, with the relay's retries). */
export interface WriteBackSource {
  stats: WriteBackStats & { retries: number };
  gauges: WriteBackGauges;
}

/**
 * The relay's write-back buffer: UNSTABLE WRITEs answered from it, flush operations and the
 * bytes they carried, and what it holds now.
 */
function writeBackMetrics(registry: Registry, source: () => WriteBackSource): void {
  mirrorCounter(
    registry,
    'bfs_relay_write_back_events_total',
    'Write-back buffer: UNSTABLE WRITEs answered from it (buffered), flush operations (flushOps) and their extents, extents refused (flushErrors), WRITEs that waited for room, calls that waited for a flush (barriers), LOOKUP/READDIRPLUS asked again (retries).',
    'event',
    () => {
      const { flushedBytes: _bytes, ...events } = source().stats;
      return events;
    },
  );
  mirrorTotal(
    registry,
    'bfs_relay_write_back_flushed_bytes_total',
    'Data bytes the write-back buffer flushed to the replicas.',
    () => source().stats.flushedBytes,
  );
  const gauges: [string, string, keyof WriteBackGauges][] = [
    [
      'bfs_relay_write_back_dirty_bytes',
      'Bytes buffered or in flight to the replicas (each extent counted 128 bytes more), against WRITE_BACK_MAX_DIRTY_BYTES.',
      'dirtyBytes',
    ],
    ['bfs_relay_write_back_dirty_files', 'Files with data buffered or in flight.', 'dirtyFiles'],
    [
      'bfs_relay_write_back_flushes_in_flight',
      'Flush operations on their way through PBFT.',
      'flushesInFlight',
    ],
  ];
  for (const [name, help, key] of gauges) gauge(registry, name, help, () => source().gauges[key]);
}

/** The relay's lookup cache (lookup-cache.ts): LOOKUPs answered from it and asked of the replicas. */
function lookupCacheMetrics(registry: Registry, source: () => LookupCacheStats): void {
  mirrorCounter(
    registry,
    'bfs_relay_lookup_cache_events_total',
    'Lookup cache: NFSv3 LOOKUPs answered from it (hits) and asked of the replicas (misses), replies kept (stored), entries evicted at LOOKUP_CACHE_ENTRIES (evicted).',
    'event',
    () => ({ ...source() }),
  );
}

/** What the relay's metrics read besides its counters, each at scrape time. */
export interface RelayMetricSources {
  /** The lookup cache; none when it is off (--lookup-cache 0). */
  lookupCache?: () => LookupCacheStats;
  /** The write-back buffer; none when it is off (--no-write-back). */
  writeBack?: () => WriteBackSource;
  /** The NFS server's TCP connections (NfsServer.rpc.connections). */
  connections?: () => ConnectionTable;
  keys?: { refresher: KeyRefresher; periodSeconds: number };
  /** The cluster as the relay sees it (clusterStatus): one snapshot of every replica. */
  cluster?: () => Promise<ClusterStatus>;
}

/** How long one snapshot of the cluster serves the gauges of a scrape. */
const CLUSTER_SNAPSHOT_MS = 1000;

/**
 * The cluster seen from the relay, fetched once per scrape so that the replicas are compared in
 * one snapshot (scrapes of the replicas themselves happen at different moments): which are up,
 * whose stable digest disagrees, how far each is behind the most advanced, whether it is healthy.
 */
function clusterMetrics(registry: Registry, cluster: () => Promise<ClusterStatus>): void {
  let taken = 0;
  let last: Promise<ClusterStatus> | undefined;
  const snapshot = () => {
    if (!last || Date.now() - taken > CLUSTER_SNAPSHOT_MS) {
      taken = Date.now();
      last = cluster();
    }
    return last;
  };
  /** A gauge set from the snapshot: one value per replica (undefined: none), or one in all. */
  const fromSnapshot = (
    name: string,
    help: string,
    value: (s: ClusterStatus, r: ReplicaStatus | undefined, i: number) => number | undefined,
    perReplica = true,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: perReplica ? ['replica'] : [],
      registers: [registry],
      async collect() {
        const s = await snapshot();
        this.reset();
        if (!perReplica) return this.set(value(s, undefined, -1) ?? 0);
        s.replicas.forEach((r, i) => {
          const v = value(s, 'error' in r ? undefined : r, i);
          if (v !== undefined) this.set({ replica: String(i) }, v);
        });
      },
    });
  const most = (s: ClusterStatus, of: (r: ReplicaStatus) => number) =>
    Math.max(0, ...s.replicas.flatMap((r) => ('error' in r ? [] : [of(r)])));
  fromSnapshot(
    'bfs_cluster_replica_up',
    "1 if the relay reached the replica's status port (fetched at scrape time).",
    (_, r) => (r ? 1 : 0),
  );
  fromSnapshot(
    'bfs_cluster_replica_digest_disagrees',
    "1 if the replica's stable checkpoint digest differs from the majority's at that checkpoint.",
    (s, r, i) => (r ? (s.disagreeing.includes(i) ? 1 : 0) : undefined),
  );
  fromSnapshot(
    'bfs_cluster_replica_lag',
    'Sequence numbers the replica has executed fewer than the most advanced replica up.',
    (s, r) => r && most(s, (x) => x.lastExecuted) - r.lastExecuted,
  );
  fromSnapshot(
    'bfs_cluster_replica_stable_lag',
    'Sequence numbers its stable checkpoint is behind the most advanced one.',
    (s, r) => r && most(s, (x) => x.stable) - r.stable,
  );
  fromSnapshot(
    'bfs_cluster_replica_faulty',
    '1 if a verdict names the replica for faults seen over the last minute (cluster/verdicts.ts).',
    (s, _, i) =>
      s.verdicts.some((v) => v.replica === i && v.kind !== 'down' && v.kind !== 'diskFailing')
        ? 1
        : 0,
  );
  fromSnapshot(
    'bfs_cluster_healthy',
    '1 if the digests agree, no fork was seen and at most f replicas are down (bfs status exits 0).',
    (s) => (s.healthy ? 1 : 0),
    false,
  );
  fromSnapshot(
    'bfs_cluster_forked',
    "1 if a checkpoint had every replica's vote and no 2f + 1 matching digests (histories forked).",
    (s) => (s.split === null ? 0 : 1),
    false,
  );
}

/** The NFS server's TCP connections: open, closed by reason, and the bytes its budgets hold. */
function connectionMetrics(registry: Registry, table: () => ConnectionTable): void {
  gauge(
    registry,
    'bfs_relay_nfs_connections',
    'NFS TCP connections open.',
    () => table().stats.open,
  );
  mirrorCounter(
    registry,
    'bfs_relay_nfs_connection_events_total',
    'NFS TCP connections: accepted, evicted, refused, closed idle or slow or over the byte budget, reads paused (throttled, bufferPaused).',
    'event',
    () => {
      const { open: _open, ...events } = table().stats;
      return { ...events };
    },
  );
  new Gauge({
    name: 'bfs_relay_nfs_held_bytes',
    help: 'Bytes held for NFS TCP clients by budget: buffered (waiting on clients), inflight (calls in progress).',
    labelNames: ['budget'],
    registers: [registry],
    collect() {
      const held = table().held();
      this.set({ budget: 'buffered' }, held.buffered);
      this.set({ budget: 'inflight' }, held.inflight);
    },
  });
}

export function relayMetrics(
  relayStats: () => Record<string, number>,
  rpcStats: () => Record<string, number>,
  clientStats: () => Record<string, number>,
  sources: RelayMetricSources = {},
): RelayMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const latency = new Histogram({
    name: 'bfs_relay_call_seconds',
    help: 'Time from an NFS call reaching the relay to the agreed result, by PBFT path.',
    labelNames: ['path', 'result'],
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  mirrorCounter(
    registry,
    'bfs_relay_events_total',
    'Relay events (forwarded, readOnly, failed).',
    'event',
    relayStats,
  );
  mirrorCounter(
    registry,
    'bfs_relay_rpc_events_total',
    'RPC server events (calls, garbage, drc hits...).',
    'event',
    rpcStats,
  );
  mirrorCounter(
    registry,
    'bfs_relay_pbft_client_events_total',
    'PBFT client events (retransmissions, completions...).',
    'event',
    clientStats,
  );
  if (sources.connections) connectionMetrics(registry, sources.connections);
  if (sources.keys)
    keyMetrics(registry, 'bfs_relay', sources.keys.refresher, sources.keys.periodSeconds);
  if (sources.cluster) clusterMetrics(registry, sources.cluster);
  if (sources.writeBack) writeBackMetrics(registry, sources.writeBack);
  if (sources.lookupCache) lookupCacheMetrics(registry, sources.lookupCache);
  return {
    registry,
    observe(readOnly, seconds, ok) {
      latency.observe(
        { path: readOnly ? 'read-only' : 'read-write', result: ok ? 'ok' : 'error' },
        seconds,
      );
    },
  };
}

/** Answers GET /metrics in the Prometheus text format. */
export async function answerMetrics(registry: Registry, res: http.ServerResponse): Promise<void> {
  try {
    const body = await registry.metrics();
    res.writeHead(200, { 'content-type': registry.contentType });
    res.end(body);
  } catch (e) {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(`metrics failed: ${(e as Error).message}\n`);
  }
}
