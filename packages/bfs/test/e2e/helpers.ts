import { type ChildProcess, execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { ByzantineMode } from '@bfs/pbft';
import { STATUS_PORT_OFFSET, initCluster } from '../../src/cluster/config';
import {
  type RelayProcessOptions,
  type RunningRelay,
  type RunningReplica,
  startRelay,
  startReplica,
} from '../../src/cluster/node';
import { freeConsecutivePorts } from '../../src/cluster/ports';

const execFileRaw = promisify(execFile);
/** libnfs tools spin forever when their server goes away: every run is bounded. */
export const LIBNFS_TIMEOUT_MS = 60_000;

export function execFileP(
  file: string,
  args: string[],
  opts: { encoding?: 'buffer' } = {},
): Promise<{ stdout: string; stderr: string }> & Promise<{ stdout: Buffer; stderr: Buffer }> {
  return execFileRaw(file, args, {
    timeout: LIBNFS_TIMEOUT_MS,
    killSignal: 'SIGKILL',
    maxBuffer: 64 * 2 ** 20,
    ...(opts.encoding ? { encoding: opts.encoding } : {}),
  }) as never;
}
export const ROOT = path.resolve(__dirname, '../../../..');
export const BFS_CLI = path.join(ROOT, 'packages/bfs/dist/cli.js');

/** The line `bfs up`, `bfs relay` and `bfs serve` print when they serve: the port is group 1. */
const READY_NFS = /^ready nfs:\/\/[^/]+\/\?nfsport=(\d+)&mountport=(\d+)&version=3$/m;

/**
 * Starts `bfs ARGS...` and resolves with the process and the number in its ready line (the NFS
 * port; `bfs replica` prints `ready replica I`: pass /^ready replica (\d+)$/m).
 */
export function startBfs(
  args: string[],
  timeoutMs = 30_000,
  ready = READY_NFS,
): Promise<{ child: ChildProcess; port: number; stderr: () => string }> {
  const child = spawn(process.execPath, [BFS_CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no ready line within ${timeoutMs} ms; stderr:\n${err}`));
    }, timeoutMs);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]), stderr: () => err });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`bfs exited with ${code} before ready; stderr:\n${err}`));
    });
  });
}

/** Sends SIGTERM and waits for the exit code. */
export function stop(child: ChildProcess): Promise<number | null> {
  // A child killed by a signal has no exit code, and its 'exit' already came.
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.kill('SIGTERM');
  });
}

/**
 * A libnfs URL. libnfs 4.0 mounts the directory part of the path, and refuses an empty one, so a
 * file in the export root is written `//name` (export '/', file 'name').
 */
export function nfsUrl(port: number, p: string): string {
  return `nfs://127.0.0.1${p}?nfsport=${port}&mountport=${port}&version=3`;
}

/** Waits until every replica has executed the same sequence number (tentative work settles). */
export async function converged(
  replicas: { replica: { lastExecuted: number } }[],
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (new Set(replicas.map((r) => r.replica.lastExecuted)).size > 1) {
    if (Date.now() > deadline) {
      throw new Error(`replicas did not converge: ${replicas.map((r) => r.replica.lastExecuted)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Four replicas and a relay (NFS and HTTP on free ports) in this process, on a new cluster;
 * `byzantine` makes the replicas it names misbehave; `relays` more relays (relay-1... without HTTP) and the cluster's `leaseSeconds` on request.
 */
export async function inProcessCluster(
  stateSize = 16 * 2 ** 20,
  opts: {
    byzantine?: Partial<Record<number, ByzantineMode>>;
    relays?: number;
    leaseSeconds?: number;
    relay?: Pick<RelayProcessOptions, 'lockCallbackPort'>;
  } = {},
): Promise<{
  dir: string;
  replicas: RunningReplica[];
  relay: RunningRelay;
  relays: RunningRelay[];
  close(): Promise<void>;
}> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-cluster-'));
  const basePort = await freeConsecutivePorts(4, STATUS_PORT_OFFSET);
  const { relays: count = 1, leaseSeconds, byzantine = {} } = opts;
  await initCluster({ dir, replicas: 4, basePort, stateSize, relays: count, leaseSeconds });
  const replicas = await Promise.all(
    [0, 1, 2, 3].map((id) => startReplica({ dir, id, byzantine: byzantine[id] })),
  );
  const relays: RunningRelay[] = [];
  for (let i = 0; i < count; i++) {
    const name = `relay-${i}`;
    const relay = await startRelay({
      dir,
      name,
      port: 0,
      httpPort: i === 0 ? 0 : undefined,
      ...opts.relay,
    });
    // A test may close a relay itself: it closes once, whoever asks.
    const closeRelay = relay.close.bind(relay);
    let relayClosed: Promise<void> | undefined;
    relay.close = () => (relayClosed ??= closeRelay());
    relays.push(relay);
  }
  return {
    dir,
    replicas,
    relay: relays[0],
    relays,
    async close() {
      // A test that stops a replica or a relay itself takes it out of `replicas` or `relays`.
      await Promise.all(relays.map((r) => r.close()));
      await Promise.all(replicas.map((r) => r.close()));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
