import { loadCluster } from './config';
import { type ReplicaStatus, disagreeing, fetchStatus, statusPort } from './status';

/** Prints the cluster's status; returns the exit code (0 healthy, 1 disagreement or > f down). */
export async function printStatus(dir: string, json: boolean): Promise<number> {
  const cfg = loadCluster(dir);
  const results = await Promise.all(
    cfg.replicas.map((r, i) => fetchStatus(r.host, statusPort(cfg, i))),
  );
  const up = results.filter((r): r is ReplicaStatus => !('error' in r));
  const bad = disagreeing(up);
  const healthy = bad.length === 0 && cfg.replicas.length - up.length <= cfg.f;
  if (json) {
    process.stdout.write(JSON.stringify({ replicas: results, disagreeing: bad, healthy }) + '\n');
    return healthy ? 0 : 1;
  }
  const rows = [['replica', 'address', 'view', 'primary', 'executed', 'stable', 'stable digest']];
  results.forEach((r, i) => {
    const addr = `${cfg.replicas[i].host}:${cfg.replicas[i].port}`;
    if ('error' in r) rows.push([String(i), addr, 'down', `(${r.error})`, '', '', '']);
    else
      rows.push([
        String(i),
        addr,
        String(r.view),
        String(r.primary),
        String(r.lastExecuted),
        String(r.stable),
        (r.stableDigest ?? '').slice(0, 16) + (bad.includes(i) ? '  DISAGREES' : ''),
      ]);
  });
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  for (const row of rows)
    process.stdout.write(
      row
        .map((c, k) => c.padEnd(widths[k]))
        .join('  ')
        .trimEnd() + '\n',
    );
  process.stdout.write(
    bad.length > 0
      ? `checkpoint digests DISAGREE: replica(s) ${bad.join(', ')}\n`
      : `checkpoint digests agree among the ${up.length} replicas up (${cfg.replicas.length - up.length} down, f = ${cfg.f})\n`,
  );
  return healthy ? 0 : 1;
}
