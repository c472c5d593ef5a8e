/**
 * The cluster description written by `bfs init` and read by every replica and relay:
 * `cluster.json` (public, identical on every host) plus one private key file per node under
 * `keys/` (mode 0600, only the node that owns it needs it).
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import type { webcrypto as nodeWebcrypto } from 'node:crypto';
import * as path from 'node:path';
import {
  type NodeKeys,
  type PublicIdentity,
  FIRST_CLIENT_ID,
  exportPublic,
  generateNodeKeys,
  maxFaulty,
  webcrypto,
} from '@bfs/pbft';
import { GENERATION_KEY_BYTES, newGenerationKey } from 'nfs-server-ts';
import { EXPORT_KEY_BYTES } from 'nfs-server-ts';
import {
  DEFAULT_EXPORTS,
  type ExportEntry,
  ExportsError,
  checkExports,
  exportedTrees,
} from '../exports';
import {
  type BfsServiceOptions,
  DEFAULT_STATE_SIZE,
  derivedExportKey,
} from '../service/bfs-service';
import { MAX_LEASE_S, MIN_LEASE_S } from '../locks/limits';

export const CONFIG_FILE = 'cluster.json';
export const CONFIG_FORMAT = 1;
/** First replica port when none is given: replica i listens on BASE + i. */
export const DEFAULT_BASE_PORT = 7100;
/** PBFT client ids a relay owns: one outstanding request per id, so this bounds its pipeline. */
export const DEFAULT_RELAY_CLIENT_IDS = 32;
/** Metrics/status HTTP port of replica i is its PBFT port plus this offset. */
export const STATUS_PORT_OFFSET = 100;

export interface NodeEntry {
  host: string;
  port: number;
  /** base64 of the raw P-256 points. */
  ecdh: string;
  signing: string;
}

export interface RelayEntry {
  name: string;
  /** PBFT client ids [first, first + count) that this relay uses. */
  firstClientId: number;
  clientIds: number;
  ecdh: string;
  signing: string;
}

export interface ClusterConfig {
  format: number;
  f: number;
  stateSize: number;
  /** Seed of the file system's directory hash (random per cluster; see BfsServiceOptions). */
  hashSeed: number;
  /**
   * File-system id in every handle (random per cluster, never 0 or 1). Absent in clusters made
   * before it existed: see fileSystemIdentity for the fallback.
   */
  fsid?: number;
  /** hex of the secret key of inode generations (GENERATION_KEY_BYTES); absent likewise. */
  generationKey?: string;
  /**
   * Seconds a relay's lease on its clients' locks lasts without renewal (agreed time); absent:
   * LEASE_PERIOD_S. Every replica must use the same value.
   */
  leaseSeconds?: number;
  /**
   * Relays sign their read-write requests with their long-term signing key and replicas order
   * only requests whose signature verifies (docs/pbft.md, "Defenses": a faulty client then
   * cannot make the replicas change views). Absent: true. false saves the relay one ECDSA
   * signature and the primary one verification per request, at the price of that attack.
   * Every node must use the same value.
   */
  requestSignatures?: boolean;
  replicas: NodeEntry[];
  relays: RelayEntry[];
  /**
   * What the cluster exports (exports.ts); absent in clusters made before exports existed, which
   * get DEFAULT_EXPORTS. Every replica must hold the same list: change it with every replica
   * stopped (docs/operations.md).
   */
  exports?: ExportEntry[];
}

/**
 * The secret of the handle-to-export MACs (hex, EXPORT_KEY_BYTES): for replicas only. A relay
 * that knew it could bind a handle of a read-only export to a writable one.
 */
export const EXPORT_KEY_FILE = path.join('keys', 'exports.key');

export class ConfigError extends Error {}

/** A random fsid: never 0, nor 1 (the fsid of every file system before fsids were drawn). */
export function randomFsid(): number {
  for (;;) {
    const v = randomBytes(4).readUInt32BE(0);
    if (v > 1) return v;
  }
}

