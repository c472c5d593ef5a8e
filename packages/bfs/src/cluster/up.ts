/**
 * `bfs up`: four replicas and a relay as child processes on loopback. Creates the cluster in
 * `dir` when there is none, prints the relay's ready line and the mount command, and stops every
 * child on SIGINT/SIGTERM. A child that dies is reported; the cluster keeps serving while no more
 * than f replicas are down.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  CONFIG_FILE,
  DEFAULT_BASE_PORT,
  STATUS_PORT_OFFSET,
  initCluster,
  loadCluster,
} from './config';
import { allFree, canBind, freeConsecutivePorts } from './ports';
import { fetchStatus, statusPort } from './status';
import { bfsCliPath } from '../cli-path';
import { LOG_WINDOW } from '@bfs/pbft';
import { jsonLogLine, logFormat, readableLogLine } from '../log';

/** The relay's status page port under `bfs up` (a free one if taken). */
export const UP_STATUS_PAGE_PORT = 7080;
/** How long a child may take to print its ready line. */
export const CHILD_READY_TIMEOUT_MS = 30_000;
/** Proactive recovery: how long a restarted replica may take to reach the others' stable checkpoint. */
export const RECOVERY_CATCH_UP_TIMEOUT_MS = 60_000;

export interface UpOptions {
  dir: string;
  port: number;
  host?: string;
  stateSize?: number;
  /**
   * Proactive recovery (TOCS 2002 section 4): every period, each replica in turn is restarted
   * from its own disk (store re-hashed and checked, state compared with the others and fetched
   * where it differs), one at a time. Off when undefined.
   */
  recoveryPeriodMs?: number;
  /**
   * The relay serves the portmapper on port 111 too (`bfs relay --portmap-111`), where a
   * kernel client's lock manager asks for NLM: the mount line printed then has no `nolock`.
   */
  portmap111?: boolean;
  /** The relay's lookup cache bound in ms (`bfs relay --lookup-cache`; default LOOKUP_CACHE_MS). */
  lookupCacheMs?: number;
  /**
   * Where progress goes (stderr by default); the ready line and the command lines to paste
   * (mount, status) go to `out` (stdout by default).
   */
  log?: (line: string) => void;
  out?: (line: string) => void;
}

export interface RunningCluster {
  port: number;
  children: ChildProcess[];
  close(): Promise<void>;
}

function startChild(
  args: string[],
  name: string,
  log: (l: string) => void,
  ready: RegExp,
): Promise<{ child: ChildProcess; line: string }> {
  // BFS_NODE_ARGS: extra node flags for every child, e.g. "--cpu-prof --cpu-prof-dir=/tmp/p".
  const nodeArgs = (process.env.BFS_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, bfsCliPath(), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, BFS_LOG_FORMAT: 'json' },
  });
  // Children log JSON; passed on as it is, or readably prefixed by the child on a terminal.
  const json = logFormat() === 'json';
  child.stderr!.on('data', (d: Buffer) => {
    for (const l of d.toString().split('\n'))
      if (l) log(json ? jsonLogLine(l, { child: name }) : `[${name}] ${readableLogLine(l)}`);
  });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} printed no ready line within ${CHILD_READY_TIMEOUT_MS} ms`));
    }, CHILD_READY_TIMEOUT_MS);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, line: m[0] });
      }
    });
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${sig ?? code}) before it was ready`));
    });
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

