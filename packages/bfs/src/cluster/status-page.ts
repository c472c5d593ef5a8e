/**
 * The relay's status page: the replicas, which one is primary, their progress and lag, whether
 * their checkpoint digests agree, the verdicts on faulty replicas, charts of the relay's calls
 * and of its write-back buffer, and the events timeline, refreshed every second from GET /api/status (cluster/monitor.ts).
 */
import { type ClusterConfig } from './config';
import type { FaultReport } from './fault-window';
import { type ReplicaStatus, disagreeing, fetchStatus, statusPort } from './status';
import { type FaultObservation, type Verdict, verdicts } from './verdicts';

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
  /**
   * Replicas up whose exports or export key differ from what most replicas up hold: they would
   * answer calls otherwise and their state would diverge (docs/operations.md#exports).
   */
  exportsDiffer: number[];
  /** Digests agree, no fork was seen, and no more than f replicas are down or failing their disk. */
  healthy: boolean;
  /** The primary most up replicas report, or null when none is up. */
  primary: number | null;
  /** What the relay's own client observed from each replica; null where no relay was asked. */
  relayFaults: FaultReport | null;
  /** Replicas named faulty, down or failing their disk (cluster/verdicts.ts). */
  verdicts: Verdict[];
}

/** The ids whose value differs from the most common one (values absent are not compared). */
function minority(values: [number, string | undefined][]): number[] {
  const counts = new Map<string, number>();
  for (const [, v] of values) if (v !== undefined) counts.set(v, (counts.get(v) ?? 0) + 1);
  const common = [...counts].sort((a, b) => b[1] - a[1])[0]?.[0];
  return values.filter(([, v]) => v !== undefined && v !== common).map(([id]) => id);
}

/**
 * Every replica's status, fetched at once, and what follows from them. `relayFaults`: what the
 * relay observed itself, to take into the verdicts.
 */
