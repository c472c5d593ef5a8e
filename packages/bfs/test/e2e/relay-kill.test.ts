import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Nfs3Client, RpcClient, authSys } from 'nfs-server-ts';
import { initCluster } from '../../src/cluster/config';
import { type RunningReplica, startReplica } from '../../src/cluster/node';
import { freeConsecutivePorts } from '../../src/cluster/ports';
import { startBfs } from './helpers';

const STATE = 64 * 2 ** 20;
const CHUNK = 32 * 1024;

/**
 * RFC 1813 3.3.21: a server that loses unstable data says so with a new write verifier, and the
 * client re-sends what it had not committed. Here the server is a `bfs relay` process killed
 * with SIGKILL between the WRITEs and the COMMIT; the client does what a kernel client does.
 */
describe('a bfs relay process killed between UNSTABLE WRITEs and their COMMIT', function () {
  this.timeout(120_000);
  let dir: string;
  let replicas: RunningReplica[] = [];

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-relay-kill-'));
    await initCluster({
      dir,
      replicas: 4,
      basePort: await freeConsecutivePorts(4),
      stateSize: STATE,
    });
    replicas = await Promise.all([0, 1, 2, 3].map((id) => startReplica({ dir, id })));
  });
  after(async () => {
    await Promise.all(replicas.map((r) => r.close()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('loses only the uncommitted data; the restarted relay has a new verifier, the client re-sends, and the file is whole', async () => {
    const relay1 = await startBfs(['relay', '--dir', dir, '--port', '0', '--key-refresh', '0']);
    let rpc = await RpcClient.connect({ port: relay1.port });
    let nfs = new Nfs3Client(rpc, authSys(1000, 1000));
    const root = await nfs.mount('/');
    const { handle } = await nfs.create(root, 'image.bin');
    const committed = Buffer.alloc(CHUNK, 1);
    await nfs.write(handle, 0, committed, 'unstable');
    const first = await nfs.commit(handle);
    // Unstable writes the relay answered from its buffer, then the relay dies before COMMIT.
    const pending = Buffer.alloc(4 * CHUNK);
    for (let i = 0; i < pending.length; i++) pending[i] = (i * 7) & 0xff;
    const verifiers = new Set<string>();
    for (let off = 0; off < pending.length; off += CHUNK) {
      const w = await nfs.write(
        handle,
        CHUNK + off,
        pending.subarray(off, off + CHUNK),
        'unstable',
      );
      assert.equal(w.committed, 'unstable');
      verifiers.add(Buffer.from(w.verifier).toString('hex'));
    }
    assert.deepEqual([...verifiers], [Buffer.from(first).toString('hex')]);
    relay1.child.kill('SIGKILL');
    await new Promise((r) => relay1.child.once('exit', r));
    rpc.close();

    const relay2 = await startBfs(['relay', '--dir', dir, '--port', '0', '--key-refresh', '0']);
    try {
      rpc = await RpcClient.connect({ port: relay2.port });
      nfs = new Nfs3Client(rpc, authSys(1000, 1000));
      const again = await nfs.commit(handle);
      assert.notDeepEqual(again, first, 'a new verifier: the client must re-send');
      // What was committed survived the relay; of the rest, only what it had flushed in the
      // background before it died (any of it, or none) may be there, and nothing else.
      const before = await nfs.getattr(handle);
      assert.ok(before.size >= CHUNK && before.size <= CHUNK + pending.length, `${before.size}`);
      const held = Buffer.from(await nfs.readAll(handle));
      assert.deepEqual(held.subarray(0, CHUNK), committed);
      for (let i = CHUNK; i < held.length; i++)
        assert.ok(held[i] === 0 || held[i] === pending[i - CHUNK], `byte ${i}`);
      for (let off = 0; off < pending.length; off += CHUNK)
        await nfs.write(handle, CHUNK + off, pending.subarray(off, off + CHUNK), 'unstable');
      assert.deepEqual(await nfs.commit(handle), again);
      assert.deepEqual(Buffer.from(await nfs.readAll(handle)), Buffer.concat([committed, pending]));
    } finally {
      rpc.close();
      relay2.child.kill('SIGTERM');
      await new Promise((r) => relay2.child.once('exit', r));
    }
  });
});
