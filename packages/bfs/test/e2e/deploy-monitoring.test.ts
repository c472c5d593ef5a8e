/**
 * deploy/: the Prometheus scrape configurations, alert rules and Grafana dashboard. Checked with
 * promtool where Debian's `prometheus` package provides it (check config, check rules, the rules'
 * unit tests, and every dashboard query parsed as a rule), and always against what a real
 * cluster's /metrics exports: every metric a rule or a panel names must exist there, every
 * event label value must be one the code counts, and every metric family exported must be on
 * the dashboard or in NOT_CHARTED with the reason.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse, stringify } from 'yaml';
import { Nfs3Client, RpcClient, authSys } from 'nfs-server-ts';
import {
  DEFAULT_BASE_PORT,
  STATUS_PORT_OFFSET,
  initCluster,
  loadCluster,
} from '../../src/cluster/config';
import { statusPort } from '../../src/cluster/status';
import { UP_STATUS_PAGE_PORT } from '../../src/cluster/up';
import { ROOT, inProcessCluster } from './helpers';

const DEPLOY = path.join(ROOT, 'deploy');
const PROMETHEUS = path.join(DEPLOY, 'prometheus');

interface ScrapeConfig {
  job_name: string;
  honor_labels?: boolean;
  static_configs: { targets: string[]; labels?: Record<string, string> }[];
}
interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type: string; uid: string };
  targets?: { expr: string; refId: string; datasource?: { uid: string } }[];
}

const yamlFile = <T>(name: string): T =>
  parse(fs.readFileSync(path.join(PROMETHEUS, name), 'utf8'));
const rules = (): Rule[] =>
  yamlFile<{ groups: { name: string; rules: Rule[] }[] }>('bfs-alerts.yml').groups.flatMap(
    (g) => g.rules,
  );
const dashboard = (): { panels: Panel[]; [k: string]: unknown } =>
  JSON.parse(fs.readFileSync(path.join(DEPLOY, 'grafana', 'bfs-dashboard.json'), 'utf8'));
/** A panel's query as Prometheus sees it: Grafana's interval variable filled in. */
const promql = (expr: string) => expr.replaceAll('$__rate_interval', '1m');
const queries = () => [
  ...rules().map((r) => r.expr),
  ...dashboard().panels.flatMap((p) => (p.targets ?? []).map((t) => promql(t.expr))),
];

/** Each scrape job's targets, as `host:port` with the `replica` label (or undefined). */
function targets(file: string): Record<string, [string, string | undefined][]> {
  const cfg = yamlFile<{ scrape_configs: ScrapeConfig[]; rule_files: string[] }>(file);
  assert.deepEqual(cfg.rule_files, ['bfs-alerts.yml']);
  return Object.fromEntries(
    cfg.scrape_configs.map((j) => [
      j.job_name,
      j.static_configs.flatMap((s) => s.targets.map((t) => [t, s.labels?.replica] as const)),
    ]),
  ) as Record<string, [string, string | undefined][]>;
}

/** a_(b|c)_d -> a_b_d, a_c_d: the simple alternations the rules use in __name__ and event. */
function alternatives(pattern: string): string[] {
  const m = /\(([^()]*)\)/.exec(pattern);
  if (!m) return pattern.split('|');
  return m[1]
    .split('|')
    .flatMap((alt) =>
      alternatives(pattern.slice(0, m.index) + alt + pattern.slice(m.index + m[0].length)),
    );
}

/** Metric names a PromQL expression reads. */
function metricNames(expr: string): string[] {
  const names = new Set<string>();
  for (const m of expr.matchAll(/__name__=~"([^"]+)"/g))
    for (const n of alternatives(m[1])) names.add(n);
  const withoutLabels = expr.replace(/\{[^}]*\}/g, '{}');
  for (const m of withoutLabels.matchAll(/\b(?:bfs|process|nodejs)_[a-z0-9_]+\b/g)) names.add(m[0]);
  return [...names];
}

/** The values of `event` matchers (exact or simple alternations; patterns with `.` skipped). */
function eventValues(expr: string): string[] {
  return [...expr.matchAll(/\bevent=~?"([^"]+)"/g)]
    .map((m) => m[1])
    .filter((v) => !v.includes('.'))
    .flatMap(alternatives);
}

/**
 * Metric families the replicas or the relay export that no dashboard panel charts, each with
 * why. Every other exported family must be on the dashboard: a new metric lands on it, or here.
 */
