import { loadCluster } from './config';
import { clusterStatus } from './status-page';

/** Prints the cluster's status; returns the exit code (0 healthy, 1 disagreement or > f down). */
export async function printStatus(dir: string, json: boolean): Promise<number> {
  const cfg = loadCluster(dir);
  const s = await clusterStatus(cfg, 2000);
  if (json) {
    process.stdout.write(JSON.stringify(s) + '\n');
    return s.healthy ? 0 : 1;
  }
  const bad = s.disagreeing;
  const rows = [['replica', 'address', 'view', 'primary', 'executed', 'stable', 'stable digest']];
  s.replicas.forEach((r, i) => {
    if ('error' in r) rows.push([String(i), r.address, 'down', `(${r.error})`, '', '', '']);
    else
      rows.push([
        String(i),
        r.address,
        // A replica waiting for the NEW-VIEW takes no part in ordering yet.
        r.active ? String(r.view) : `${r.view} (changing)`,
        String(r.primary),
        String(r.lastExecuted),
        String(r.stable),
        (r.stableDigest ?? '').slice(0, 16) + (bad.includes(i) ? '  DISAGREES' : ''),
      ]);
  });
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  for (const row of rows) {
    process.stdout.write(
      row
        .map((c, k) => c.padEnd(widths[k]))
        .join('  ')
        .trimEnd() + '\n',
    );
  }
  const down = s.replicas.filter((r) => 'error' in r).length;
  process.stdout.write(
    bad.length > 0
      ? `checkpoint digests DISAGREE: replica(s) ${bad.join(', ')}\n`
      : `checkpoint digests agree among the ${s.replicas.length - down} replicas up (${down} down, f = ${s.f})\n`,
  );
  for (const r of s.replicas) {
    if ('error' in r || !r.disk?.failed) continue;
    const f = r.disk.failed;
    process.stdout.write(
      `replica ${r.id}: DISK FAILING since ${f.at}: ${f.what}: ${f.error}; it votes no more ` +
        `and restarts from disk by itself once writes succeed${r.disk.restarting ? ' (restarting now)' : ''}\n`,
    );
  }
  if (s.split !== null)
    process.stdout.write(
      `checkpoint ${s.split}: every replica voted and no digest has 2f + 1 votes: the replicas' ` +
        'histories FORKED (see "Replicas whose histories forked" in docs/operations.md)\n',
    );
  return s.healthy ? 0 : 1;
}
