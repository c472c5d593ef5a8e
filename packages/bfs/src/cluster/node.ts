/**
 * The processes of a BFS cluster: a replica (PBFT replica over TCP, BFS service, LevelDB page
 * store) and a relay (NFS server whose calls go through the PBFT client).
 */
import * as fs from 'node:fs';
import type * as http from 'node:http';
import { createServer as httpCreateServer } from 'node:http';
import type { Registry } from 'prom-client';
import * as path from 'node:path';
import {
  CorruptStoreError,
  PersistentPageStore,
  errorCodes,
  isCorruption,
  writeSynced,
} from '@bfs/page-store';
import {
  type ByzantineMode,
  Client,
  EcdsaRequestVerifier,
  type ConnectionKeys,
  MacAuthenticator,
  type PeerAddress,
  Replica,
  ReplicaNode,
  type ReplicaOptions,
  KEY_ANNOUNCE_INTERVAL_MS,
  KEY_REFRESH_INTERVAL_MS,
  KeyRefresher,
  type PublicIdentity,
  TcpTransport,
  type Transport,
  decodeRestorePoint,
  SharedSecrets,
  sessionKeyFromSecret,
  encodeRestorePoint,
  connectionKeyFromSecret,
  connectionKeysOf,
  withKeyRefresh,
  requestSignerOf,
  replicaClock,
  type KeyEpochs,
  LOG_WINDOW,
  REPLICA_STALL_MS,
  parseKeyEpochs,
} from '@bfs/pbft';
import pino, { type Logger } from 'pino';
import type { ConnectionLimits } from 'nfs-server-ts';
import type { ExportEntry } from '../exports';
import { Relay, type RelayOptions } from '../relay';
import { PORTMAP_PORT } from '../locks/relay-nlm';
import { BfsService } from '../service/bfs-service';
import {
  type ClusterConfig,
  ConfigError,
  type RelayEntry,
  EXPORT_KEY_FILE,
  keyFile,
  loadCluster,
  loadPrivate,
  publicOf,
  replicaName,
  replicaServiceOptions,
  exportsDigestOf,
} from './config';
import { type WriteBackSource, answerMetrics, relayMetrics, replicaMetrics } from './metrics';
import { CommitLog } from './commit-log';
import { STATUS_PAGE_HTML } from './status-page';
import { FAULT_SAMPLE_MS, FaultWindow } from './fault-window';
import { RelayMonitor } from './monitor';
import { forgetRelayAddress, recordRelayAddress } from './relay-address';
import {
  type DiskFailure,
  type DiskStatus,
  type ReplicaStatus,
  StatusEndpoint,
  replicaStatus,
  statusPort,
} from './status';

/** Initial (epoch 0) session keys between node `self` and each of `peers` (ECDH + HKDF per pair of ids). */
async function sessionKeys(
  secrets: SharedSecrets,
  self: number,
  peers: Map<number, PublicIdentity>,
): Promise<Map<number, Uint8Array>> {
  const keys = new Map<number, Uint8Array>();
  for (const [id, pub] of peers)
    keys.set(id, sessionKeyFromSecret(await secrets.get(pub), self, id));
  return keys;
}

/**
 * Keys of the TCP handshake (`TcpOptions.connectionKeys`) of the node holding ids `self`: with
 * each other replica, and for a replica with each relay by its whole id range, so that a hello
 * naming any other range (part of a relay's ids, ids of two nodes) is refused.
 */
async function connectionKeys(
  secrets: SharedSecrets,
  cfg: ClusterConfig,
  self: { first: number; count: number },
  withRelays: boolean,
): Promise<ConnectionKeys> {
  const nodes = cfg.replicas.map((r, j) => ({ first: j, count: 1, pub: publicOf(r) }));
  if (withRelays)
    for (const r of cfg.relays)
      nodes.push({ first: r.firstClientId, count: r.clientIds, pub: publicOf(r) });
  const entries = [];
  for (const node of nodes) {
    if (node.first === self.first) continue;
    const key = connectionKeyFromSecret(await secrets.get(node.pub), self, node);
    entries.push({ first: node.first, count: node.count, key });
  }
  return connectionKeysOf(entries);
}

function clientIds(relay: RelayEntry): number[] {
  return Array.from({ length: relay.clientIds }, (_, i) => relay.firstClientId + i);
}