const NOT_CHARTED: Record<string, string> = {
  // prom-client's default process metrics: the dashboard charts process_cpu_seconds_total,
  // resident memory, heap used and event-loop lag p99; these add detail for a profiler.
  process_cpu_user_seconds_total: 'the user part of process_cpu_seconds_total',
  process_cpu_system_seconds_total: 'the system part of process_cpu_seconds_total',
  process_start_time_seconds: 'a restart shows in `up` and in the CPU panel',
  process_virtual_memory_bytes: 'resident memory is what matters on these hosts',
  process_heap_bytes: 'nodejs_heap_size_used_bytes is charted',
  process_open_fds: 'bounded by the connection limits, charted as NFS connections',
  process_max_fds: 'a constant of the host',
  nodejs_eventloop_lag_seconds: 'the p99 is charted',
  nodejs_eventloop_lag_min_seconds: 'the p99 is charted',
  nodejs_eventloop_lag_max_seconds: 'the p99 is charted',
  nodejs_eventloop_lag_mean_seconds: 'the p99 is charted',
  nodejs_eventloop_lag_stddev_seconds: 'the p99 is charted',
  nodejs_eventloop_lag_p50_seconds: 'the p99 is charted',
  nodejs_eventloop_lag_p90_seconds: 'the p99 is charted',
  nodejs_active_resources: 'libuv detail for debugging',
  nodejs_active_resources_total: 'libuv detail for debugging',
  nodejs_active_handles: 'libuv detail for debugging',
  nodejs_active_handles_total: 'libuv detail for debugging',
  nodejs_active_requests: 'libuv detail for debugging',
  nodejs_active_requests_total: 'libuv detail for debugging',
  nodejs_heap_size_total_bytes: 'heap used is charted',
  nodejs_heap_space_size_total_bytes: 'V8 heap spaces: detail for a profiler',
  nodejs_heap_space_size_used_bytes: 'V8 heap spaces: detail for a profiler',
  nodejs_heap_space_size_available_bytes: 'V8 heap spaces: detail for a profiler',
  nodejs_external_memory_bytes: 'within resident memory',
  nodejs_version_info: 'a label, not a quantity',
  nodejs_gc_duration_seconds: 'shows as event-loop lag',
};

/** Every name a Prometheus text exposition declares, with a histogram's series suffixes. */
function exported(text: string): Set<string> {
  const names = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(m[1]);
    if (m[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m[1] + s);
  }
  return names;
}

