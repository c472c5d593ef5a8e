import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { deriveSessionKey } from '@bfs/pbft';
import {
  CONFIG_FILE,
  ConfigError,
  fileSystemIdentity,
  initCluster,
  keyFile,
  loadCluster,
  loadPrivate,
  publicOf,
  replicaName,
} from '../../src/cluster/config';
import { MAX_LEASE_S, MIN_LEASE_S } from '../../src/locks/limits';

describe('bfs init: cluster config and keys', function () {
  this.timeout(30_000);
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-init-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes one key pair per replica and relay, readable only by their owner', async () => {
    const cfg = await initCluster({ dir, replicas: 4, basePort: 9000 });
    assert.equal(cfg.f, 1);
    assert.deepEqual(
      cfg.replicas.map((r) => r.port),
      [9000, 9001, 9002, 9003],
    );
    for (const name of [...[0, 1, 2, 3].map(replicaName), 'relay-0']) {
      const st = fs.statSync(keyFile(dir, name));
      assert.equal(st.mode & 0o777, 0o600, name);
    }
    assert.deepEqual(loadCluster(dir), cfg);
  });

  it('draws a fresh directory-hash seed per cluster, so names cannot be precomputed to collide', async () => {
    const a = await initCluster({ dir, replicas: 4 });
    const b = await initCluster({ dir, replicas: 4, force: true });
    assert.ok(Number.isInteger(a.hashSeed) && Number.isInteger(b.hashSeed));
    assert.notEqual(a.hashSeed, b.hashSeed);
  });

  it('draws a random fsid and a secret generation key per cluster, so handles are foreign elsewhere', async () => {
    const a = await initCluster({ dir, replicas: 4 });
    const b = await initCluster({ dir, replicas: 4, force: true });
    assert.ok(a.fsid! > 1 && b.fsid! > 1);
    assert.notEqual(a.fsid, b.fsid);
    assert.match(a.generationKey!, /^[0-9a-f]{32}$/);
    assert.notEqual(a.generationKey, b.generationKey);
    const id = fileSystemIdentity(a);
    assert.equal(id.fsid, a.fsid);
    assert.equal(Buffer.from(id.generationKey).toString('hex'), a.generationKey);
  });

  it('serves a cluster.json from before fsids (no fsid, no generationKey): both derived from the secret hash seed', async () => {
    const cfg = await initCluster({ dir, replicas: 4 });
    const file = path.join(dir, CONFIG_FILE);
    const old = JSON.parse(fs.readFileSync(file, 'utf8'));
    delete old.fsid;
    delete old.generationKey;
    fs.writeFileSync(file, JSON.stringify(old));
    const loaded = loadCluster(dir);
    const id = fileSystemIdentity(loaded);
    assert.deepEqual(fileSystemIdentity(loadCluster(dir)), id, 'every replica derives the same');
    assert.ok(id.fsid > 1);
    assert.equal(id.generationKey.length, 16);
    const other = fileSystemIdentity({ ...loaded, hashSeed: (cfg.hashSeed + 1) >>> 0 });
    assert.notEqual(other.fsid, id.fsid);
    assert.notDeepEqual(other.generationKey, id.generationKey);
  });

  it('refuses a malformed fsid or generation key', async () => {
    await initCluster({ dir, replicas: 4 });
    const file = path.join(dir, CONFIG_FILE);
    const cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
    fs.writeFileSync(file, JSON.stringify({ ...cfg, fsid: 0 }));
    assert.throws(() => loadCluster(dir), /bad fsid/);
    fs.writeFileSync(file, JSON.stringify({ ...cfg, generationKey: 'abc' }));
    assert.throws(() => loadCluster(dir), /bad generationKey/);
  });

  it("keeps the relays' lease period (leaseSeconds) and refuses one outside MIN_LEASE_S..MAX_LEASE_S", async () => {
    assert.equal((await initCluster({ dir, replicas: 4 })).leaseSeconds, undefined, 'default');
    await initCluster({ dir, replicas: 4, leaseSeconds: 30, force: true });
    assert.equal(loadCluster(dir).leaseSeconds, 30);
    const file = path.join(dir, CONFIG_FILE);
    const cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
    for (const bad of [MIN_LEASE_S - 1, MAX_LEASE_S + 1, 1.5, '30']) {
      fs.writeFileSync(file, JSON.stringify({ ...cfg, leaseSeconds: bad }));
      assert.throws(() => loadCluster(dir), /bad leaseSeconds/);
    }
  });

  it('gives both ends of a pair the same session key from the saved keys (ECDH)', async () => {
    const cfg = await initCluster({ dir, replicas: 4 });
    const r0 = await loadPrivate(keyFile(dir, replicaName(0)));
    const relay = await loadPrivate(keyFile(dir, 'relay-0'));
    const clientId = cfg.relays[0].firstClientId;
    const a = await deriveSessionKey(r0, publicOf(cfg.relays[0]), 0, clientId);
    const b = await deriveSessionKey(relay, publicOf(cfg.replicas[0]), clientId, 0);
    assert.deepEqual(a, b);
  });

  it('puts each replica on its own host with --hosts, all on one port', async () => {
    const cfg = await initCluster({
      dir,
      replicas: 4,
      hosts: ['a', 'b', 'c', 'd'],
      basePort: 7000,
    });
    assert.deepEqual(
      cfg.replicas.map((r) => `${r.host}:${r.port}`),
      ['a:7000', 'b:7000', 'c:7000', 'd:7000'],
    );
    await assert.rejects(
      initCluster({ dir, replicas: 4, hosts: ['a', 'b'], force: true }),
      ConfigError,
    );
  });

  it('refuses to overwrite an existing cluster without --force', async () => {
    await initCluster({ dir, replicas: 4 });
    await assert.rejects(initCluster({ dir, replicas: 4 }), /exists; use --force/);
  });

  it('explains a missing or damaged config instead of failing obscurely', () => {
    assert.throws(() => loadCluster(dir), /run `bfs init --dir/);
    fs.writeFileSync(path.join(dir, CONFIG_FILE), '{"format":1,"f":1,"replicas":[]}');
    assert.throws(() => loadCluster(dir), /needs at least 4 replicas/);
  });

  it('names the key file when it is missing or not a key', async () => {
    await assert.rejects(loadPrivate(path.join(dir, 'nope.json')), /cannot read key file/);
    fs.writeFileSync(path.join(dir, 'bad.json'), '{"ecdh":{"kty":"EC"},"signing":{}}');
    await assert.rejects(loadPrivate(path.join(dir, 'bad.json')), /no usable P-256 keys/);
  });
});
