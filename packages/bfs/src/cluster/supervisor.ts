/**
 * A replica process that outlives its disk's failures. When a durable write fails (a full disk,
 * an I/O error, damage LevelDB reports), the replica is fenced: it sends nothing, so it votes
 * for nothing its disk may lack, and the others go on as with one faulty replica. LevelDB keeps
 * failing every write once one failed, so the way back is a restart from disk: the supervisor
 * probes the data directory every DISK_PROBE_INTERVAL_MS, and once a probe write is on disk it
 * closes the replica and starts it again in the same process, moving aside a database that
 * reported damage. Status and metrics stay on their port throughout and say what happened.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import pino from 'pino';
import { isCorruption } from '@bfs/page-store';
import { ConfigError, loadCluster, replicaName } from './config';
import {
  type ReplicaProcessOptions,
  type RunningReplica,
  diskFailure,
  errorCode,
  newDiskStatus,
  startReplica,
} from './node';
import { type DiskFailure, type ReplicaStatus, StatusEndpoint, statusPort } from './status';

/** How often a fenced replica checks whether its disk takes writes again. */
export const DISK_PROBE_INTERVAL_MS = 2000;
/**
 * Bytes a probe writes and fsyncs: a disk with less room than this free would fail the restart
 * (LevelDB writes a new log and MANIFEST when it opens).
 */
export const DISK_PROBE_BYTES = 4 * 2 ** 20;
/** How long closing a fenced replica may take before the restart is tried anyway. */
export const REPLICA_CLOSE_TIMEOUT_MS = 10_000;
/** File the probe writes in the replica's data directory (deleted after each probe). */
export const DISK_PROBE_FILE = '.disk-probe';

export interface SupervisedReplica {
  /** The replica now running; undefined between a close and the next start. */
  current(): RunningReplica | undefined;
  close(): Promise<void>;
}

/** Whether `dir` takes DISK_PROBE_BYTES, written and fsync'd, now. */
export function diskWritable(dir: string): boolean {
  const file = path.join(dir, DISK_PROBE_FILE);
  try {
    const fd = fs.openSync(file, 'w', 0o600);
    try {
      const chunk = Buffer.alloc(2 ** 20, 0x5a);
      for (let left = DISK_PROBE_BYTES; left > 0; left -= chunk.length)
        fs.writeSync(fd, chunk, 0, Math.min(left, chunk.length));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(file, { force: true });
  }
}

/** Errors of the disk (rather than of the configuration) that a start may fail with. */
function diskError(e: unknown): boolean {
  const code = errorCode(e);
  return (
    isCorruption(e) ||
    code === 'LEVEL_IO_ERROR' ||
    ['ENOSPC', 'EIO', 'EROFS', 'EDQUOT'].includes(code ?? '')
  );
}

function timeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

export async function superviseReplica(o: ReplicaProcessOptions): Promise<SupervisedReplica> {
  const log = o.logger ?? pino({ level: 'silent' });
  const cfg = loadCluster(o.dir);
  const me = cfg.replicas[o.id];
  if (!me) throw new ConfigError(`replica id ${o.id} is not in 0..${cfg.replicas.length - 1}`);
  const dataDir = o.dataDir ?? path.join(o.dir, replicaName(o.id));
  const disk = o.disk ?? newDiskStatus();
  const endpoint = await StatusEndpoint.open(o.listenHost ?? me.host, statusPort(cfg, o.id));
  let running: RunningReplica | undefined;
  let last: ReplicaStatus | undefined;
  let probe: NodeJS.Timeout | undefined;
  let closed = false;
  let restarting: Promise<void> = Promise.resolve();
  const between = (): ReplicaStatus | { error: string } => {
    const why = disk.failed ? `disk failing: ${disk.failed.error}` : 'restarting';
    return last ? { ...last, disk: { ...disk } } : { error: why };
  };

  const start = async (discard?: ReplicaProcessOptions['discard']): Promise<boolean> => {
    try {
      running = await startReplica({
        ...o,
        statusEndpoint: endpoint,
        disk,
        discard,
        onDiskFailure: (f) => {
          o.onDiskFailure?.(f);
          watchDisk();
        },
      });
      return true;
    } catch (e) {
      if (!diskError(e)) throw e;
      disk.failures++;
      disk.failed = diskFailure('start', e);
      log.error({ err: (e as Error).message }, 'replica start failed on its disk: retrying');
      endpoint.status = between;
      watchDisk();
      return false;
    }
  };

  const restart = async (): Promise<void> => {
    const failure: DiskFailure | null = disk.failed;
    const old = running;
    running = undefined;
    disk.restarting = true;
    if (old) {
      last = old.status();
      endpoint.status = between;
      await timeout(old.close(), REPLICA_CLOSE_TIMEOUT_MS, 'closing the fenced replica').catch(
        (e) => log.error({ err: (e as Error).message }, 'closing the fenced replica failed'),
      );
    }
    if (closed) return;
    const corrupt = failure?.corrupt ?? false;
    // The page store checks itself at open; a log that reported damage is not trusted again.
    const ok = await start({
      commitLog: corrupt && failure?.what === 'commit-log',
      store: corrupt && failure?.what === 'page-store',
    });
    disk.restarting = false;
    if (!ok) return;
    disk.restarts++;
    disk.failed = null;
    log.warn(
      { restarts: disk.restarts },
      'the disk takes writes again: replica restarted from disk',
    );
  };

  function watchDisk(): void {
    if (probe || closed) return;
    probe = setInterval(() => {
      if (!diskWritable(dataDir)) return;
      clearInterval(probe);
      probe = undefined;
      restarting = restarting.then(restart).catch((e) => {
        log.fatal({ err: (e as Error).message }, 'replica restart failed');
        watchDisk();
      });
    }, DISK_PROBE_INTERVAL_MS);
  }

  try {
    await start();
  } catch (e) {
    await endpoint.close();
    throw e;
  }
  return {
    current: () => running,
    async close() {
      closed = true;
      if (probe) clearInterval(probe);
      await restarting;
      await running?.close();
      running = undefined;
      await endpoint.close();
    },
  };
}