/** The metric families a Prometheus text exposition declares (no series suffixes). */
function families(text: string): string[] {
  return [...text.matchAll(/^# TYPE (\S+) \S+$/gm)].map((m) => m[1]);
}

/** One sample's value from a Prometheus text exposition, or undefined. */
function sample(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

describe('deploy/: Prometheus scrape configs, alert rules and the Grafana dashboard', function () {
  this.timeout(60_000);

  it('scrapes the four replicas and the relay at the ports bfs up and docker compose give them', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-deploy-'));
    try {
      // `bfs up`: a cluster of DEFAULT_BASE_PORT on loopback, the relay's page on 7080.
      await initCluster({ dir: path.join(dir, 'up'), replicas: 4 });
      const up = loadCluster(path.join(dir, 'up'));
      assert.equal(up.replicas[0].port, DEFAULT_BASE_PORT);
      const local = targets('prometheus.yml');
      assert.deepEqual(
        local['bfs-replica'],
        up.replicas.map((r, i) => [`${r.host}:${statusPort(up, i)}`, String(i)]),
      );
      assert.deepEqual(local['bfs-relay'], [[`127.0.0.1:${UP_STATUS_PAGE_PORT}`, undefined]]);
      // docker compose (and four hosts): the init service's --hosts and --base-port.
      const compose = parse(fs.readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8'));
      const flag = (cmd: string[], name: string) =>
        cmd.find((a) => a.startsWith(`--${name}=`))!.split('=')[1];
      const init: string[] = compose.services.init.command;
      const hosts = flag(init, 'hosts').split(',');
      const base = Number(flag(init, 'base-port'));
      const relayHttp = flag(compose.services.relay.command, 'http-port');
      const remote = targets('prometheus-hosts.yml');
      assert.deepEqual(
        remote['bfs-replica'],
        hosts.map((h, i) => [`${h}:${base + STATUS_PORT_OFFSET}`, String(i)]),
      );
      assert.deepEqual(remote['bfs-relay'], [
        [`${compose.services.relay.hostname}:${relayHttp}`, undefined],
      ]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('has the alerts operators need, each with a severity and a summary', () => {
    const all = rules();
    const names = all.map((r) => r.alert);
    for (const wanted of [
      'BfsReplicaDown',
      'BfsRelayDown',
      'BfsDigestsDisagree',
      'BfsViewChangeStorm',
      'BfsReplicaLagging',
      'BfsKeyRefreshFailing',
      'BfsReplicaFaulty',
      'BfsReplicaAttributedFaults',
    ])
      assert.ok(names.includes(wanted), `${wanted} in ${names.join(', ')}`);
    assert.equal(new Set(names).size, names.length, 'alert names are unique');
    for (const r of all) {
      assert.match(r.labels.severity, /^(warning|critical)$/, r.alert);
      assert.ok(r.annotations.summary, `${r.alert} has a summary`);
      if (r.for !== undefined) assert.match(r.for, /^\d+[smh]$/, r.alert);
    }
  });

  it('has a Grafana dashboard whose panels are well formed and tile the grid', () => {
    const d = dashboard();
    assert.equal(typeof d.title, 'string');
    assert.equal(typeof d.uid, 'string');
    assert.equal(typeof d.schemaVersion, 'number');
    const vars = (d.templating as { list: { name: string; type: string }[] }).list;
    assert.ok(vars.some((v) => v.name === 'datasource' && v.type === 'datasource'));
    const ids = d.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    const taken = new Set<string>();
    for (const p of d.panels) {
      assert.ok(['row', 'stat', 'timeseries'].includes(p.type), `${p.title}: ${p.type}`);
      const g = p.gridPos;
      assert.ok(g.x >= 0 && g.w > 0 && g.x + g.w <= 24 && g.h > 0 && g.y >= 0, p.title);
      for (let x = g.x; x < g.x + g.w; x++)
        for (let y = g.y; y < g.y + g.h; y++) {
          assert.ok(!taken.has(`${x},${y}`), `${p.title} overlaps another panel`);
          taken.add(`${x},${y}`);
        }
      if (p.type === 'row') continue;
      assert.equal(p.datasource?.uid, '${datasource}', p.title);
      assert.ok(p.targets && p.targets.length > 0, `${p.title} has queries`);
      const refs = p.targets.map((t) => t.refId);
      assert.equal(new Set(refs).size, refs.length, `${p.title}: refIds are unique`);
    }
  });

  it('passes promtool: both configs, the rules and their unit tests, every dashboard query', function () {
    if (spawnSync('promtool', ['--version']).error) {
      console.log('      skipped: no promtool (apt-get install prometheus; .ci/run does)');
      this.skip();
    }
    const promtool = (...args: string[]) => {
      const r = spawnSync('promtool', args, { cwd: PROMETHEUS, encoding: 'utf8' });
      assert.equal(r.status, 0, `promtool ${args.join(' ')}:\n${r.stdout}${r.stderr}`);
    };
    promtool('check', 'config', 'prometheus.yml');
    promtool('check', 'config', 'prometheus-hosts.yml');
    promtool('check', 'rules', 'bfs-alerts.yml');
    promtool('test', 'rules', 'bfs-alerts.test.yml');
    // Panels' queries as recording rules: promtool parses each one.
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-dashboard-'));
    try {
      const panels = dashboard().panels.flatMap((p) => p.targets ?? []);
      const file = path.join(tmp, 'dashboard-queries.yml');
      fs.writeFileSync(
        file,
        stringify({
          groups: [
            {
              name: 'dashboard',
              rules: panels.map((t, i) => ({
                record: `dashboard:query:${i}`,
                expr: promql(t.expr),
              })),
            },
          ],
        }),
      );
      promtool('check', 'rules', file);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  describe("against a real cluster's /metrics", () => {
    let cluster: Awaited<ReturnType<typeof inProcessCluster>>;
    const scrape = async (port: number) => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const replicaText = () => scrape(statusPort(loadCluster(cluster.dir), 0));
    const relayText = () => scrape(cluster.relay.httpPort!);

    before(async () => {
      cluster = await inProcessCluster();
    });
    after(async () => {
      await cluster?.close();
    });

    it('exports every metric the rules and the dashboard read, and counts every event they name', async () => {
      const names = new Set([...exported(await replicaText()), ...exported(await relayText())]);
      const missing = [...new Set(queries().flatMap(metricNames))].filter((n) => !names.has(n));
      assert.deepEqual(missing, [], `not exported by a replica nor the relay: ${missing}`);
      // Event labels appear only once counted: each must be a counter the code has.
      const code = ['pbft', 'bfs', 'nfs-server-ts']
        .flatMap((p) => {
          const src = path.join(ROOT, 'packages', p, 'src');
          return fs
            .readdirSync(src, { recursive: true })
            .map(String)
            .filter((f) => f.endsWith('.ts'))
            .map((f) => fs.readFileSync(path.join(src, f), 'utf8'));
        })
        .join('\n');
      for (const e of new Set(queries().flatMap(eventValues)))
        assert.match(code, new RegExp(`\\b${e}\\b`), `event ${e} is counted somewhere`);
    });

    it('charts every metric family the replicas and the relay export, but those NOT_CHARTED says why not', async () => {
      const all = new Set([...families(await replicaText()), ...families(await relayText())]);
      const charted = new Set(
        dashboard().panels.flatMap((p) =>
          (p.targets ?? []).flatMap((t) => metricNames(promql(t.expr))),
        ),
      );
      const isCharted = (family: string) =>
        charted.has(family) || ['_bucket', '_sum', '_count'].some((s) => charted.has(family + s));
      const missing = [...all].filter((f) => !isCharted(f) && !(f in NOT_CHARTED));
      assert.deepEqual(missing, [], 'exported, on no panel and not in NOT_CHARTED');
      // The list stays true: what it names is exported, and not charted after all.
      for (const f of Object.keys(NOT_CHARTED)) {
        assert.ok(all.has(f), `${f} in NOT_CHARTED is not exported (any more)`);
        assert.ok(!isCharted(f), `${f} in NOT_CHARTED is on the dashboard`);
      }
    });

    it("exports the relay's NFS connections and its view of the cluster", async () => {
      const rpc = await RpcClient.connect({ port: cluster.relay.port });
      try {
        const text = await relayText();
        assert.equal(sample(text, 'bfs_relay_nfs_connections'), 1);
        assert.equal(
          sample(text, 'bfs_relay_nfs_connection_events_total', { event: 'accepted' }),
          1,
        );
        assert.equal(sample(text, 'bfs_relay_nfs_held_bytes', { budget: 'buffered' }), 0);
        assert.ok(sample(text, 'bfs_relay_key_epoch_seconds')! > Date.now() / 1000 - 60);
        assert.equal(sample(text, 'bfs_relay_key_refresh_period_seconds'), 60);
        for (const i of ['0', '1', '2', '3']) {
          assert.equal(sample(text, 'bfs_cluster_replica_up', { replica: i }), 1, `replica ${i}`);
          assert.equal(sample(text, 'bfs_cluster_replica_digest_disagrees', { replica: i }), 0);
          assert.equal(typeof sample(text, 'bfs_cluster_replica_lag', { replica: i }), 'number');
        }
        assert.equal(sample(text, 'bfs_cluster_healthy'), 1);
        assert.equal(sample(text, 'bfs_cluster_forked'), 0);
      } finally {
        rpc.close();
      }
      const replica = await replicaText();
      assert.equal(sample(replica, 'bfs_replica_key_refresh_period_seconds', { replica: '0' }), 60);
      // One replica down: the relay says which, and the cluster is still healthy (f = 1).
      await cluster.replicas.pop()!.close();
      await new Promise((r) => setTimeout(r, 1100));
      const after = await relayText();
      assert.equal(sample(after, 'bfs_cluster_replica_up', { replica: '3' }), 0);
      assert.equal(sample(after, 'bfs_cluster_replica_lag', { replica: '3' }), undefined);
      assert.equal(sample(after, 'bfs_cluster_healthy'), 1);
      assert.equal(sample(after, 'bfs_relay_nfs_connections'), 0);
    });

    it("exports the write-back buffer's activity: UNSTABLE WRITEs buffered, flushes, bytes held (one replica down)", async () => {
      const rpc = await RpcClient.connect({ port: cluster.relay.port });
      try {
        const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
        const root = await nfs.mount('/');
        const { handle } = await nfs.create(root, 'write-back-metrics');
        await nfs.write(handle, 0, new Uint8Array(3000).fill(7), 'unstable');
        await nfs.write(handle, 3000, new Uint8Array(1000).fill(8), 'unstable');
        const held = await relayText();
        assert.ok(sample(held, 'bfs_relay_write_back_events_total', { event: 'buffered' })! >= 2);
        await nfs.commit(handle);
        const text = await relayText();
        assert.equal(sample(text, 'bfs_relay_write_back_dirty_bytes'), 0, 'COMMIT flushed all');
        assert.equal(sample(text, 'bfs_relay_write_back_dirty_files'), 0);
        assert.equal(sample(text, 'bfs_relay_write_back_flushes_in_flight'), 0);
        assert.equal(sample(text, 'bfs_relay_write_back_flushed_bytes_total'), 4000);
        assert.ok(sample(text, 'bfs_relay_write_back_events_total', { event: 'flushOps' })! >= 1);
        // The status page's series: a sample a second, with the writes' rate in it.
        const deadline = Date.now() + 5000;
        for (;;) {
          const view = (await (
            await fetch(`http://127.0.0.1:${cluster.relay.httpPort}/api/status`)
          ).json()) as { writeBack: { buffered: number; flushedBytes: number }[] | null };
          assert.ok(view.writeBack, 'write-back is on');
          if (view.writeBack.some((p) => p.buffered > 0 && p.flushedBytes > 0)) break;
          assert.ok(Date.now() < deadline, JSON.stringify(view.writeBack));
          await new Promise((r) => setTimeout(r, 250));
        }
      } finally {
        rpc.close();
      }
    });
  });
});
