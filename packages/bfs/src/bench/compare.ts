/**
 * `bfs bench compare`: the Andrew-style and micro benchmarks against several NFS servers started
 * here (BFS with four replicas, BFS unreplicated, nfs-server-ts in memory) plus any given by URL
 * (for instance nfs-ganesha), with Andrew runs interleaved across systems so machine drift
 * cancels. Prints a table of median times and ratios, writes JSON and an SVG chart.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PHASES, type PhaseTimes, andrewRun, generateTree, medianTimes, readTree } from './andrew';
import { type MicroResult, micro } from './micro';
import { bfsCliPath } from '../cli-path';
import { barChart } from './svg';
import { parseNfsUrl } from './target';

export interface System {
  name: string;
  url: string;
  stop(): Promise<void>;
}

const READY = /^ready (nfs:\/\/\S+)$/m;

/** Starts `node SCRIPT ARGS` and resolves once it prints its ready line. */
export function startServer(
  name: string,
  script: string,
  args: string[],
  timeoutMs = 60_000,
): Promise<System> {
  const child: ChildProcess = spawn(process.execPath, [script, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err = (err + d).slice(-4000)));
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      child.kill('SIGINT');
    });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not become ready in ${timeoutMs} ms:\n${err}`));
    }, timeoutMs);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = READY.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ name, url: m[1], stop });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code}) before it was ready:\n${err}`));
    });
  });
}

export interface CompareOptions {
  runs?: number;
  copies?: number;
  tree?: string;
  microOps?: number;
  microSeconds?: number;
  /** Extra systems already running: name=url. */
  extra?: { name: string; url: string }[];
  outDir?: string;
  progress?: (line: string) => void;
}

export interface CompareResult {
  andrew: Record<string, { median: PhaseTimes; runs: PhaseTimes[] }>;
  micro: Record<string, MicroResult>;
  /** Andrew total of each system divided by BFS unreplicated's. */
  ratioToUnreplicated: Record<string, number>;
  files: { json: string; svg: string };
}

export async function compare(o: CompareOptions = {}): Promise<CompareResult> {
  const progress = o.progress ?? (() => undefined);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-bench-'));
  const bfsCli = bfsCliPath();
  const nfsCli = path.join(
    path.dirname(require.resolve('nfs-server-ts/package.json')),
    'dist',
    'cli.js',
  );
  const systems: System[] = [];
  try {
    progress('starting BFS (4 replicas + relay), BFS unreplicated and nfs-server-ts (memory)');
    systems.push(
      await startServer('bfs', bfsCli, [
        'up',
        '--dir',
        path.join(work, 'bfs'),
        '--port',
        '0',
        '--size',
        '4G',
      ]),
    );
    systems.push(
      await startServer('bfs-nr', bfsCli, [
        'serve',
        '--dir',
        path.join(work, 'bfs-nr'),
        '--port',
        '0',
        '--size',
        '4G',
      ]),
    );
    systems.push(
      await startServer('memory', nfsCli, ['--memory', '--port', '0', '--no-root-squash']),
    );
    for (const e of o.extra ?? []) systems.push({ ...e, stop: async () => undefined });

    const files = o.tree ? readTree(o.tree) : generateTree();
    const runs: Record<string, PhaseTimes[]> = {};
    for (let r = 0; r < (o.runs ?? 3); r++) {
      for (const s of systems) {
        const t = await andrewRun(
          parseNfsUrl(s.url),
          files,
          o.copies ?? 1,
          `andrew-${Date.now().toString(36)}-${r}`,
        );
        (runs[s.name] ??= []).push(t);
        progress(`run ${r + 1}/${o.runs ?? 3} ${s.name}: total ${t.total.toFixed(3)} s`);
      }
    }
    const andrewRes: CompareResult['andrew'] = {};
    for (const s of systems)
      andrewRes[s.name] = { runs: runs[s.name], median: medianTimes(runs[s.name]) };
    const microRes: CompareResult['micro'] = {};
    for (const s of systems) {
      microRes[s.name] = await micro(parseNfsUrl(s.url), {
        ops: o.microOps ?? 300,
        seconds: o.microSeconds ?? 2,
      });
      progress(`micro ${s.name} done`);
    }
    const base = andrewRes['bfs-nr'].median.total;
    const ratioToUnreplicated = Object.fromEntries(
      systems.map((s) => [s.name, andrewRes[s.name].median.total / base]),
    );

    const outDir = o.outDir ?? 'bench-results';
    fs.mkdirSync(outDir, { recursive: true });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const json = path.join(outDir, `compare-${stamp}.json`);
    const svg = path.join(outDir, `compare-${stamp}.svg`);
    const groups = [...PHASES, 'total'] as const;
    fs.writeFileSync(
      svg,
      barChart(
        `Andrew-style benchmark, median of ${o.runs ?? 3} runs (${o.copies ?? 1} cop${(o.copies ?? 1) === 1 ? 'y' : 'ies'})`,
        [...groups],
        systems.map((s) => ({
          name: s.name,
          values: groups.map((g) => andrewRes[s.name].median[g]),
        })),
        's',
      ),
    );
    const result: CompareResult = {
      andrew: andrewRes,
      micro: microRes,
      ratioToUnreplicated,
      files: { json, svg },
    };
    fs.writeFileSync(json, JSON.stringify(result, null, 2) + '\n');
    return result;
  } finally {
    await Promise.all(systems.map((s) => s.stop()));
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** The table `bfs bench compare` prints. */
export function formatCompare(r: CompareResult): string {
  const names = Object.keys(r.andrew);
  const lines: string[] = [];
  const row = (cells: string[]) =>
    lines.push(cells.map((c, i) => (i === 0 ? c.padEnd(10) : c.padStart(12))).join(' '));
  row(['phase (s)', ...names]);
  for (const p of [...PHASES, 'total'] as const)
    row([p, ...names.map((n) => r.andrew[n].median[p].toFixed(3))]);
  row(['vs bfs-nr', ...names.map((n) => `${r.ratioToUnreplicated[n].toFixed(2)}x`)]);
  lines.push('');
  row(['micro (ms)', ...names]);
  for (const c of ['getattr', 'setattr', 'write4k', 'read4k'] as const) {
    row([`${c} p50`, ...names.map((n) => r.micro[n].latencyMs[c].p50.toFixed(3))]);
  }
  row(['getattr/s', ...names.map((n) => r.micro[n].throughput.getattr.toFixed(0))]);
  row(['setattr/s', ...names.map((n) => r.micro[n].throughput.setattr.toFixed(0))]);
  lines.push('', `JSON: ${r.files.json}`, `chart: ${r.files.svg}`);
  return lines.join('\n');
}
