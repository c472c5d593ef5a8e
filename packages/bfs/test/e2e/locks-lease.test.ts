import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  type FileHandle,
  NLM_PROGRAM,
  Nfs3Client,
  NlmClient,
  type NlmLockArg,
  RpcClient,
  RpcServer,
  XdrReader,
  authSys,
  decodeNlmTestArgs,
  encodeNlmRes,
} from 'nfs-server-ts';
import { initCluster } from '../../src/cluster/config';
import {
  type RunningRelay,
  type RunningReplica,
  startRelay,
  startReplica,
} from '../../src/cluster/node';
import { freeConsecutivePorts } from '../../src/cluster/ports';
import { NlmStat } from '../../src/locks/lock-table';

const STATE = 32 * 2 ** 20;
/** A short lease, so that a dead relay's locks go within the test. */
const LEASE_S = 3;

/** One client machine: its NFS and NLM connection to a relay, and its lock manager. */
async function clientOf(relay: RunningRelay, name: string) {
  const rpc = await RpcClient.connect({ port: relay.port, timeoutMs: 60_000 });
  return { rpc, nfs: new Nfs3Client(rpc, authSys(1000, 1000)), nlm: new NlmClient(rpc), name };
}

describe('bfs cluster: locks across two relays, and the lease of a dead relay (agreed time)', function () {
  this.timeout(120_000);
  let dir: string;
  let replicas: RunningReplica[] = [];
  const relays: RunningRelay[] = [];
  let callbacks: RpcServer;
  let granted: (() => void) | undefined;
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
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-lease-'));
    await initCluster({
      dir,
      replicas: 4,
      relays: 2,
      basePort: await freeConsecutivePorts(4),
      stateSize: STATE,
      leaseSeconds: LEASE_S,
    });
    replicas = await Promise.all([0, 1, 2, 3].map((id) => startReplica({ dir, id })));
    callbacks = new RpcServer();
    callbacks.setHandler(NLM_PROGRAM, 4, (c) => {
      const args = decodeNlmTestArgs(new XdrReader(c.args), 4);
      granted?.();
      return encodeNlmRes(4, { cookie: args.cookie, stat: NlmStat.GRANTED });
    });
    const cbPort = await callbacks.listen({ port: 0, host: '127.0.0.1' });
    for (const name of ['relay-0', 'relay-1'])
      relays.push(await startRelay({ dir, name, port: 0, lockCallbackPort: async () => cbPort }));
    a = await clientOf(relays[0], 'client-a');
    b = await clientOf(relays[1], 'client-b');
    file = (await a.nfs.create(await a.nfs.mount('/'), 'shared')).handle;
  });
  after(async () => {
    a?.rpc.close();
    b?.rpc.close();
    await Promise.all(relays.map((r) => r.close()));
    await callbacks?.close();
    await Promise.all(replicas.map((r) => r.close()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a lock taken through one relay excludes a client of the other, whose blocked LOCK is granted by callback', async () => {
    assert.equal(await LOCK(b), NlmStat.GRANTED);
    assert.equal(await LOCK(a), NlmStat.DENIED);
    assert.equal(await LOCK(a, true), NlmStat.BLOCKED);
    const called = new Promise<void>((r) => (granted = r));
    assert.equal((await b.nlm.unlock({ cookie, lock: lockOf(b) })).stat, NlmStat.GRANTED);
    await called;
    assert.equal(await LOCK(b), NlmStat.DENIED, "a's relay holds it now");
  });

  it('a live relay keeps its locks past the lease by renewing; a dead one loses them after it', async () => {
    await new Promise((r) => setTimeout(r, 2 * LEASE_S * 1000));
    assert.equal(await LOCK(b), NlmStat.DENIED, 'relay-0 renewed its lease');
    a.rpc.close();
    await relays.shift()!.close();
    const deadline = Date.now() + 10 * LEASE_S * 1000;
    let stat = await LOCK(b);
    while (stat !== NlmStat.GRANTED && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      stat = await LOCK(b);
    }
    assert.equal(stat, NlmStat.GRANTED, "the dead relay's lock was released after its lease");
  });
});
