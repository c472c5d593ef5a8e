/** Starts replicas as real child processes over TCP on loopback (ports chosen by the OS). */
import { ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import * as path from 'node:path';

export interface ProcCluster {
  ports: Map<number, number>;
  procs: ChildProcess[];
  /** Each process's STATS line (JSON), without stopping it. */
  snapshot(): Promise<string[]>;
  stop(): Promise<string[]>;
}

const ROOT = path.resolve(__dirname, '../../../..');

/**
 * `script` (a path without its extension) follows the replica process's protocol: it gets
 * `args(i)` as JSON in argv[2], prints "PORT <p>", reads {"peers": {"<id>": port}} from stdin
 * and prints "READY" once it can take requests.
 */
/** `n` replica processes of the null service for `clients` client ids, plus `extra(id)`'s arguments. */
export function startNullReplicas(
  n: number,
  clients: number,
  extra: (id: number) => Record<string, unknown>,
): Promise<ProcCluster> {
  return startProcesses(n, (id) => ({
    id,
    n,
    service: 'null',
    mode: 'replica',
    clients,
    ...extra(id),
  }));
}

export async function startProcesses(
  count: number,
  args: (id: number) => Record<string, unknown>,
  script = path.join(__dirname, 'replica-process'),
): Promise<ProcCluster> {
  // Compiled (the benchmark) runs plain node, as production does; from source, tsx.
  const compiled = __filename.endsWith('.js');
  const file = `${script}${compiled ? '.js' : '.ts'}`;
  const loader = compiled ? [] : ['--import', 'tsx'];
  const procs: ChildProcess[] = [];
  const lines: AsyncIterator<string>[] = [];
  for (let i = 0; i < count; i++) {
    // PBFT_NODE_ARGS: extra node flags for the children, e.g. "--cpu-prof --cpu-prof-dir=/tmp/p".
    const extra = (process.env.PBFT_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const p = spawn(process.execPath, [...extra, ...loader, file, JSON.stringify(args(i))], {
      cwd: ROOT,
      env: { ...process.env, TSX_TSCONFIG_PATH: path.join(ROOT, 'tsconfig.json') },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    procs.push(p);
    lines.push(createInterface({ input: p.stdout! })[Symbol.asyncIterator]());
  }
  const next = async (i: number, prefix: string): Promise<string> => {
    for (;;) {
      const r = await lines[i]!.next();
      if (r.done) throw new Error(`process ${i} exited before "${prefix}"`);
      if (r.value.startsWith(prefix)) return r.value.slice(prefix.length).trim();
    }
  };
  const ports = new Map<number, number>();
  for (let i = 0; i < count; i++) ports.set(i, Number(await next(i, 'PORT')));
  const peers = Object.fromEntries(ports);
  for (const p of procs) p.stdin!.write(`${JSON.stringify({ peers })}\n`);
  for (let i = 0; i < count; i++) await next(i, 'READY');
  return {
    ports,
    procs,
    async snapshot() {
      return Promise.all(
        procs.map((p, i) => {
          p.kill('SIGUSR2');
          return next(i, 'STATS');
        }),
      );
    },
    async stop() {
      const out: string[] = [];
      await Promise.all(
        procs.map(async (p, i) => {
          const exited = new Promise((r) => p.once('exit', r));
          p.kill('SIGTERM');
          out[i] = await next(i, 'STATS').catch(() => '{}');
          await exited;
        }),
      );
      return out;
    },
  };
}
