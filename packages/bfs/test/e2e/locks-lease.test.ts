import { strict as assert } from 'node:assert';
import {
  type FileHandle,
  Nfs3Client,
  NlmClient,
  type NlmLockArg,
  RpcClient,
  authSys,
} from 'nfs-server-ts';
import { type RunningRelay, startRelay } from '../../src/cluster/node';
import { NlmStat } from '../../src/locks/lock-table';
import { clientLockManager } from '../locks/callbacks';
import { inProcessCluster } from './helpers';

const STATE = 32 * 2 ** 20;
/** A short lease, so that a dead relay's locks go within the test. */
const LEASE_S = 3;

/** One client machine: its NFS and NLM connection to a relay. */
async function clientOf(relay: RunningRelay, name: string) {
  const rpc = await RpcClient.connect({ port: relay.port, timeoutMs: 60_000 });
  return { rpc, nfs: new Nfs3Client(rpc, authSys(1000, 1000)), nlm: new NlmClient(rpc), name };
}

describe('bfs cluster: locks across two relays, and the lease of a dead relay (agreed time)', function () {
  this.timeout(120_000);
  let cluster: Awaited<ReturnType<typeof inProcessCluster>>;
  let lm: Awaited<ReturnType<typeof clientLockManager>>;
  let file: FileHandle;
  let a: Awaited<ReturnType<typeof clientOf>>;
  let b: Awaited<ReturnType<typeof clientOf>>;
  const cookie = Buffer.from('lease');

  const lockOf = (c: { name: string }): NlmLockArg => ({
    callerName: c.name,
    fh: file,
    oh: Buffer.from(`1@${c.name}`),
    svid: 1,
    offset: 0n,
    length: 0n,
  });
  const LOCK = async (c: typeof a, block = false) =>
    (
      await c.nlm.lock({
        cookie,
        block,
        exclusive: true,
        lock: lockOf(c),
        reclaim: false,
        state: 1,
      })
    ).stat;

  before(async () => {
    lm = await clientLockManager();
    cluster = await inProcessCluster(STATE, {
      relays: 2,
      leaseSeconds: LEASE_S,
      relay: { lockCallbackPort: async () => lm.port },
    });
    a = await clientOf(cluster.relays[0], 'client-a');
    b = await clientOf(cluster.relays[1], 'client-b');
    file = (await a.nfs.create(await a.nfs.mount('/'), 'shared')).handle;
  });
  after(async () => {
    a?.rpc.close();
    b?.rpc.close();
    await cluster?.close();
    await lm?.close();
  });

  it('a lock taken through one relay excludes a client of the other, whose blocked LOCK is granted by callback', async () => {
    assert.equal(await LOCK(b), NlmStat.GRANTED);
    assert.equal(await LOCK(a), NlmStat.DENIED);
    assert.equal(await LOCK(a, true), NlmStat.BLOCKED);
    const called = lm.next();
    assert.equal((await b.nlm.unlock({ cookie, lock: lockOf(b) })).stat, NlmStat.GRANTED);
    await called;
    assert.equal(await LOCK(b), NlmStat.DENIED, "a's relay holds it now");
  });

  it("a restarted relay keeps its clients' locks: they are the replicas', and it renews the lease", async () => {
    a.rpc.close();
    await cluster.relays[0].close();
    cluster.relays[0] = await startRelay({
      dir: cluster.dir,
      name: 'relay-0',
      port: 0,
      lockCallbackPort: async () => lm.port,
    });
    a = await clientOf(cluster.relays[0], 'client-a');
    await new Promise((r) => setTimeout(r, 2 * LEASE_S * 1000));
    assert.equal(await LOCK(b), NlmStat.DENIED, 'the restarted relay-0 renewed its lease');
  });

  it("a dead relay loses its clients' locks after its lease", async () => {
    a.rpc.close();
    await cluster.relays.shift()!.close();
    const deadline = Date.now() + 10 * LEASE_S * 1000;
    let stat = await LOCK(b);
    while (stat !== NlmStat.GRANTED && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      stat = await LOCK(b);
    }
    assert.equal(stat, NlmStat.GRANTED, "the dead relay's lock was released after its lease");
  });
});