/**
 * What the replicas format a new file system with: the hash seed, fsid and generation key of
 * cluster.json. A cluster.json from before fsids and keys were drawn (no `fsid`,
 * `generationKey`) gets both derived from its secret hash seed: the same on every replica, and
 * unknown to whoever does not know the seed. File systems already formatted keep what their
 * superblock holds whatever the config says (an old one keeps fsid 1, and derives its
 * generation key from the superblock: see derivedGenerationKey).
 */
export function fileSystemIdentity(
  cfg: Pick<ClusterConfig, 'hashSeed' | 'fsid' | 'generationKey'>,
): Required<Pick<BfsServiceOptions, 'hashSeed' | 'fsid' | 'generationKey'>> {
  const derive = (label: string) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(cfg.hashSeed >>> 0);
    return createHash('sha256').update(label).update(b).digest();
  };
  let fsid = cfg.fsid;
  if (fsid === undefined) {
    fsid = derive('BFS-TS fsid v1').readUInt32BE(0);
    if (fsid <= 1) fsid += 2;
  }
  const generationKey =
    cfg.generationKey !== undefined
      ? new Uint8Array(Buffer.from(cfg.generationKey, 'hex'))
      : new Uint8Array(
          derive('BFS-TS cluster generation key v1').subarray(0, GENERATION_KEY_BYTES),
        );
  return { hashSeed: cfg.hashSeed, fsid, generationKey };
}

/** Writes a new export key into the cluster directory (mode 0600). */
export function writeExportKey(dir: string): void {
  const file = path.join(dir, EXPORT_KEY_FILE);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, randomBytes(EXPORT_KEY_BYTES).toString('hex') + '\n', { mode: 0o600 });
  fs.chmodSync(file, 0o600);
}

/**
 * The export key of keys/exports.key, or (`derived`) the one every replica derives from
 * cluster.json when the file is missing: a cluster made before the file existed keeps working,
 * but a faulty relay, which reads cluster.json, could then forge handles of writable exports.
 */
export function loadExportKey(
  dir: string,
  cfg: Pick<ClusterConfig, 'hashSeed' | 'fsid'>,
): { key: Uint8Array; derived: boolean } {
  const file = path.join(dir, EXPORT_KEY_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8').trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new ConfigError(`cannot read ${file}: ${(e as Error).message}`);
    return { key: derivedExportKey(fileSystemIdentity(cfg)), derived: true };
  }
  if (!new RegExp(`^[0-9a-f]{${2 * EXPORT_KEY_BYTES}}$`).test(text))
    throw new ConfigError(`${file}: want ${2 * EXPORT_KEY_BYTES} hex digits`);
  return { key: new Uint8Array(Buffer.from(text, 'hex')), derived: false };
}

/** Everything a replica's state machine takes from the cluster directory. */
export function replicaServiceOptions(
  dir: string,
  cfg: ClusterConfig,
): BfsServiceOptions & { exportKeyDerived: boolean } {
  const { key, derived } = loadExportKey(dir, cfg);
  return {
    ...fileSystemIdentity(cfg),
    exports: exportedTrees(checkExports(cfg.exports)),
    exportKey: key,
    exportKeyDerived: derived,
    relayOf: relayOfClient(cfg),
    leaseSeconds: cfg.leaseSeconds,
  };
}

/**
 * A relay's locks and lease are the relay's, whichever of its PBFT client ids sent the call: the
 * relay is named by its first client id (ids of no relay stand for themselves).
 */
export function relayOfClient(cfg: ClusterConfig): (clientId: number) => number {
  return (id) =>
    cfg.relays.find((r) => id >= r.firstClientId && id < r.firstClientId + r.clientIds)
      ?.firstClientId ?? id;
}

/**
 * What must be the same on every replica for them to agree on every call: the exports they
 * enforce and the key of the handle MACs (hashed: /status shows this, never the key).
 */
export function exportsDigestOf(o: Pick<BfsServiceOptions, 'exports' | 'exportKey'>): string {
  return createHash('sha256')
    .update(JSON.stringify(o.exports ?? null))
    .update(o.exportKey ?? new Uint8Array(0))
    .digest('hex')
    .slice(0, 16);
}

export function publicOf(e: { ecdh: string; signing: string }): PublicIdentity {
  return { ecdh: Buffer.from(e.ecdh, 'base64'), signing: Buffer.from(e.signing, 'base64') };
}

