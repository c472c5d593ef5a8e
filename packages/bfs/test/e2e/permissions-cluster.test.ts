import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Nfs3Client, NfsStatus, RpcClient, authSys } from 'nfs-server-ts';
import { initCluster } from '../../src/cluster/config';
import { DEFAULT_EXPORTS } from '../../src/exports';
import { freeConsecutivePorts } from '../../src/cluster/ports';
import {
  type RunningRelay,
  type RunningReplica,
  startRelay,
  startReplica,
} from '../../src/cluster/node';
import { definePermissionTable, portTarget } from '../../../nfs-server-ts/test/permission-table';
import { statusOf } from '../../../nfs-server-ts/test/helpers';
import { converged, execFileP, nfsUrl } from './helpers';

const STATE = 64 * 2 ** 20;

/** A libnfs URL that calls as uid:gid (libnfs puts them in its AUTH_SYS credential). */
function asUser(port: number, p: string, uid: number): string {
  return `${nfsUrl(port, p)}&uid=${uid}&gid=${uid}`;
}

async function fails(file: string, args: string[]): Promise<string> {
  try {
    await execFileP(file, args);
  } catch (e) {
    return String((e as { stderr?: string }).stderr ?? e);
  }
  throw new Error(`${file} ${args.join(' ')} succeeded`);
}

describe('bfs cluster enforces Unix permissions: four replicas and a relay', function () {
  this.timeout(300_000);
  let dir: string;
  let replicas: RunningReplica[] = [];
  let relay: RunningRelay;
  let alice: Nfs3Client;
  let bob: Nfs3Client;
  const rpcs: RpcClient[] = [];

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-perm-'));
    await initCluster({
      dir,
      replicas: 4,
      basePort: await freeConsecutivePorts(4),
      stateSize: STATE,
    });
    replicas = await Promise.all([0, 1, 2, 3].map((id) => startReplica({ dir, id })));
    // No root squashing, so that the table's root rows are root: it builds the fixtures.
    relay = await startRelay({
      dir,
      port: 0,
      exports: [{ ...DEFAULT_EXPORTS[0], squash: 'no_root_squash' }],
    });
    for (let i = 0; i < 2; i++) rpcs.push(await RpcClient.connect({ port: relay.port }));
    alice = new Nfs3Client(rpcs[0], authSys(1000, 1000));
    bob = new Nfs3Client(rpcs[1], authSys(2000, 2000));
  });
  after(async () => {
    for (const r of rpcs) r.close();
    await relay?.close();
    await Promise.all(replicas.map((r) => r.close()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('the issue-20 probe through the relay', () => {
    let root: Uint8Array;
    let secret: Uint8Array;
    before(async () => {
      root = await alice.mount('/');
      const made = await alice.create(root, 'private.txt', {
        mode: 'guarded',
        attributes: { mode: 0o600 },
      });
      secret = made.handle;
      await alice.write(secret, 0, Buffer.from('only alice'));
    });

    it('uid 2000 READ of a 0600 file of uid 1000: NFS3ERR_ACCES', async () => {
      assert.equal(await statusOf(bob.read(secret, 0, 100)), NfsStatus.ACCES);
    });
    it('uid 2000 WRITE: NFS3ERR_ACCES', async () => {
      assert.equal(await statusOf(bob.write(secret, 0, Buffer.from('bob'))), NfsStatus.ACCES);
    });
    it('uid 2000 SETATTR mode 0777: NFS3ERR_PERM', async () => {
      assert.equal(await statusOf(bob.setattr(secret, { mode: 0o777 })), NfsStatus.PERM);
    });
    it('uid 2000 REMOVE from the sticky root: NFS3ERR_PERM', async () => {
      assert.equal(await statusOf(bob.remove(root, 'private.txt')), NfsStatus.PERM);
    });
    it('libnfs as uid 2000: nfs-cat and nfs-cp are refused; as uid 1000 nfs-cat reads the bytes', async () => {
      const cat = await fails('nfs-cat', [asUser(relay.port, '//private.txt', 2000)]);
      assert.match(cat, /permission|denied|ACCES/i);
      const local = path.join(dir, 'bob.txt');
      fs.writeFileSync(local, 'bob was here');
      await fails('nfs-cp', [local, asUser(relay.port, '//private.txt', 2000)]);
      const out = await execFileP('nfs-cat', [asUser(relay.port, '//private.txt', 1000)]);
      assert.equal(out.stdout, 'only alice');
    });
    it('every replica ends with the same state', async () => {
      await converged(replicas);
      const states = replicas.map((r) => Buffer.from(r.service.state.read(0, STATE)));
      for (const s of states.slice(1)) assert.ok(s.equals(states[0]), 'replica states differ');
    });
  });

  describe('permission table (pjd-fstest style) through the relay', () => {
    definePermissionTable(() => portTarget(relay.port));
  });
});
