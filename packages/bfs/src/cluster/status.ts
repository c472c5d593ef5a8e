/**
 * Each replica answers GET /status on its status port (PBFT port + STATUS_PORT_OFFSET) with its
 * progress as JSON; `bfs status` collects them and says whether the checkpoint digests agree.
 */
import * as http from 'node:http';
import type { Replica } from '@bfs/pbft';
import type { CheckpointedState } from '@bfs/page-store';
import type { Registry } from 'prom-client';
import { type ClusterConfig, STATUS_PORT_OFFSET } from './config';
import type { FaultReport } from './fault-window';
import { answerMetrics } from './metrics';

/** A durable write of a replica that failed: it votes no more until it restarts from disk. */
export interface DiskFailure {
  /** What was being written. */
  what: 'commit-log' | 'page-store' | 'view-file' | 'key-epochs' | 'start';
  error: string;
  /** The errno or LevelDB code (ENOSPC, EIO, LEVEL_CORRUPTION...), when there is one. */
  code?: string;
  /** ISO time of the failure. */
  at: string;
  /** LevelDB reported damage: the restart moves that database aside. */
  corrupt: boolean;
}

/** A replica process's disk health (see the supervisor in cluster/supervisor.ts). */
export interface DiskStatus {
  /** The failure the replica is fenced for, or null while every write succeeds. */
  failed: DiskFailure | null;
  /** Durable writes that failed since the process started. */
  failures: number;
  /** Restarts from disk after a failure, since the process started. */
  restarts: number;
  /** Closed and not yet started again (the figures above are of before). */
  restarting: boolean;
}

/** Checkpoints a replica's status lists (ReplicaStatus.checkpoints). */
export const STATUS_CHECKPOINTS = 4;

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
  /**
   * The checkpoints it took and keeps (the last STATUS_CHECKPOINTS), digests in hex, oldest
   * first: the status page sets them side by side. Absent from replicas of older versions.
   */
  checkpoints?: { seq: number; digest: string }[];
  /** False while it changes views: it waits for the NEW-VIEW of `view` and orders nothing. */
  active: boolean;
  /** Restarted from disk and not yet past its recovery horizon (it counts as the faulty one). */
  recovering: boolean;
  /**
   * A checkpoint every replica voted for with no 2f + 1 matching digests (Replica.splitAt): the
   * histories forked; see docs/operations.md. Absent while none was seen.
   */
  splitAt?: number;
  /** Absent from replicas of older versions. */
  disk?: DiskStatus;
  /**
   * Digest of the exports this replica enforces and of its export key (config.exportsDigest):
   * every replica must show the same. Absent from replicas of older versions.
   */
  exportsDigest?: string;
  /** Messages dropped or noteworthy events, by reason. */
  stats: Record<string, number>;
  /** Session-key refresh counters: refreshes, peers' NEW-KEY accepted and rejected by reason. */
  keys: Record<string, number>;
  /** Transport counters: reconnects, frames dropped by reason, reads, writes and bytes. */
  transport: Record<string, number>;
  /**
   * What this replica observed from each replica (wrong digests, bad MACs, rejected proposals,
   * equivocations), over the last minute and in all; absent from replicas of older versions.
   */
  faults?: FaultReport;
}

export function replicaStatus(
  replica: Replica,
  state: CheckpointedState,
  counters: {
    keys?: Record<string, number>;
    transport?: Record<string, number>;
    disk?: DiskStatus;
    faults?: FaultReport;
    exportsDigest?: string;
  } = {},
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
    checkpoints: [...replica.checkpointDigests]
      .sort((a, b) => a[0] - b[0])
      .slice(-STATUS_CHECKPOINTS)
      .map(([seq, d]) => ({ seq, digest: Buffer.from(d).toString('hex') })),
    active: replica.active,
    recovering: replica.recovering,
    ...(replica.splitAt === undefined ? {} : { splitAt: replica.splitAt }),
    ...(counters.disk ? { disk: { ...counters.disk } } : {}),
    ...(counters.exportsDigest ? { exportsDigest: counters.exportsDigest } : {}),
    stats: { ...replica.stats },
    keys: { ...counters.keys },
    transport: { ...counters.transport },
    ...(counters.faults ? { faults: counters.faults } : {}),
  };
}

export function statusPort(cfg: ClusterConfig, id: number): number {
  return cfg.replicas[id].port + STATUS_PORT_OFFSET;
}

/**
 * GET /status (JSON) and GET /metrics (Prometheus) on the replica's status port. What answers can
 * change (a replica restarted from disk in the same process); while nothing does, /status
 * answers 503 with the reason.
 */
export class StatusEndpoint {
  status: () => ReplicaStatus | { error: string } = () => ({ error: 'starting' });
  metrics: Registry | undefined;

  private constructor(private readonly server: http.Server) {}

  static open(host: string, port: number): Promise<StatusEndpoint> {
    let endpoint: StatusEndpoint | undefined = undefined;
    const server = http.createServer((req, res) => {
      if (req.method === 'GET' && req.url === '/status') {
        const s = endpoint!.status();
        res.writeHead('error' in s ? 503 : 200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(s));
      } else if (req.method === 'GET' && req.url === '/metrics' && endpoint!.metrics) {
        void answerMetrics(endpoint!.metrics, res);
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('try GET /status or GET /metrics\n');
      }
    });
    endpoint = new StatusEndpoint(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve(endpoint));
    });
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
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
    if (!res.ok) {
      // A replica process between two lives says why (see StatusEndpoint).
      const body = (await res.json().catch(() => undefined)) as { error?: unknown } | undefined;
      return { error: typeof body?.error === 'string' ? body.error : `HTTP ${res.status}` };
    }
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