export function keyFile(dir: string, node: string): string {
  return path.join(dir, 'keys', `${node}.key.json`);
}

export function replicaName(id: number): string {
  return `replica-${id}`;
}

export interface InitOptions {
  dir: string;
  replicas: number;
  hosts?: string[];
  basePort?: number;
  relays?: number;
  stateSize?: number;
  /** The relays' lease on their locks (default LEASE_PERIOD_S). */
  leaseSeconds?: number;
  /** Overwrite an existing cluster in `dir`. */
  force?: boolean;
}

async function savePrivate(file: string, keys: NodeKeys): Promise<void> {
  const s = webcrypto.subtle;
  const body = {
    ecdh: await s.exportKey('jwk', keys.ecdh.privateKey),
    signing: await s.exportKey('jwk', keys.signing.privateKey),
  };
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, JSON.stringify(body, null, 2) + '\n', { mode: 0o600 });
  fs.chmodSync(file, 0o600);
}

export async function loadPrivate(file: string): Promise<NodeKeys> {
  let body: { ecdh: nodeWebcrypto.JsonWebKey; signing: nodeWebcrypto.JsonWebKey };
  try {
    body = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ConfigError(`cannot read key file ${file}: ${(e as Error).message}`);
  }
  const s = webcrypto.subtle;
  const pub = (jwk: nodeWebcrypto.JsonWebKey): nodeWebcrypto.JsonWebKey => ({
    kty: jwk.kty,
    crv: jwk.crv,
    x: jwk.x,
    y: jwk.y,
  });
  try {
    const ecdhAlg = { name: 'ECDH', namedCurve: 'P-256' };
    const sigAlg = { name: 'ECDSA', namedCurve: 'P-256' };
    return {
      ecdh: {
        privateKey: await s.importKey('jwk', body.ecdh, ecdhAlg, true, ['deriveBits']),
        publicKey: await s.importKey('jwk', pub(body.ecdh), ecdhAlg, true, []),
      },
      signing: {
        privateKey: await s.importKey('jwk', body.signing, sigAlg, true, ['sign']),
        publicKey: await s.importKey('jwk', pub(body.signing), sigAlg, true, ['verify']),
      },
    } as NodeKeys;
  } catch (e) {
    throw new ConfigError(`key file ${file} holds no usable P-256 keys: ${(e as Error).message}`);
  }
}

/** Writes cluster.json and one key pair per replica and relay. */
export async function initCluster(o: InitOptions): Promise<ClusterConfig> {
  const n = o.replicas;
  const f = maxFaulty(n);
  const cfgPath = path.join(o.dir, CONFIG_FILE);
  if (fs.existsSync(cfgPath) && !o.force) {
    throw new ConfigError(`${cfgPath} exists; use --force to replace the cluster and its keys`);
  }
  const hosts = o.hosts ?? ['127.0.0.1'];
  if (hosts.length !== 1 && hosts.length !== n) {
    throw new ConfigError(`--hosts needs 1 or ${n} entries, got ${hosts.length}`);
  }
  const basePort = o.basePort ?? DEFAULT_BASE_PORT;
  const replicas: NodeEntry[] = [];
  for (let i = 0; i < n; i++) {
    const keys = await generateNodeKeys();
    await savePrivate(keyFile(o.dir, replicaName(i)), keys);
    const pub = await exportPublic(keys);
    replicas.push({
      host: hosts.length === 1 ? hosts[0] : hosts[i],
      // Distinct ports when replicas share a host; the same port on distinct hosts.
      port: hosts.length === 1 ? basePort + i : basePort,
      ecdh: Buffer.from(pub.ecdh).toString('base64'),
      signing: Buffer.from(pub.signing).toString('base64'),
    });
  }
  const relays: RelayEntry[] = [];
  for (let r = 0; r < (o.relays ?? 1); r++) {
    const keys = await generateNodeKeys();
    const name = `relay-${r}`;
    await savePrivate(keyFile(o.dir, name), keys);
    const pub = await exportPublic(keys);
    relays.push({
      name,
      firstClientId: FIRST_CLIENT_ID + r * DEFAULT_RELAY_CLIENT_IDS,
      clientIds: DEFAULT_RELAY_CLIENT_IDS,
      ecdh: Buffer.from(pub.ecdh).toString('base64'),
      signing: Buffer.from(pub.signing).toString('base64'),
    });
  }
  const cfg: ClusterConfig = {
    format: CONFIG_FORMAT,
    f,
    stateSize: o.stateSize ?? DEFAULT_STATE_SIZE,
    hashSeed: randomBytes(4).readUInt32BE(0),
    fsid: randomFsid(),
    generationKey: Buffer.from(newGenerationKey()).toString('hex'),
    ...(o.leaseSeconds !== undefined ? { leaseSeconds: o.leaseSeconds } : {}),
    replicas,
    relays,
    exports: DEFAULT_EXPORTS.map((e) => ({ ...e, clients: [...e.clients] })),
  };
  writeExportKey(o.dir);
  fs.writeFileSync(cfgPath, JSON.stringify(cfg, null, 2) + '\n');
  return cfg;
}

