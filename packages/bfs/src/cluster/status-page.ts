/**
 * The relay's status page: the replicas, which one is primary, their progress, and whether
 * their stable checkpoint digests agree, refreshed every second from GET /api/status.
 */
import { type ClusterConfig } from './config';
import { type ReplicaStatus, disagreeing, fetchStatus, statusPort } from './status';

export interface ClusterStatus {
  f: number;
  replicas: ({ address: string } & (ReplicaStatus | { error: string }))[];
  disagreeing: number[];
  /**
   * A checkpoint some replica saw every replica vote for without 2f + 1 matching digests: the
   * replicas' histories forked there (docs/operations.md); null while none was seen.
   */
  split: number | null;
  /**
   * Replicas up whose disk failed a durable write: fenced, they vote no more until they restart
   * from disk by themselves (cluster/supervisor.ts). They count against f like those down.
   */
  diskFailing: number[];
  /** Digests agree, no fork was seen, and no more than f replicas are down or failing their disk. */
  healthy: boolean;
  /** The primary most up replicas report, or null when none is up. */
  primary: number | null;
}

export async function clusterStatus(cfg: ClusterConfig, timeoutMs = 1000): Promise<ClusterStatus> {
  const results = await Promise.all(
    cfg.replicas.map((r, i) => fetchStatus(r.host, statusPort(cfg, i), timeoutMs)),
  );
  const up = results.filter((r): r is ReplicaStatus => !('error' in r));
  const bad = disagreeing(up);
  const splits = up.flatMap((s) => (s.splitAt === undefined ? [] : [s.splitAt]));
  const split = splits.length > 0 ? Math.min(...splits) : null;
  const diskFailing = up.filter((s) => s.disk?.failed).map((s) => s.id);
  const votes = new Map<number, number>();
  for (const s of up) votes.set(s.primary, (votes.get(s.primary) ?? 0) + 1);
  const primary = [...votes.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? null;
  return {
    f: cfg.f,
    replicas: results.map((r, i) => ({
      address: `${cfg.replicas[i].host}:${cfg.replicas[i].port}`,
      ...r,
    })),
    disagreeing: bad,
    split,
    diskFailing,
    healthy:
      bad.length === 0 &&
      split === null &&
      cfg.replicas.length - up.length + diskFailing.length <= cfg.f,
    primary,
  };
}

export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>BFS-TS cluster</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
  table { border-collapse: collapse; margin-top: 1em; }
  th, td { padding: 6px 12px; border-bottom: 1px solid #ddd; text-align: left; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  code { font-size: 12px; }
  .banner { padding: 8px 12px; border-radius: 4px; display: inline-block; }
  .ok { background: #e3f5e1; color: #1e5e1a; }
  .bad { background: #fde2e1; color: #8a1c16; }
  tr.down td { color: #999; }
  tr.disagrees td { background: #fde2e1; }
  #updated { color: #777; margin-left: 1em; }
</style>
</head>
<body>
<h1>BFS-TS cluster</h1>
<div><span id="banner" class="banner">loading...</span><span id="updated"></span></div>
<table>
  <thead><tr><th>replica</th><th>address</th><th>state</th><th>view</th><th>primary</th>
  <th>executed</th><th>committed</th><th>stable</th><th>stable digest</th></tr></thead>
  <tbody id="rows"></tbody>
</table>
<script>
function cell(text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}
async function refresh() {
  try {
    const s = await (await fetch('api/status', { cache: 'no-store' })).json();
    const rows = document.getElementById('rows');
    rows.replaceChildren();
    s.replicas.forEach((r, i) => {
      const tr = document.createElement('tr');
      tr.dataset.replica = String(i);
      if (r.error) {
        tr.className = 'down';
        tr.append(cell(String(i)), cell(r.address), cell('down (' + r.error + ')'));
        for (let k = 0; k < 6; k++) tr.append(cell(''));
      } else {
        if (s.disagreeing.includes(i) || (r.disk && r.disk.failed)) tr.className = 'disagrees';
        const state = r.disk && r.disk.failed
          ? 'DISK FAILING (' + (r.disk.failed.code || r.disk.failed.error) + ')' + (r.disk.restarting ? ', restarting' : '')
          : 'up';
        tr.append(cell(String(i)), cell(r.address), cell(state), cell(String(r.view), 'num'),
          cell(r.primary === i ? 'primary' : ''), cell(String(r.lastExecuted), 'num'),
          cell(String(r.lastCommitted), 'num'), cell(String(r.stable), 'num'));
        const d = cell('');
        const code = document.createElement('code');
        code.textContent = (r.stableDigest || '').slice(0, 16);
        d.append(code);
        tr.append(d);
      }
      rows.append(tr);
    });
    const down = s.replicas.filter((r) => r.error).length;
    const banner = document.getElementById('banner');
    banner.className = 'banner ' + (s.healthy ? 'ok' : 'bad');
    banner.textContent = s.split !== null
      ? 'histories FORKED at checkpoint ' + s.split + ': no digest has 2f + 1 votes'
      : s.disagreeing.length
      ? 'checkpoint digests DISAGREE: replica ' + s.disagreeing.join(', ')
      : s.diskFailing && s.diskFailing.length
      ? 'replica ' + s.diskFailing.join(', ') + ': disk writes FAIL; it votes no more and rejoins when its disk takes writes'
      : 'checkpoint digests agree; ' + down + ' of ' + s.replicas.length + ' down (tolerates ' + s.f + ')' +
        (s.primary === null ? '' : '; primary is replica ' + s.primary);
    document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById('banner').textContent = 'relay unreachable: ' + e;
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
`;