export async function up(o: UpOptions): Promise<RunningCluster> {
  const write = o.log ?? ((l) => process.stderr.write(l + '\n'));
  // Our own progress lines: JSON records too when the children's are.
  const log = logFormat() === 'json' ? (l: string) => write(jsonLogLine(l)) : write;
  const out = o.out ?? ((l) => process.stdout.write(l + '\n'));
  const host = o.host ?? '127.0.0.1';
  fs.mkdirSync(o.dir, { recursive: true });
  if (!fs.existsSync(path.join(o.dir, CONFIG_FILE))) {
    const wanted = Array.from({ length: 4 }, (_, i) => DEFAULT_BASE_PORT + i);
    let basePort = DEFAULT_BASE_PORT;
    if (!(await allFree([...wanted, ...wanted.map((p) => p + STATUS_PORT_OFFSET)]))) {
      basePort = await freeConsecutivePorts(4, STATUS_PORT_OFFSET);
      log(
        `ports ${DEFAULT_BASE_PORT}-${DEFAULT_BASE_PORT + 3} are taken; replicas use ${basePort}-${basePort + 3}`,
      );
    }
    await initCluster({ dir: o.dir, replicas: 4, basePort, stateSize: o.stateSize });
    log(`created a 4-replica cluster in ${o.dir} (config and keys)`);
  }
  const cfg = loadCluster(o.dir);
  let port = o.port;
  if (port !== 0 && !(await canBind(port, host))) {
    log(`port ${port} is taken; the relay listens on a free port instead (see the ready line)`);
    port = 0;
  }
  const httpPort = (await canBind(UP_STATUS_PAGE_PORT, host)) ? UP_STATUS_PAGE_PORT : 0;
  const children: ChildProcess[] = [];
  let stopping = false;
  let watchdog: Promise<void> = Promise.resolve();
  /** Replicas the watchdog is restarting on purpose (their exit is not news). */
  const restarting = new Set<number>();
  const close = async () => {
    stopping = true;
    await watchdog;
    await Promise.all([...children].reverse().map(stopChild));
  };
  try {
    const replicas = await Promise.all(
      cfg.replicas.map((_, i) =>
        startChild(
          ['replica', '--dir', o.dir, '--id', String(i)],
          `replica ${i}`,
          write,
          /^ready replica \d+$/m,
        ),
      ),
    );
    for (const r of replicas) children.push(r.child);
    const relay = await startChild(
      [
        'relay',
        '--dir',
        o.dir,
        '--port',
        String(port),
        '--host',
        host,
        '--http-port',
        String(httpPort),
        ...(o.portmap111 ? ['--portmap-111'] : []),
        ...(o.lookupCacheMs === undefined
          ? []
          : ['--lookup-cache', String(o.lookupCacheMs / 1000)]),
      ],
      'relay',
      write,
      /^ready nfs:\/\/\S+$/m,
    );
    children.push(relay.child);
    children.forEach((c, i) => reportExit(i, c));
    const m = /nfsport=(\d+)/.exec(relay.line)!;
    port = Number(m[1]);
    out(relay.line);
    // The command lines to paste go with the ready line, as they are whatever the log's format.
    // Without a portmapper on 111 a kernel client cannot find the lock manager: nolock.
    const lock = o.portmap111 ? '' : ',nolock';
    out(
      `mount with: mount -t nfs -o vers=3,proto=tcp,port=${port},mountport=${port}${lock} ${host}:/ /mnt/bfs`,
    );
    out(`status: npx bfs status --dir ${o.dir}`);
    if (o.recoveryPeriodMs !== undefined) {
      const period = o.recoveryPeriodMs;
      log(
        `proactive recovery: each replica restarts from its disk every ${period / 1000} s, in turn`,
      );
      watchdog = (async () => {
        for (let i = 0; !stopping; i = (i + 1) % cfg.replicas.length) {
          await sleepUnless(period / cfg.replicas.length, () => stopping);
          if (stopping) break;
          try {
            await recoverReplica(i);
          } catch (e) {
            log(`proactive recovery of replica ${i} failed: ${(e as Error).message}`);
          }
        }
      })();
    }
  } catch (e) {
    await close();
    throw e;
  }
  return { port, children, close };

  /** Says when child `i` dies, unless we stop or restart it on purpose. */
  function reportExit(i: number, child: ChildProcess): void {
    const name = i < cfg.replicas.length ? `replica ${i}` : 'relay';
    child.once('exit', (code, sig) => {
      if (!stopping && !restarting.has(i) && children[i] === child)
        log(`${name} exited (${sig ?? code}); the cluster tolerates ${cfg.f} faulty replica(s)`);
    });
  }

  /** Restarts replica i from its disk and waits until it has the others' stable checkpoint. */
  async function recoverReplica(i: number): Promise<void> {
    const others = await Promise.all(
      cfg.replicas.map((r, j) => (j === i ? undefined : fetchStatus(r.host, statusPort(cfg, j)))),
    );
    const target = Math.max(0, ...others.map((s) => (s && !('error' in s) ? s.stable : 0)));
    log(`proactive recovery: restarting replica ${i} from its disk`);
    const started = Date.now();
    restarting.add(i);
    let next: { child: ChildProcess };
    try {
      await stopChild(children[i]!);
      if (stopping) return;
      next = await startChild(
        ['replica', '--dir', o.dir, '--id', String(i)],
        `replica ${i}`,
        write,
        /^ready replica \d+$/m,
      );
      children[i] = next.child;
    } finally {
      restarting.delete(i);
    }
    reportExit(i, next.child);
    const deadline = Date.now() + RECOVERY_CATCH_UP_TIMEOUT_MS;
    while (!stopping && Date.now() < deadline) {
      const s = await fetchStatus(cfg.replicas[i].host, statusPort(cfg, i));
      // Back once the stable checkpoint moved a log window past where the others were: it
      // votes in no view it may have voted in before its restart, so until the cluster has
      // worked with it for that long, another replica down could leave no quorum (a restart
      // with an intact log is not `recovering`, so that flag alone no longer paces this).
      if (!('error' in s) && s.stable >= target + LOG_WINDOW && !s.recovering) {
        log(
          `proactive recovery: replica ${i} is back at checkpoint ${s.stable} after ${Date.now() - started} ms`,
        );
        return;
      }
      await sleepUnless(200, () => stopping);
    }
    if (!stopping) log(`proactive recovery: replica ${i} has not reached checkpoint ${target} yet`);
  }
}

/** Waits `ms`, waking early (every 100 ms check) once `stop()` says so. */
async function sleepUnless(ms: number, stop: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (!stop() && Date.now() < end)
    await new Promise((r) => setTimeout(r, Math.min(100, end - Date.now())));
}