/** Reads and validates cluster.json; every problem is a ConfigError naming the file. */
export function loadCluster(dir: string): ClusterConfig {
  const file = path.join(dir, CONFIG_FILE);
  let cfg: ClusterConfig;
  try {
    cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ConfigError(
      code === 'ENOENT'
        ? `no cluster in ${dir} (missing ${CONFIG_FILE}); run \`bfs init --dir ${dir}\` first`
        : `cannot read ${file}: ${(e as Error).message}`,
    );
  }
  const bad = (what: string) => new ConfigError(`${file}: ${what}`);
  if (cfg.format !== CONFIG_FORMAT) throw bad(`unknown format ${cfg.format}`);
  if (!Array.isArray(cfg.replicas) || cfg.replicas.length < 4)
    throw bad('needs at least 4 replicas');
  if (cfg.f !== maxFaulty(cfg.replicas.length)) throw bad(`f=${cfg.f} does not match n`);
  if (!Number.isSafeInteger(cfg.stateSize) || cfg.stateSize < 2 ** 20) throw bad('bad stateSize');
  if (!Number.isInteger(cfg.hashSeed) || cfg.hashSeed < 0 || cfg.hashSeed > 0xffffffff) {
    throw bad('bad hashSeed');
  }
  if (
    cfg.fsid !== undefined &&
    (!Number.isInteger(cfg.fsid) || cfg.fsid < 1 || cfg.fsid > 0xffffffff)
  ) {
    throw bad('bad fsid');
  }
  const lease = cfg.leaseSeconds;
  if (
    lease !== undefined &&
    !(Number.isInteger(lease) && lease >= MIN_LEASE_S && lease <= MAX_LEASE_S)
  ) {
    throw bad(`bad leaseSeconds (an integer ${MIN_LEASE_S}..${MAX_LEASE_S})`);
  }
  if (cfg.requestSignatures !== undefined && typeof cfg.requestSignatures !== 'boolean') {
    throw bad('bad requestSignatures (true or false)');
  }
  const keyHex = new RegExp(`^[0-9a-f]{${2 * GENERATION_KEY_BYTES}}$`);
  if (
    cfg.generationKey !== undefined &&
    !(typeof cfg.generationKey === 'string' && keyHex.test(cfg.generationKey))
  ) {
    throw bad(`bad generationKey (${2 * GENERATION_KEY_BYTES} hex digits)`);
  }
  for (const [i, r] of cfg.replicas.entries()) {
    if (typeof r.host !== 'string' || !Number.isInteger(r.port) || r.port < 1 || r.port > 65535) {
      throw bad(`replica ${i} has a bad address`);
    }
  }
  if (!Array.isArray(cfg.relays) || cfg.relays.length < 1) throw bad('needs at least one relay');
  for (const r of cfg.relays) {
    if (!Number.isInteger(r.firstClientId) || r.firstClientId < cfg.replicas.length) {
      throw bad(`relay ${r.name}: client ids must not overlap replica ids`);
    }
  }
  try {
    cfg.exports = checkExports(cfg.exports);
  } catch (e) {
    if (e instanceof ExportsError) throw bad(e.message);
    throw e;
  }
  return cfg;
}
