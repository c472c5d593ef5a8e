/**
 * Each replica answers GET /status on its status port (PBFT port + STATUS_PORT_OFFSET) with its
 * progress as JSON; `bfs status` collects them and says whether the checkpoint digests agree.
 */
import * as http from 'node:http';
import type { Replica } from '@bfs/pbft';
import type { CheckpointedState } from '@bfs/page-store';
import type { Registry } from 'prom-client';
import { type ClusterConfig, STATUS_PORT_OFFSET } from './config';
import { answerMetrics } from './metrics';

export interface ReplicaStatus {
  id: number;
  view: number;
  primary: number;
  lastExecuted: number;
  lastCommitted: number;
  /** Low water mark: the last stable checkpoint. */
  stable: number;
  /** Digest of the stable checkpoint (hex), the one every correct replica must share. */
  stableDigest: string | null;
  /** False while it changes views: it waits for the NEW-VIEW of `view` and orders nothing. */
  active: boolean;
  /** Restarted from disk and not yet past its recovery horizon (it counts as the faulty one). */
  recovering: boolean;
  /**
   * A checkpoint every replica voted for with no 2f + 1 matching digests (Replica.splitAt): the
   * histories forked; see docs/operations.md. Absent while none was seen.
   */
  splitAt?: number;
  /** Messages dropped or noteworthy events, by reason. */
  stats: Record<string, number>;
  /** Session-key refresh counters: refreshes, peers' NEW-KEY accepted and rejected by reason. */
  keys: Record<string, number>;
  /** Transport counters: reconnects, frames dropped by reason, reads, writes and bytes. */
  transport: Record<string, number>;
}

export function replicaStatus(
  replica: Replica,
  state: CheckpointedState,
  counters: { keys?: Record<string, number>; transport?: Record<string, number> } = {},
): ReplicaStatus {
  const digest = state.digestAt(replica.lowWater);
  return {
    id: replica.id,
    view: replica.view,
    primary: replica.primary,
    lastExecuted: replica.lastExecuted,
    lastCommitted: replica.lastCommitted,
    stable: replica.lowWater,
    stableDigest: digest ? Buffer.from(digest).toString('hex') : null,
    active: replica.active,
    recovering: replica.recovering,
    ...(replica.splitAt === undefined ? {} : { splitAt: replica.splitAt }),
    stats: { ...replica.stats },
    keys: { ...counters.keys },
    transport: { ...counters.transport },
  };
}

export function statusPort(cfg: ClusterConfig, id: number): number {
  return cfg.replicas[id].port + STATUS_PORT_OFFSET;
}

/** GET /status (JSON) and GET /metrics (Prometheus) on the replica's status port. */
export function serveStatus(
  host: string,
  port: number,
  status: () => ReplicaStatus,
  metrics: Registry,
): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/status') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(status()));
    } else if (req.method === 'GET' && req.url === '/metrics') {
      void answerMetrics(metrics, res);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('try GET /status or GET /metrics\n');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

/** Fetches one replica's status, or the reason it could not be had. */
export async function fetchStatus(
  host: string,
  port: number,
  timeoutMs = 2000,
): Promise<ReplicaStatus | { error: string }> {
  try {
    const res = await fetch(`http://${host}:${port}/status`, {
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!res.ok) return { error: `HTTP ${res.status}` };
    return (await res.json()) as ReplicaStatus;
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause;
    return { error: cause?.code ?? (e as Error).message };
  }
}

/**
 * Digest agreement: replicas whose stable checkpoint is the same number must report the same
 * digest. Returns the ids that disagree with the majority at any shared checkpoint.
 */
export function disagreeing(statuses: ReplicaStatus[]): number[] {
  const bySeq = new Map<number, ReplicaStatus[]>();
  for (const s of statuses) bySeq.set(s.stable, [...(bySeq.get(s.stable) ?? []), s]);
  const bad: number[] = [];
  for (const group of bySeq.values()) {
    const counts = new Map<string | null, number>();
    for (const s of group) counts.set(s.stableDigest, (counts.get(s.stableDigest) ?? 0) + 1);
    const majority = [...counts.entries()].sort((a, b) => b[1] - a[1])[0][0];
    for (const s of group) if (s.stableDigest !== majority) bad.push(s.id);
  }
  return bad.sort((a, b) => a - b);
}
