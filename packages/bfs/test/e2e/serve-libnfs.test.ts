import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Nfs3Client, NfsStatus, RpcClient, authSys } from 'nfs-server-ts';
import { statusOf } from '../../../nfs-server-ts/test/helpers';
import { execFileP, nfsUrl, startBfs, stop } from './helpers';

describe('bfs serve (unreplicated) with a real NFS client (libnfs-utils)', function () {
  this.timeout(120_000);
  let tmp: string;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-serve-'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('copies files of 0 B to 3 MiB in and out byte for byte, lists them, and keeps them across a restart', async () => {
    const dir = path.join(tmp, 'data');
    const sizes = [0, 1, 4095, 4097, 65536 + 3, 3 * 2 ** 20 + 11];
    const files = sizes.map((n, i) => ({ name: `f${i}.bin`, data: randomBytes(n) }));
    let s = await startBfs(['serve', '--dir', dir, '--port', '0', '--size', '1G']);
    try {
      for (const f of files) {
        const local = path.join(tmp, f.name);
        fs.writeFileSync(local, f.data);
        await execFileP('nfs-cp', [local, nfsUrl(s.port, `//${f.name}`)]);
      }
      const ls = await execFileP('nfs-ls', [nfsUrl(s.port, '/')]);
      for (const f of files) assert.match(ls.stdout, new RegExp(`\\b${f.name}\\b`));
      const cat = await execFileP('nfs-cat', [nfsUrl(s.port, '//f2.bin')], { encoding: 'buffer' });
      assert.ok(
        Buffer.compare(cat.stdout, files[2].data) === 0,
        'nfs-cat returns the bytes written',
      );
    } finally {
      assert.equal(await stop(s.child), 0, s.stderr());
    }
    s = await startBfs(['serve', '--dir', dir, '--port', '0', '--size', '1G']);
    try {
      for (const f of files) {
        const back = path.join(tmp, `back-${f.name}`);
        await execFileP('nfs-cp', [nfsUrl(s.port, `//${f.name}`), back]);
        assert.ok(
          fs.readFileSync(back).equals(f.data),
          `${f.name} (${f.data.length} B) after restart`,
        );
      }
    } finally {
      assert.equal(await stop(s.child), 0, s.stderr());
    }
  });

  it('checks permissions as the replicas do: uid 2000 cannot read, write, chmod or remove a 0600 file of uid 1000', async () => {
    const data = path.join(tmp, 'perm');
    const s = await startBfs(['serve', '--dir', data, '--port', '0', '--size', '64M']);
    const rpc = await RpcClient.connect({ port: s.port });
    try {
      const alice = new Nfs3Client(rpc, authSys(1000, 1000));
      const bob = new Nfs3Client(rpc, authSys(2000, 2000));
      const root = await alice.mount('/');
      const how = { mode: 'guarded' as const, attributes: { mode: 0o600 } };
      const { handle } = await alice.create(root, 'private.txt', how);
      await alice.write(handle, 0, Buffer.from('only alice'));
      assert.equal(await statusOf(bob.read(handle, 0, 100)), NfsStatus.ACCES);
      assert.equal(await statusOf(bob.write(handle, 0, Buffer.from('x'))), NfsStatus.ACCES);
      assert.equal(await statusOf(bob.setattr(handle, { mode: 0o777 })), NfsStatus.PERM);
      assert.equal(await statusOf(bob.remove(root, 'private.txt')), NfsStatus.PERM);
      const url = `${nfsUrl(s.port, '//private.txt')}&uid=2000&gid=2000`;
      await assert.rejects(execFileP('nfs-cat', [url]));
    } finally {
      rpc.close();
      assert.equal(await stop(s.child), 0, s.stderr());
    }
  });

  it('says clearly when its port is taken', async () => {
    const s = await startBfs([
      'serve',
      '--dir',
      path.join(tmp, 'a'),
      '--port',
      '0',
      '--size',
      '64M',
    ]);
    try {
      await assert.rejects(
        startBfs([
          'serve',
          '--dir',
          path.join(tmp, 'b'),
          '--port',
          String(s.port),
          '--size',
          '64M',
        ]),
        /port \d+ of [\d.]+ is in use/,
      );
    } finally {
      await stop(s.child);
    }
  });
});
