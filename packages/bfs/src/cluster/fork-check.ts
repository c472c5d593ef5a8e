/**
 * `bfs fork-check`: compares the committed batches in the stopped replicas' commit logs and names
 * the first sequence number where they differ. Replicas cannot fork under the protocol; data
 * written by a version whose whole-cluster restarts were unsafe can (shared/repro's c4), and then
 * no checkpoint after the fork becomes stable. The batch committed in the lowest view at that
 * sequence number is the one later views had to keep: the replicas holding another one are those
 * to restart without their commit log (docs/operations.md, "Replicas whose histories forked").
 */
import * as path from 'node:path';
import { batchDigest, decodeFrame, MsgType, requestDigests } from '@bfs/pbft';
import { CommitLog } from './commit-log';
import { loadCluster, replicaName } from './config';

export interface ForkReport {
  /** First sequence number committed differently, or null when the logs agree where they overlap. */
  seq: number | null;
  /** Per replica: the view and batch digest of its batch there (undefined when it has none). */
  batches: ({ view: number; digest: string } | undefined)[];
  /** Replicas whose batch at `seq` is not the one of the lowest view: reset their commit logs. */
  reset: number[];
}

function batchAt(prePrepare: Uint8Array): { view: number; digest: string } | undefined {
  try {
    const f = decodeFrame(prePrepare);
    if (f.body.type !== MsgType.PrePrepare) return undefined;
    const digest = batchDigest(f.body.nondet, requestDigests(f.body)).toString('hex');
    return { view: f.body.view, digest };
  } catch {
    return undefined;
  }
}

/** Reads every replica's commit log (the replicas must be stopped: LevelDB locks it). */
export async function forkCheck(dir: string, dataDirs?: string[]): Promise<ForkReport> {
  const cfg = loadCluster(dir);
  const logs: Map<number, { view: number; digest: string } | undefined>[] = [];
  for (let i = 0; i < cfg.replicas.length; i++) {
    const data = dataDirs?.[i] ?? path.join(dir, replicaName(i));
    const log = await CommitLog.open(path.join(data, 'commit-log'));
    try {
      const m = new Map<number, { view: number; digest: string } | undefined>();
      for (const [seq, b] of await log.committed()) m.set(seq, batchAt(b.prePrepare));
      logs.push(m);
    } finally {
      await log.close();
    }
  }
  const seqs = [...new Set(logs.flatMap((m) => [...m.keys()]))].sort((a, b) => a - b);
  for (const seq of seqs) {
    const batches = logs.map((m) => m.get(seq));
    const held = batches.filter((b) => b !== undefined);
    if (new Set(held.map((b) => b.digest)).size <= 1) continue;
    const lowest = held.reduce((a, b) => (b.view < a.view ? b : a));
    const reset = batches.flatMap((b, i) => (b && b.digest !== lowest.digest ? [i] : []));
    return { seq, batches, reset };
  }
  return { seq: null, batches: [], reset: [] };
}

export function formatForkReport(r: ForkReport): string {
  if (r.seq === null) return 'the commit logs agree wherever they overlap: no fork\n';
  const lines = [`the commit logs FORK at seq ${r.seq}:`];
  r.batches.forEach((b, i) =>
    lines.push(
      b ? `  replica ${i}: batch ${b.digest.slice(0, 16)} of view ${b.view}` : `  replica ${i}: -`,
    ),
  );
  lines.push(
    `the batch of the lowest view is the one to keep; stop replica(s) ${r.reset.join(', ')}, ` +
      'move their commit-log directory aside and start them again',
  );
  return lines.join('\n') + '\n';
}