function replicaAddresses(cfg: ClusterConfig, except?: number): Map<number, PeerAddress> {
  const m = new Map<number, PeerAddress>();
  cfg.replicas.forEach((r, i) => {
    if (i !== except) m.set(i, { host: r.host, port: r.port });
  });
  return m;
}

/** A replica that hears nothing from a peer this long redials it (see TcpOptions.peerSilenceMs). */
export const PEER_SILENCE_MS = 3000;

/** File in a replica's data directory holding the last view it entered. */
export const VIEW_FILE = 'view';

/** The file's text, or undefined when it does not exist. */
function readIfPresent(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * The last view entered, from the view file (undefined when there is none). A file that does not
 * hold a view number is damaged: it is moved aside and `damaged` names where.
 */
function readView(file: string): { view?: number; damaged?: string } {
  const text = readIfPresent(file);
  if (text === undefined) return {};
  const v = Number(text.trim());
  if (text.trim() !== '' && Number.isSafeInteger(v) && v >= 0) return { view: v };
  const aside = `${file}.corrupt-${Date.now()}`;
  fs.renameSync(file, aside);
  return { damaged: aside };
}

/** Replaces `file` durably (fsync, then an atomic rename) before the caller goes on. */
function writeDurably(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  writeSynced(tmp, text);
  fs.renameSync(tmp, file);
}

function writeView(file: string, view: number): void {
  writeDurably(file, `${view}\n`);
}

/**
 * File in a replica's data directory holding its recent key epochs (KeyEpochs): after a
 * restart the keys of before are accepted again for quoted frames.
 */
export const KEY_EPOCHS_FILE = 'key-epochs.json';

function readKeyEpochs(file: string, log: Logger): KeyEpochs | undefined {
  const text = readIfPresent(file);
  if (text === undefined) return undefined;
  let epochs: KeyEpochs | undefined;
  try {
    epochs = parseKeyEpochs(JSON.parse(text));
  } catch {
    epochs = undefined;
  }
  // Liveness only: certificates of before the restart may then fail to convince.
  if (!epochs) log.warn({ file }, 'key epochs file unreadable: ignored');
  return epochs;
}

/** How often a replica checks whether its view changed, to log it. */
export const VIEW_WATCH_MS = 200;

export interface ReplicaProcessOptions {
  dir: string;
  id: number;
  /** Address to listen on (default: the replica's host from the config). */
  listenHost?: string;
  /** Where this replica keeps its LevelDB store (default DIR/replica-I). */
  dataDir?: string;
  /** Structured log (pino); silent when omitted. */
  logger?: Logger;
  /** Misbehave on purpose (demonstrations and tests): falsify or withhold what it sends. */
  byzantine?: ByzantineMode;
  /** Period of session key refresh in ms (default KEY_REFRESH_INTERVAL_MS; 0: only at start). */
  keyRefreshMs?: number;
  /** Check the core's costly invariants after every step (default true; see ReplicaOptions). */
  costlyInvariants?: boolean;
  /** Serve status and metrics here (kept open across restarts) instead of on a port of its own. */
  statusEndpoint?: StatusEndpoint;
  /** The process's disk health, shared across restarts (default: a fresh one). */
  disk?: DiskStatus;
  /** Called once when a durable write fails; the replica is fenced by then. */
  onDiskFailure?: (f: DiskFailure) => void;
  /** Move these aside at start (damage found while the replica ran): they vouch for nothing. */
  discard?: { commitLog?: boolean; store?: boolean };
}

export function newDiskStatus(): DiskStatus {
  return { failed: null, failures: 0, restarts: 0, restarting: false };
}

/** What `status` says of a durable write of `what` that failed with `e`. */
export function diskFailure(what: DiskFailure['what'], e: unknown): DiskFailure {
  const err = e instanceof Error ? e : new Error(String(e));
  const code = errorCode(err);
  return {
    what,
    error: err.message,
    ...(code === undefined ? {} : { code }),
    at: new Date().toISOString(),
    corrupt: isCorruption(err),
  };
}

/** The errno or LevelDB code of `e` or of what it wraps (ENOSPC, EIO, LEVEL_CORRUPTION...). */
export function errorCode(e: unknown): string | undefined {
  return errorCodes(e).find((c) => c !== 'LEVEL_DATABASE_NOT_OPEN');
}

/**
 * Public identities of the nodes a node exchanges MACs with: the replicas other than `self`, and
 * for a replica every client id of every relay too (they share the relay's key pair).
 */
function identities(
  cfg: ClusterConfig,
  self: number,
  clients: boolean,
): Map<number, PublicIdentity> {
  const m = new Map<number, PublicIdentity>();
  cfg.replicas.forEach((r, j) => {
    if (j !== self) m.set(j, publicOf(r));
  });
  if (clients)
    for (const relay of cfg.relays) for (const cid of clientIds(relay)) m.set(cid, publicOf(relay));
  return m;
}

export interface RunningReplica {
  node: ReplicaNode;
  replica: Replica;
  service: BfsService;
  store: PersistentPageStore;
  disk: DiskStatus;
  status(): ReplicaStatus;
  close(): Promise<void>;
}

/**
 * What a replica checks the relays' request signatures with: each relay's long-term signing key
 * for its client id range (docs/pbft.md, "Defenses"); undefined where the cluster turned
 * request signatures off.
 */
function requestVerifierOf(cfg: ClusterConfig): EcdsaRequestVerifier | undefined {
  if (cfg.requestSignatures === false) return undefined;
  return new EcdsaRequestVerifier(
    cfg.relays.map((r) => ({
      firstClientId: r.firstClientId,
      count: r.clientIds,
      key: publicOf(r).signing,
    })),
  );
}

export async function startReplica(o: ReplicaProcessOptions): Promise<RunningReplica> {
  const log = o.logger ?? pino({ level: 'silent' });
  const cfg = loadCluster(o.dir);
  const n = cfg.replicas.length;
  if (!Number.isInteger(o.id) || o.id < 0 || o.id >= n) {
    throw new ConfigError(`replica id ${o.id} is not in 0..${n - 1}`);
  }
  const own = await loadPrivate(keyFile(o.dir, replicaName(o.id)));
  const peers = identities(cfg, o.id, true);
  const secrets = new SharedSecrets(own);
  const auth = new MacAuthenticator(o.id, await sessionKeys(secrets, o.id, peers));
  const dataDir = o.dataDir ?? path.join(o.dir, replicaName(o.id));
  const storeDir = path.join(dataDir, 'store');
  const viewFile = path.join(dataDir, VIEW_FILE);
  const disk = o.disk ?? newDiskStatus();
  // What was opened so far, closed again (last first) if the start fails half-way.
  const opened: (() => Promise<void>)[] = [];
  const undo = async (): Promise<void> => {
    for (const close of opened.reverse()) await close().catch(() => undefined);
  };
  try {
    let existed = fs.existsSync(storeDir);
    // The log above a checkpoint we no longer have vouches for nothing.
    let storeReplaced = false;
    let store: PersistentPageStore;
    const storeAside = (why: string): void => {
      // Our own disk is damaged: keep it for inspection and fetch the whole state from the others.
      const aside = `${storeDir}.corrupt-${Date.now()}`;
      fs.renameSync(storeDir, aside);
      log.error(
        { err: why, movedTo: aside },
        'the page store is corrupt: moved aside; rejoining by full state transfer',
      );
      existed = true;
      storeReplaced = true;
    };
    if (o.discard?.store && existed) storeAside('damage found while the replica ran');
    try {
      store = await PersistentPageStore.open(storeDir, { size: cfg.stateSize });
    } catch (e) {
      if (!(e instanceof CorruptStoreError)) throw e;
      storeAside(e.message);
      store = await PersistentPageStore.open(storeDir, { size: cfg.stateSize });
    }
    opened.push(() => store.close());
    const logDir = path.join(dataDir, 'commit-log');
    const opening = await CommitLog.openOrReplace(logDir, o.discard?.commitLog);
    const commitLog = opening.log;
    opened.push(() => commitLog.close());
    if (opening.damage !== undefined)
      log.error(
        { err: opening.damage, movedTo: opening.movedTo },
        'the commit log is damaged: moved aside; this replica counts as recovering',
      );
    const restoredSeq = Math.max(0, store.persistedSeq);
    const prepared = await commitLog.preparedAfter(restoredSeq);
    const viewRead = readView(viewFile);
    if (viewRead.damaged !== undefined)
      log.error(
        { movedTo: viewRead.damaged },
        'the view file is damaged: moved aside; passive through the highest view the log shows',
      );
    let lastView = viewRead.view;
    if (viewRead.damaged !== undefined) {
      // The views of our prepared certificates are the best lower bound left; written at once,
      // so that a crash before the next view change does not find no view at all.
      lastView = Math.max(0, ...prepared.records.map((r) => r.view));
      writeView(viewFile, lastView);
    }
    // Only a replica told to misbehave loads the behaviours (`@bfs/pbft/testing`).
    const misbehave = o.byzantine ? await import('@bfs/pbft/testing') : undefined;
    const opts: ReplicaOptions = {
      n,
      id: o.id,
      stallGraceMs: REPLICA_STALL_MS,
      costlyInvariants: o.costlyInvariants ?? true,
      requestSignatures: requestVerifierOf(cfg),
      // An attacker's core runs as its attack wants it (slow-primary: one request per batch).
      ...(misbehave && o.byzantine ? misbehave.attackerReplicaOptions(o.byzantine) : {}),
    };
    if (store.persistedSeq > 0) {
      const point = store.persistedExtra && decodeRestorePoint(store.persistedExtra);
      if (!point || point.seq !== store.persistedSeq) {
        throw new ConfigError(
          `${storeDir} holds checkpoint ${store.persistedSeq} without a matching PBFT restore ` +
            'point (written by an older version?): move it away to rejoin by full state transfer',
        );
      }
      opts.restore = { ...point, view: lastView ?? 0 };
      log.info(
        { seq: point.seq, view: lastView ?? 0 },
        `restarting from persisted checkpoint ${point.seq}: catching up by state transfer`,
      );
    } else if (existed || lastView !== undefined) {
      // It ran before (and may have voted in views up to lastView) but never persisted a
      // checkpoint: start from the initial state, as a recovering replica.
      opts.rejoinAfterView = lastView ?? 0;
      log.warn(
        { storeDir },
        'the store existed but held no stable checkpoint: rejoining from the initial state; ' +
          'state transfer brings this replica up to date',
      );
    }
    const restarted = opts.restore !== undefined || opts.rejoinAfterView !== undefined;
    const completeFrom = await commitLog.completeFrom();
    if (completeFrom === undefined) {
      // A new log, or one of a version that kept no certificates: complete from the next
      // log window on (a new replica acted on nothing before, so from its start).
      await commitLog.setCompleteFrom(restarted ? restoredSeq + LOG_WINDOW : 0);
    }
    opts.prepared = prepared.records;
    opts.logIntact =
      !storeReplaced &&
      opening.damage === undefined &&
      viewRead.damaged === undefined &&
      completeFrom !== undefined &&
      completeFrom <= restoredSeq &&
      prepared.bad === 0;
    if (restarted && !opts.logIntact)
      log.warn(
        { completeFrom, restoredSeq, unreadable: prepared.bad },
        'the log may lack prepared certificates of before the restart: this replica counts as ' +
          'recovering until the stable checkpoint passes a log window',
      );
    const serviceOptions = replicaServiceOptions(o.dir, cfg);
    if (serviceOptions.exportKeyDerived)
      log.warn(
        { file: EXPORT_KEY_FILE },
        'no export key: handles are bound to exports under a key derived from cluster.json, ' +
          'which relays can read, so a faulty relay could write through a read-only export; ' +
          'run `bfs exports key --dir DIR` with every replica stopped (docs/operations.md)',
      );
    const service = new BfsService(store.state, serviceOptions);
    const exportsDigest = exportsDigestOf(serviceOptions);
    const replica = new Replica(opts, service, auth);
    const replay = await commitLog.after(restoredSeq);
    const me = cfg.replicas[o.id];
    const transport = await TcpTransport.open({
      ids: [o.id],
      connectionKeys: await connectionKeys(secrets, cfg, { first: o.id, count: 1 }, true),
      listen: { host: o.listenHost ?? me.host, port: me.port },
      peers: replicaAddresses(cfg, o.id),
      // Replicas exchange STATUS every 100 ms: silence this long means a dead or cut link.
      peerSilenceMs: PEER_SILENCE_MS,
      // Four replicas: under MAX_FRAME_BYTES, so no longer frame is read from anyone.
      maxViewChangeFrameBytes: replica.maxReplicaFrameBytes,
    });
    opened.push(() => transport.close());
    // Writes fail before the node exists too (the key epochs at start): fenced once it does.
    const fencing: { node?: ReplicaNode } = {};
    /** Every failed durable write ends here: recorded, fenced, reported once. */
    // The failure of this start of the replica (`disk` outlives it, across restarts).
    let failure: DiskFailure | undefined;
    const failed = (what: DiskFailure['what'], e: unknown): void => {
      disk.failures++;
      if (failure) return;
      const err = e instanceof Error ? e : new Error(String(e));
      failure = diskFailure(what, err);
      disk.failed = failure;
      log.error(
        { what, err: err.message, code: failure.code },
        'a durable write failed: this replica sends nothing any more until it restarts from disk',
      );
      fencing.node?.fence(err);
      o.onDiskFailure?.(failure);
    };
    // New session keys at every start and then periodically (TOCS 2002 section 4.3.1): keys an
    // attacker learned stop working. Announced to the replicas and to one id of each relay.
    const epochsFile = path.join(dataDir, KEY_EPOCHS_FILE);
    const refresher = new KeyRefresher({
      selves: [{ id: o.id, auth }],
      own,
      peers,
      secrets,
      pastEpochs: readKeyEpochs(epochsFile, log),
      onEpochs: (e) => {
        try {
          writeDurably(epochsFile, `${JSON.stringify(e)}\n`);
        } catch (err) {
          failed('key-epochs', err);
          throw err;
        }
      },
    });
    await refresher.restorePastEpochs();
    const announceTo = [
      ...cfg.replicas.map((_, j) => j).filter((j) => j !== o.id),
      ...cfg.relays.map((r) => r.firstClientId),
    ];
    const keys = await refreshKeys(refresher, transport, announceTo, o.keyRefreshMs, (e) =>
      log.error({ err: e.message }, 'session key refresh failed'),
    );
    opened.push(async () => keys.stop());
    const keyed = withKeyRefresh(transport, refresher);
    const wire =
      misbehave && o.byzantine
        ? new misbehave.ByzantineTransport(keyed, o.byzantine, auth, n)
        : keyed;
    if (o.byzantine) log.warn({ byzantine: o.byzantine }, `BYZANTINE replica: mode ${o.byzantine}`);
    let persisting: Promise<unknown> = Promise.resolve();
    const node = new ReplicaNode(replica, wire, {
      // A 'prepared' write that failed (others come through `failed`, which fences first).
      onPersistFailure: (e) => failed('commit-log', e),
      onAction: (a) => {
        if (a.kind === 'prepared') return commitLog.prepare(a);
        if (a.kind === 'view') {
          // Synchronously, before the VIEW-CHANGE that follows this action goes out: after a
          // restart the replica must know in which views it may have voted.
          try {
            writeView(viewFile, a.view);
          } catch (e) {
            failed('view-file', e);
          }
        } else if (a.kind === 'committed') {
          commitLog.append(a.seq, a).catch((e) => failed('commit-log', e));
        } else if (a.kind === 'transferred') {
          log.info(
            { seq: a.seq, pages: a.pages, bytes: a.bytes, ms: Math.round(a.ms) },
            `state transfer: fetched checkpoint ${a.seq} (${a.pages} pages)`,
          );
        } else if (a.kind === 'stable') {
          const seq = a.seq;
          // The core may discard a checkpoint right after making a later one stable in the same step.
          if (store.state.digestAt(seq) === undefined) return;
          const point = encodeRestorePoint({
            seq,
            replyTable: a.replyTable,
            results: a.results,
            proof: a.proof,
            initialDigest: replica.initialDigest,
          });
          // persist() snapshots checkpoint `seq` now (the core may discard it right after this
          // action) and queues the LevelDB batch behind earlier ones.
          persisting = store.persist(seq, point).then(
            (s) => {
              log.info(
                { seq, pages: s.pagesWritten, bytes: s.bytesWritten },
                'stable checkpoint persisted',
              );
              return commitLog.truncateThrough(seq).catch((e) => failed('commit-log', e));
            },
            (e) => failed('page-store', e),
          );
        }
      },
    });
    fencing.node = node;
    if (failure) node.fence(new Error(failure.error));
    opened.push(() => node.stop());
    if (replay.length > 0) {
      const from = replica.lastCommitted;
      node.perform(replica.replayCommitted(replay, replicaClock()));
      log.info(
        { from, to: replica.lastCommitted },
        `re-ran ${replica.lastCommitted - from} batches committed before the restart`,
      );
    }
    node.start();
    // The core counts faults by sender since it started; /status shows the last minute's.
    const faultWindow = new FaultWindow();
    faultWindow.sample(Date.now(), replica.faults.snapshot());
    const faultSampler = setInterval(
      () => faultWindow.sample(Date.now(), replica.faults.snapshot()),
      FAULT_SAMPLE_MS,
    );
    faultSampler.unref();
    opened.push(async () => clearInterval(faultSampler));
    const status = (): ReplicaStatus =>
      replicaStatus(replica, store.state, {
        keys: refresher.stats,
        transport: {
          ...transport.stats,
          ...transport.io,
          acceptedConnections: transport.connections.accepted,
          handshakingConnections: transport.connections.handshaking,
        },
        disk,
        faults: faultWindow.report(Date.now(), replica.faults.snapshot()),
        exportsDigest,
      });
    const endpoint =
      o.statusEndpoint ??
      (await StatusEndpoint.open(o.listenHost ?? me.host, statusPort(cfg, o.id)));
    if (!o.statusEndpoint) opened.push(() => endpoint.close());
    endpoint.status = status;
    endpoint.metrics = replicaMetrics(
      replica,
      store.state,
      transport.stats,
      { refresher, periodSeconds: (o.keyRefreshMs ?? KEY_REFRESH_INTERVAL_MS) / 1000 },
      disk,
    );
    log.info(
      {
        n,
        f: cfg.f,
        listen: `${me.host}:${me.port}`,
        status: `http://${me.host}:${statusPort(cfg, o.id)}/status`,
      },
      `replica ${o.id} of ${n} listening; view ${replica.view}, primary is replica ${replica.primary}`,
    );
    // The core reports no event for a new view; watch for it so operators see view changes.
    let view = replica.view;
    const viewWatch = setInterval(() => {
      if (replica.view !== view) {
        view = replica.view;
        log.warn(
          { view, primary: replica.primary },
          `view change: now view ${view}, primary is replica ${replica.primary}`,
        );
      }
    }, VIEW_WATCH_MS);
    viewWatch.unref();
    return {
      node,
      replica,
      service,
      store,
      disk,
      status,
      async close() {
        clearInterval(viewWatch);
        clearInterval(faultSampler);
        keys.stop();
        if (!o.statusEndpoint) await endpoint.close();
        await node.stop();
        await persisting;
        await commitLog.close();
        await store.close();
      },
    };
  } catch (e) {
    await undo();
    throw e;
  }
}

/**
 * New session keys for what is sent to this node, at once and then every `refreshMs` (TOCS 2002
 * section 4.3.1: keys an attacker learned stop working), announced to `announceTo` and repeated
 * every KEY_ANNOUNCE_INTERVAL_MS for those that missed it.
 */
async function refreshKeys(
  refresher: KeyRefresher,
  transport: Transport,
  announceTo: number[],
  refreshMs = KEY_REFRESH_INTERVAL_MS,
  onError: (e: Error) => void,
): Promise<{ stop(): void }> {
  const announce = (): void => {
    const a = refresher.currentAnnouncement;
    if (a) for (const to of announceTo) transport.send(to, a);
  };
  await refresher.refresh();
  announce();
  const announcer = setInterval(announce, KEY_ANNOUNCE_INTERVAL_MS);
  announcer.unref();
  const refreshTimer =
    refreshMs > 0
      ? setInterval(() => {
          refresher.refresh().then(announce, (e) => onError(e as Error));
        }, refreshMs)
      : undefined;
  refreshTimer?.unref();
  return {
    stop() {
      clearInterval(announcer);
      if (refreshTimer) clearInterval(refreshTimer);
    },
  };
}

export interface RelayProcessOptions {
  dir: string;
  port: number;
  host?: string;
  /** Period of session key refresh in ms (default KEY_REFRESH_INTERVAL_MS; 0: only at start). */
  keyRefreshMs?: number;
  /** Which relay of the config this is (default relay-0). */
  name?: string;
  /** HTTP port for the status page (/), /api/status and /metrics; none when omitted. */
  httpPort?: number;
  /** Limits of the NFS TCP connections (defaults: nfs-server-ts connections.ts). */
  connections?: ConnectionLimits;
  /** Structured log (pino); key refresh failures go to stderr when omitted. */
  logger?: Logger;
  /** Answer UNSTABLE WRITEs from the relay's write-back buffer (default true; see write-back.ts). */
  writeBack?: boolean;
  /** The exports to serve (default: cluster.json's `exports`). */
  exports?: ExportEntry[];
  /**
   * Serve the portmapper (and everything else) on port 111 too, where the Linux kernel client
   * asks for lockd's and statd's ports (needs the privilege to bind it).
   */
  portmap111?: boolean;
  /** Where clients' lock managers listen, for GRANTED callbacks (default: their portmapper). */
  lockCallbackPort?: RelayOptions['lockCallbackPort'];
  /** How long LOOKUP replies are served from the relay (ms; default LOOKUP_CACHE_MS, 0 off). */
  lookupCacheMs?: number;
  /**
   * Misbehave as a faulty client, for demonstrations and tests (`@bfs/pbft/testing`
   * FAULTY_CLIENT_MODES but `retransmit`, which the pbft bench's attack client runs).
   */
  faultyClient?: string;
}

/** The relay's write-back buffer as its metrics and status page read it; undefined when off. */
function writeBackSource(relay: Relay): WriteBackSource | undefined {
  const wb = relay.writeBack;
  if (!wb) return undefined;
  return { stats: { ...wb.stats, retries: relay.writeBackRetries }, gauges: wb.gauges() };
}

export interface RunningRelay {
  relay: Relay;
  client: Client;
  port: number;
  httpPort?: number;
  close(): Promise<void>;
}

export async function startRelay(o: RelayProcessOptions): Promise<RunningRelay> {
  const cfg = loadCluster(o.dir);
  const name = o.name ?? 'relay-0';
  const entry = cfg.relays.find((r) => r.name === name);
  if (!entry) throw new ConfigError(`no relay named ${name} in ${o.dir}`);
  const own = await loadPrivate(keyFile(o.dir, name));
  const replicas = identities(cfg, -1, false);
  const secrets = new SharedSecrets(own);
  const auths = new Map<number, MacAuthenticator>();
  for (const cid of clientIds(entry)) {
    auths.set(cid, new MacAuthenticator(cid, await sessionKeys(secrets, cid, replicas)));
  }
  const tcp = await TcpTransport.open({
    ids: clientIds(entry),
    connectionKeys: await connectionKeys(
      secrets,
      cfg,
      { first: entry.firstClientId, count: entry.clientIds },
      false,
    ),
    peers: replicaAddresses(cfg),
  });
  // Both ways, as between replicas: the replicas' NEW-KEY frames update the keys we send with,
  // ours (one for the whole id range) the keys of the replies to every id.
  const refresher = new KeyRefresher({
    selves: [...auths].map(([id, auth]) => ({ id, auth })),
    own,
    peers: replicas,
    secrets,
  });
  const transport = withKeyRefresh(tcp, refresher);
  const keys = await refreshKeys(
    refresher,
    transport,
    cfg.replicas.map((_, j) => j),
    o.keyRefreshMs,
    (e) =>
      o.logger
        ? o.logger.error({ err: e.message }, 'session key refresh failed')
        : process.stderr.write(`bfs relay: session key refresh failed: ${e.message}\n`),
  );
  const signer = cfg.requestSignatures === false ? undefined : await requestSignerOf(own);
  // Only a relay told to misbehave loads the behaviours.
  const misbehave = o.faultyClient ? await import('@bfs/pbft/testing') : undefined;
  const mode = o.faultyClient;
  if (misbehave && mode && !misbehave.isFaultyClientMode(mode))
    throw new ConfigError(
      `--faulty-client ${mode}: one of ${misbehave.FAULTY_CLIENT_MODES.join(', ')}`,
    );
  const faulty =
    misbehave && mode && misbehave.isFaultyClientMode(mode)
      ? {
          transport: new misbehave.FaultyClientTransport(transport, mode, cfg.replicas.length),
          mode,
        }
      : undefined;
  const client = new Client({
    n: cfg.replicas.length,
    transport: faulty?.transport ?? transport,
    auth: (id) => auths.get(id)!,
    signer: misbehave && faulty ? misbehave.faultySigner(faulty.mode, signer) : signer,
  });
  const monitor = new RelayMonitor(
    cfg,
    () => client.faults,
    () => writeBackSource(relay),
  );
  // The metric sources read the relay and client lazily, at scrape time.
  const metrics = relayMetrics(
    () => ({ ...relay.stats }),
    () => ({ ...relay.server.rpc.stats }),
    () => ({ ...client.stats }),
    {
      connections: () => relay.server.rpc.connections,
      keys: { refresher, periodSeconds: (o.keyRefreshMs ?? KEY_REFRESH_INTERVAL_MS) / 1000 },
      cluster: () => monitor.status(),
      ...(o.writeBack === false ? {} : { writeBack: () => writeBackSource(relay)! }),
      ...(o.lookupCacheMs === 0 ? {} : { lookupCache: () => relay.lookups!.stats }),
    },
  );
  const relay = new Relay({
    invoke: (op, readOnly) => client.invoke(op, { readOnly }),
    observe: (readOnly, seconds, ok, procedure) => {
      metrics.observe(readOnly, seconds, ok);
      monitor.observe(readOnly, seconds, ok, procedure);
    },
    connections: o.connections,
    writeBack: o.writeBack,
    exports: o.exports ?? cfg.exports,
    lockCallbackPort: o.lockCallbackPort,
    leaseSeconds: cfg.leaseSeconds,
    lookupCacheMs: o.lookupCacheMs,
  });
  let port: number;
  try {
    port = await relay.listen({ port: o.port, host: o.host ?? '127.0.0.1' });
    if (o.portmap111) await relay.listen({ port: PORTMAP_PORT, host: o.host ?? '127.0.0.1' });
  } catch (e) {
    await client.close();
    throw e;
  }
  let httpServer: http.Server | undefined;
  if (o.httpPort !== undefined) {
    try {
      httpServer = await serveRelayHttp(
        o.host ?? '127.0.0.1',
        o.httpPort,
        monitor,
        metrics.registry,
      );
      monitor.start();
    } catch (e) {
      await relay.close();
      await client.close();
      throw e;
    }
  }
  const httpPort = httpServer ? (httpServer.address() as { port: number }).port : undefined;
  if (httpPort !== undefined) {
    // So that `bfs status --dir` finds this relay by itself (cluster/relay-address.ts).
    const failed = recordRelayAddress(o.dir, name, o.host ?? '127.0.0.1', httpPort);
    if (failed)
      o.logger?.warn(
        { err: failed.message },
        'cannot record the status page address in the cluster directory: bfs status needs --relay',
      );
  }
  // retransmit: its latest request again to every replica at every turn of the event loop.
  let retransmitting: NodeJS.Immediate | undefined;
  if (faulty?.mode === 'retransmit') {
    const wire = faulty.transport;
    const pump = (): void => {
      for (const s of wire.behaviour.due()) for (const t of s.to) transport.send(t, s.bytes);
      retransmitting = setImmediate(pump);
    };
    retransmitting = setImmediate(pump);
  }
  return {
    relay,
    client,
    port,
    httpPort,
    async close() {
      if (retransmitting) clearImmediate(retransmitting);
      keys.stop();
      monitor.stop();
      if (httpServer) {
        forgetRelayAddress(o.dir, name);
        await new Promise((r) => httpServer!.close(r));
      }
      await relay.close();
      await client.close();
    },
  };
}

/** The relay's HTTP port: the status page, the cluster's status as JSON, and its metrics. */
function serveRelayHttp(
  host: string,
  port: number,
  monitor: RelayMonitor,
  registry: Registry,
): Promise<http.Server> {
  const server = httpCreateServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') {
      res.writeHead(405, { 'content-type': 'text/plain' });
      res.end('GET only\n');
    } else if (url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(STATUS_PAGE_HTML);
    } else if (url === '/api/status') {
      monitor.view().then(
        (s) => {
          res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
          res.end(JSON.stringify(s));
        },
        (e) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`status failed: ${(e as Error).message}\n`);
        },
      );
    } else if (url === '/metrics') {
      void answerMetrics(registry, res);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('try /, /api/status or /metrics\n');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
