/**
 * `bfs serve`: the BFS file system and page store directly behind the NFS front end, with no
 * replication (the paper's BFS-nr), for comparison. The state persists in LevelDB as a
 * checkpoint every PERSIST_INTERVAL_MS; a crash loses at most that much.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PersistentPageStore } from '@bfs/page-store';
import { NfsServer, newGenerationKey } from 'nfs-server-ts';
import { randomFsid } from './cluster/config';
import { BfsService, DEFAULT_STATE_SIZE } from './service/bfs-service';

/** How often the unreplicated server checkpoints and persists its state. */
export const PERSIST_INTERVAL_MS = 1000;

export interface ServeOptions {
  dir: string;
  port: number;
  host?: string;
  stateSize?: number;
  persistIntervalMs?: number;
}

export interface RunningServer {
  port: number;
  url: string;
  close(): Promise<void>;
}

export function readyUrl(host: string, port: number): string {
  return `nfs://${host}/?nfsport=${port}&mountport=${port}&version=3`;
}

export async function serveUnreplicated(opts: ServeOptions): Promise<RunningServer> {
  fs.mkdirSync(opts.dir, { recursive: true });
  const store = await PersistentPageStore.open(path.join(opts.dir, 'unreplicated-store'), {
    size: opts.stateSize ?? DEFAULT_STATE_SIZE,
  });
  const state = store.state;
  // Seed, fsid and generation key only matter when the store is new; they then live in the
  // superblock. Random, as `bfs init` draws them for a cluster.
  const service = new BfsService(state, {
    hashSeed: randomBytes(4).readUInt32BE(0),
    fsid: randomFsid(),
    generationKey: newGenerationKey(),
  });
  let seq = state.checkpoints().at(-1) ?? 0;
  // The same permission checks as the replicas make (BfsService.execute).
  const server = new NfsServer({ fs: service.fs, export: { checkPermissions: true } });
  let port: number;
  try {
    port = await server.listen({ port: opts.port, host: opts.host ?? '127.0.0.1' });
  } catch (e) {
    await store.close();
    throw e;
  }
  const persist = async () => {
    const info = state.checkpoint(++seq);
    if (info.dirtyPages > 0 || store.persistedSeq < 0) await store.persist(seq);
    state.discardBelow(seq);
  };
  let persisting: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    persisting = persisting.then(persist, persist);
  }, opts.persistIntervalMs ?? PERSIST_INTERVAL_MS);
  return {
    port,
    url: readyUrl(opts.host ?? '127.0.0.1', port),
    async close() {
      clearInterval(timer);
      await server.close();
      await persisting.catch(() => undefined);
      await persist();
      await store.close();
    },
  };
}
