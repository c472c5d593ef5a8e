/**
 * Prometheus metrics (prom-client) for replicas and relays. The PBFT core and the servers keep
 * plain counters by reason; these are mirrored into labelled Prometheus counters at scrape time,
 * so nothing is added to the per-message hot path.
 */
import * as http from 'node:http';
import type { KeyRefresher, Replica } from '@bfs/pbft';
import type { CheckpointedState } from '@bfs/page-store';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DiskStatus } from './status';

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

export function replicaMetrics(
  replica: Replica,
  state: CheckpointedState,
  transportStats: Record<string, number>,
  keys?: KeyRefresher,
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
  if (keys) {
    gauge(
      registry,
      'bfs_replica_key_epoch_seconds',
      'When this replica last refreshed the session keys of messages sent to it (Unix time).',
      () => keys.currentEpoch / 1000,
    );
    mirrorCounter(
      registry,
      'bfs_replica_key_events_total',
      'Session key refresh: refreshes, NEW-KEY announcements accepted and rejected by reason.',
      'event',
      () => keys.stats,
    );
  }
  return registry;
}

export interface RelayMetrics {
  registry: Registry;
  /** Records one forwarded call. */
  observe(readOnly: boolean, seconds: number, ok: boolean): void;
}

export function relayMetrics(
  relayStats: () => Record<string, number>,
  rpcStats: () => Record<string, number>,
  clientStats: () => Record<string, number>,
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