export async function clusterStatus(
  cfg: ClusterConfig,
  timeoutMs = 1000,
  relayFaults: FaultReport | null = null,
): Promise<ClusterStatus> {
  const results = await Promise.all(
    cfg.replicas.map((r, i) => fetchStatus(r.host, statusPort(cfg, i), timeoutMs)),
  );
  const up = results.filter((r): r is ReplicaStatus => !('error' in r));
  const bad = disagreeing(up);
  const splits = up.flatMap((s) => (s.splitAt === undefined ? [] : [s.splitAt]));
  const split = splits.length > 0 ? Math.min(...splits) : null;
  const diskFailing = up.filter((s) => s.disk?.failed).map((s) => s.id);
  const exportsDiffer = minority(up.map((s) => [s.id, s.exportsDigest]));
  const votes = new Map<number, number>();
  for (const s of up) votes.set(s.primary, (votes.get(s.primary) ?? 0) + 1);
  const primary = [...votes.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? null;
  const observations: FaultObservation[] = up.flatMap((s) =>
    s.faults ? [{ observer: s.id, recent: s.faults.recent }] : [],
  );
  if (relayFaults) observations.push({ observer: 'relay', recent: relayFaults.recent });
  return {
    f: cfg.f,
    replicas: results.map((r, i) => ({
      address: `${cfg.replicas[i].host}:${cfg.replicas[i].port}`,
      ...r,
    })),
    disagreeing: bad,
    split,
    diskFailing,
    exportsDiffer,
    healthy:
      bad.length === 0 &&
      split === null &&
      exportsDiffer.length === 0 &&
      cfg.replicas.length - up.length + diskFailing.length <= cfg.f,
    primary,
    relayFaults,
    verdicts: verdicts({
      n: cfg.replicas.length,
      f: cfg.f,
      observations,
      down: results.flatMap((r, i) => ('error' in r ? [{ replica: i, error: r.error }] : [])),
      diskFailing,
    }),
  };
}

/**
 * The page itself: everything inline (no CDN, nothing fetched but /api/status from the relay).
 * Charts are hand-drawn SVG. Columns 3 (state) and 5 (primary) of the replica rows keep their
 * place: tests and operators' scripts find them there.
 */
export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>BFS-TS cluster</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
  h2 { font-size: 16px; margin: 1.5em 0 0.3em; }
  table { border-collapse: collapse; margin-top: 0.5em; }
  th, td { padding: 5px 10px; border-bottom: 1px solid #ddd; text-align: left; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  code { font-size: 12px; }
  .banner { padding: 8px 12px; border-radius: 4px; display: inline-block; }
  .ok { background: #e3f5e1; color: #1e5e1a; }
  .bad { background: #fde2e1; color: #8a1c16; }
  tr.down td { color: #999; }
  tr.disagrees td, td.mismatch, td.hot { background: #fde2e1; }
  #updated { color: #777; margin-left: 1em; }
  #verdicts { list-style: none; padding: 0; margin: 0.8em 0; }
  #verdicts li { padding: 6px 10px; margin: 3px 0; border-left: 4px solid #c0392b; background: #fdf0ef; }
  #verdicts li.none { border-left-color: #2e7d32; background: #eef7ee; }
  .charts { display: flex; gap: 2em; flex-wrap: wrap; }
  .chart svg { background: #fafafa; border: 1px solid #ddd; }
  .legend span { margin-right: 1em; font-size: 12px; }
  #events { max-height: 18em; overflow-y: auto; font-size: 13px; }
  #events td { padding: 3px 8px; }
  [hidden] { display: none !important; }
</style>
</head>
<body>
<h1>BFS-TS cluster</h1>
<div><span id="banner" class="banner">loading...</span><span id="updated"></span></div>
<ul id="verdicts"></ul>
<table>
  <thead><tr><th>replica</th><th>address</th><th>state</th><th>view</th><th>primary</th>
  <th>executed</th><th>committed</th><th>stable</th><th>stable digest</th><th>lag (exec / stable)</th></tr></thead>
  <tbody id="rows"></tbody>
</table>
<div class="charts">
  <div class="chart"><h2>operations per second (relay)</h2><svg id="ops" width="480" height="160"></svg>
    <div class="legend"><span style="color:#1f77b4">&#9632; all</span><span style="color:#2ca02c">&#9632; read-only</span><span style="color:#d62728">&#9632; failed</span></div></div>
  <div class="chart"><h2>latency, ms (relay)</h2><svg id="latency" width="480" height="160"></svg>
    <div class="legend"><span style="color:#1f77b4">&#9632; p50</span><span style="color:#ff7f0e">&#9632; p90</span><span style="color:#d62728">&#9632; p99</span></div></div>
</div>
<h2>write-back buffer (relay)</h2>
<div id="wb-now"></div>
<div class="charts" id="wb">
  <div class="chart"><h2>UNSTABLE WRITEs answered and flushes per second</h2><svg id="wb-ops" width="480" height="160"></svg>
    <div class="legend"><span style="color:#1f77b4">&#9632; writes buffered</span><span style="color:#2ca02c">&#9632; flushes</span><span style="color:#d62728">&#9632; extents refused</span></div></div>
  <div class="chart"><h2>KiB held and flushed per second</h2><svg id="wb-bytes" width="480" height="160"></svg>
    <div class="legend"><span style="color:#9467bd">&#9632; dirty (held)</span><span style="color:#ff7f0e">&#9632; flushed</span></div></div>
</div>
<h2>latency per NFS procedure (relay, last 60 s)</h2>
<table>
  <thead><tr><th>procedure</th><th>calls</th><th>failed</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th></tr></thead>
  <tbody id="procedures"></tbody>
</table>
<h2>fault attribution (last <span id="window">60</span> s, what the others and the relay saw from each replica)</h2>
<table>
  <thead><tr><th>replica</th><th>wrong replies</th><th>mismatching digests</th><th>bad MACs</th>
  <th>rejected proposals</th><th>equivocations</th></tr></thead>
  <tbody id="faults"></tbody>
</table>
<h2>checkpoint digests side by side</h2>
<table id="checkpoints"></table>
<h2>events</h2>
<div id="events"><table><tbody id="event-rows"></tbody></table></div>
<script>
const KINDS = ['wrongReply', 'digestMismatch', 'badMac', 'rejectedProposal', 'equivocation'];
const SVG = 'http://www.w3.org/2000/svg';
function cell(text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}
function svgEl(name, attrs) {
  const e = document.createElementNS(SVG, name);
  for (const k in attrs) e.setAttribute(k, String(attrs[k]));
  return e;
}
/** Lines over the series' seconds: each of 'lines' is [field, colour]. */
function chart(svg, series, lines) {
  const w = Number(svg.getAttribute('width')), h = Number(svg.getAttribute('height'));
  const pad = 36;
  svg.replaceChildren();
  let max = 0;
  for (const p of series) for (const l of lines) if (p[l[0]] !== null && p[l[0]] > max) max = p[l[0]];
  max = max > 0 ? max * 1.1 : 1;
  const n = Math.max(series.length, 2);
  const x = (i) => pad + (i * (w - pad - 8)) / (n - 1);
  const y = (v) => h - 18 - (v / max) * (h - 28);
  svg.append(svgEl('line', { x1: pad, y1: y(0), x2: w - 8, y2: y(0), stroke: '#999' }));
  for (const v of [max / 1.1, max / 2.2]) {
    svg.append(svgEl('line', { x1: pad, y1: y(v), x2: w - 8, y2: y(v), stroke: '#e4e4e4' }));
    const t = svgEl('text', { x: 2, y: y(v) + 4, 'font-size': 10, fill: '#666' });
    t.textContent = v >= 10 ? v.toFixed(0) : v.toPrecision(2);
    svg.append(t);
  }
  const label = svgEl('text', { x: pad, y: h - 4, 'font-size': 10, fill: '#666' });
  label.textContent = series.length + ' s';
  svg.append(label);
  for (const l of lines) {
    let d = '';
    series.forEach((p, i) => {
      const v = p[l[0]];
      if (v === null) return;
      d += (d ? ' L' : 'M') + x(i).toFixed(1) + ' ' + y(v).toFixed(1);
    });
    if (d) svg.append(svgEl('path', { d: d, fill: 'none', stroke: l[1], 'stroke-width': 1.5, 'data-series': l[0] }));
  }
}
function renderReplicas(s) {
  const rows = document.getElementById('rows');
  rows.replaceChildren();
  const upR = s.replicas.filter((r) => !r.error);
  const maxExec = Math.max(0, ...upR.map((r) => r.lastExecuted));
  const maxStable = Math.max(0, ...upR.map((r) => r.stable));
  const named = {};
  for (const v of s.verdicts || []) named[v.replica] = true;
  s.replicas.forEach((r, i) => {
    const tr = document.createElement('tr');
    tr.dataset.replica = String(i);
    if (r.error) {
      tr.className = 'down';
      tr.append(cell(String(i)), cell(r.address), cell('down (' + r.error + ')'));
      for (let k = 0; k < 7; k++) tr.append(cell(''));
    } else {
      if (s.disagreeing.includes(i) || (r.disk && r.disk.failed) || named[i]) tr.className = 'disagrees';
      const state = r.disk && r.disk.failed
        ? 'DISK FAILING (' + (r.disk.failed.code || r.disk.failed.error) + ')' + (r.disk.restarting ? ', restarting' : '')
        : r.recovering ? 'up, recovering' : 'up';
      tr.append(cell(String(i)), cell(r.address), cell(state),
        cell(r.active ? String(r.view) : r.view + ' (changing)', 'num'),
        cell(r.primary === i ? 'primary' : ''), cell(String(r.lastExecuted), 'num'),
        cell(String(r.lastCommitted), 'num'), cell(String(r.stable), 'num'));
      const d = cell('');
      const code = document.createElement('code');
      code.textContent = (r.stableDigest || '').slice(0, 16);
      d.append(code);
      tr.append(d);
      const lag = maxExec - r.lastExecuted, slag = maxStable - r.stable;
      // Marked past one log window (256): a checkpoint or two behind is normal in passing.
      tr.append(cell(lag + ' / ' + slag, lag > 256 || slag > 256 ? 'num hot' : 'num'));
    }
    rows.append(tr);
  });
}
function renderVerdicts(s) {
  const ul = document.getElementById('verdicts');
  ul.replaceChildren();
  for (const v of s.verdicts || []) {
    const li = document.createElement('li');
    li.dataset.replica = String(v.replica);
    li.dataset.kind = v.kind;
    li.textContent = v.text;
    ul.append(li);
  }
  if (!(s.verdicts || []).length) {
    const li = document.createElement('li');
    li.className = 'none';
    li.textContent = 'no replica is attributed a fault';
    ul.append(li);
  }
}
function renderFaults(s) {
  const body = document.getElementById('faults');
  body.replaceChildren();
  const observers = [];
  s.replicas.forEach((r, i) => { if (!r.error && r.faults) { observers.push(['replica ' + i, i, r.faults.recent]); document.getElementById('window').textContent = String(r.faults.windowSeconds); } });
  if (s.relayFaults) observers.push(['relay', -1, s.relayFaults.recent]);
  s.replicas.forEach((_, i) => {
    const tr = document.createElement('tr');
    tr.dataset.target = String(i);
    tr.append(cell(String(i)));
    for (const k of KINDS) {
      let sum = 0;
      const by = [];
      for (const o of observers) {
        if (o[1] === i) continue;
        const c = (o[2][i] || {})[k] || 0;
        if (c > 0) by.push(o[0] + ': ' + c);
        sum += c;
      }
      const hot = (s.verdicts || []).some((v) => v.replica === i && v.kind === k);
      const td = cell(String(sum), hot ? 'num hot' : 'num');
      td.title = by.join(', ') || 'none seen';
      tr.append(td);
    }
    body.append(tr);
  });
}
function renderCheckpoints(s) {
  const t = document.getElementById('checkpoints');
  t.replaceChildren();
  const seqs = new Set();
  const by = s.replicas.map((r) => {
    const m = {};
    if (!r.error) for (const c of r.checkpoints || [{ seq: r.stable, digest: r.stableDigest || '' }]) { m[c.seq] = c.digest; seqs.add(c.seq); }
    return m;
  });
  const head = document.createElement('tr');
  head.append(cell('checkpoint'));
  s.replicas.forEach((_, i) => { const th = document.createElement('th'); th.textContent = 'replica ' + i; head.append(th); });
  t.append(head);
  for (const q of [...seqs].sort((a, b) => b - a)) {
    const tr = document.createElement('tr');
    tr.dataset.seq = String(q);
    tr.append(cell(String(q), 'num'));
    const counts = {};
    for (const m of by) if (m[q]) counts[m[q]] = (counts[m[q]] || 0) + 1;
    let top = '', topN = 0;
    for (const d in counts) if (counts[d] > topN) { top = d; topN = counts[d]; }
    by.forEach((m) => {
      const td = cell('', m[q] && m[q] !== top ? 'mismatch' : '');
      const code = document.createElement('code');
      code.textContent = m[q] ? m[q].slice(0, 12) : '';
      td.append(code);
      tr.append(td);
    });
    t.append(tr);
  }
}
function renderProcedures(s) {
  const body = document.getElementById('procedures');
  body.replaceChildren();
  for (const p of s.procedures || []) {
    const tr = document.createElement('tr');
    tr.dataset.procedure = p.procedure;
    tr.append(cell(p.procedure), cell(String(p.calls), 'num'), cell(String(p.errors), 'num'),
      cell(p.p50.toFixed(2), 'num'), cell(p.p90.toFixed(2), 'num'), cell(p.p99.toFixed(2), 'num'));
    body.append(tr);
  }
}
function renderWriteBack(s) {
  const wb = s.writeBack;
  const now = document.getElementById('wb-now');
  document.getElementById('wb').hidden = !wb;
  if (!wb) {
    now.textContent = 'off (bfs relay --no-write-back): every WRITE is agreed before its reply';
    return;
  }
  const last = wb[wb.length - 1];
  now.textContent = last
    ? 'now ' + (last.dirtyBytes / 1024).toFixed(1) + ' KiB held for ' + last.dirtyFiles + ' file(s)'
    : 'no sample yet';
  chart(document.getElementById('wb-ops'), wb, [['buffered', '#1f77b4'], ['flushes', '#2ca02c'], ['flushErrors', '#d62728']]);
  const kib = wb.map((p) => ({ dirty: p.dirtyBytes / 1024, flushed: p.flushedBytes / 1024 }));
  chart(document.getElementById('wb-bytes'), kib, [['dirty', '#9467bd'], ['flushed', '#ff7f0e']]);
}
function renderEvents(s) {
  const body = document.getElementById('event-rows');
  body.replaceChildren();
  for (const e of (s.events || []).slice().reverse()) {
    const tr = document.createElement('tr');
    tr.dataset.kind = e.kind;
    tr.append(cell(new Date(e.at).toLocaleTimeString()), cell(e.kind), cell(e.text));
    body.append(tr);
  }
}
function renderBanner(s) {
  const down = s.replicas.filter((r) => r.error).length;
  const faulty = (s.verdicts || []).filter((v) => v.kind !== 'down' && v.kind !== 'diskFailing');
  const named = [...new Set(faulty.map((v) => v.replica))];
  const banner = document.getElementById('banner');
  banner.className = 'banner ' + (s.healthy && named.length === 0 ? 'ok' : 'bad');
  banner.textContent = s.split !== null
    ? 'histories FORKED at checkpoint ' + s.split + ': no digest has 2f + 1 votes'
    : s.disagreeing.length
    ? 'checkpoint digests DISAGREE: replica ' + s.disagreeing.join(', ')
    : s.diskFailing && s.diskFailing.length
    ? 'replica ' + s.diskFailing.join(', ') + ': disk writes FAIL; it votes no more and rejoins when its disk takes writes'
    : 'checkpoint digests agree; ' + down + ' of ' + s.replicas.length + ' down (tolerates ' + s.f + ')' +
      (s.primary === null ? '' : '; primary is replica ' + s.primary) +
      (named.length ? '; FAULTY: replica ' + named.join(', ') : '');
}
async function refresh() {
  try {
    const s = await (await fetch('api/status', { cache: 'no-store' })).json();
    renderBanner(s);
    renderVerdicts(s);
    renderReplicas(s);
    const series = s.series || [];
    chart(document.getElementById('ops'), series, [['ops', '#1f77b4'], ['readOnly', '#2ca02c'], ['errors', '#d62728']]);
    chart(document.getElementById('latency'), series, [['p50', '#1f77b4'], ['p90', '#ff7f0e'], ['p99', '#d62728']]);
    renderWriteBack(s);
    renderProcedures(s);
    renderFaults(s);
    renderCheckpoints(s);
    renderEvents(s);
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
