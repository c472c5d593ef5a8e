import { strict as assert } from 'node:assert';
import {
  type FileHandle,
  NLM_PROGRAM,
  Nfs3Client,
  NlmClient,
  NlmProc,
  type NlmLockArg,
  RpcClient,
  RpcError,
  authSys,
  encodeNlmLockArgs,
} from 'nfs-server-ts';
import { encodeLockTable } from '../../src/locks/lock-store';
import { NlmStat } from '../../src/locks/lock-table';
import { clientLockManager } from '../locks/callbacks';
import { converged, inProcessCluster } from './helpers';

const STATE = 32 * 2 ** 20;

describe('bfs cluster: NLM locks through a relay and four replicas', function () {
  this.timeout(120_000);
  let cluster: Awaited<ReturnType<typeof inProcessCluster>>;
  let lm: Awaited<ReturnType<typeof clientLockManager>>;
  let rpc: RpcClient;
  let nfs: Nfs3Client;
  let nlm: NlmClient;
  let file: FileHandle;
  const cookie = Buffer.from('e2e');

  const owner = (svid: number, length = 0): NlmLockArg => ({
    callerName: `client-${svid}`,
    fh: file,
    oh: Buffer.from(`${svid}@client-${svid}`),
    svid,
    offset: 0n,
    length: BigInt(length),
  });
  const LOCK = async (svid: number, block = false) =>
    (
      await nlm.lock({
        cookie,
        block,
        exclusive: true,
        lock: owner(svid),
        reclaim: false,
        state: 1,
      })
    ).stat;
  const UNLOCK = async (svid: number) => (await nlm.unlock({ cookie, lock: owner(svid) })).stat;
  const holderOf = async () =>
    (await nlm.test({ cookie, exclusive: true, lock: owner(999) })).holder?.svid;
  const tables = () =>
    cluster.replicas.map((r) => Buffer.from(encodeLockTable(r.service.locks!.table)));

  before(async () => {
    lm = await clientLockManager();
    cluster = await inProcessCluster(STATE, { relay: { lockCallbackPort: async () => lm.port } });
    rpc = await RpcClient.connect({ port: cluster.relay.port, timeoutMs: 60_000 });
    nfs = new Nfs3Client(rpc, authSys(1000, 1000));
    nlm = new NlmClient(rpc);
    file = (await nfs.create(await nfs.mount('/'), 'counter')).handle;
    await nfs.write(file, 0, Buffer.from('0'));
  });
  after(async () => {
    rpc?.close();
    await cluster?.close();
    await lm?.close();
  });

  it('mutual exclusion: four owners incrementing a counter under an exclusive lock lose no increment', async () => {
    const ROUNDS = 4;
    const worker = async (svid: number) => {
      for (let i = 0; i < ROUNDS; i++) {
        while ((await LOCK(svid)) !== NlmStat.GRANTED) await new Promise((r) => setTimeout(r, 5));
        const n = Number(Buffer.from((await nfs.read(file, 0, 32)).data).toString());
        await nfs.write(file, 0, Buffer.from(String(n + 1).padStart(4, '0')));
        assert.equal(await UNLOCK(svid), NlmStat.GRANTED);
      }
    };
    await Promise.all([1, 2, 3, 4].map(worker));
    const n = Number(Buffer.from((await nfs.read(file, 0, 32)).data).toString());
    assert.equal(n, 4 * ROUNDS);
  });

  it('a blocked LOCK is granted by a GRANTED callback when the holder unlocks', async () => {
    assert.equal(await LOCK(1), NlmStat.GRANTED);
    assert.equal(await LOCK(2, true), NlmStat.BLOCKED);
    const called = lm.next();
    assert.equal(await UNLOCK(1), NlmStat.GRANTED);
    await called;
    assert.equal(lm.granted.at(-1)?.lock.svid, 2);
    assert.equal(await holderOf(), 2);
    assert.equal(await LOCK(1), NlmStat.DENIED);
  });

  it('every replica holds the same lock table, byte for byte', async () => {
    await converged(cluster.replicas);
    for (const t of tables()) assert.deepEqual(t, tables()[0]);
    assert.equal(cluster.replicas[0].service.locks!.table.size, 1);
  });

  it('a malformed NLM call is GARBAGE_ARGS and changes no replica', async () => {
    await converged(cluster.replicas);
    const before = tables();
    const good = encodeNlmLockArgs(4, {
      cookie,
      block: false,
      exclusive: true,
      lock: owner(3),
      reclaim: false,
      state: 0,
    });
    await assert.rejects(
      rpc.call(NLM_PROGRAM, 4, NlmProc.LOCK, good.subarray(0, good.length - 8)),
      (e) => e instanceof RpcError && e.reply.kind === 'garbage_args',
    );
    await converged(cluster.replicas);
    assert.deepEqual(tables(), before);
    assert.equal(await holderOf(), 2);
  });

  it('locks survive the primary: with replica 0 stopped the holder still holds, and unlock and lock go on', async () => {
    const primary = cluster.replicas.shift()!;
    await primary.close();
    assert.equal(await holderOf(), 2);
    assert.equal(await LOCK(1), NlmStat.DENIED, 'after the view change, the lock is still held');
    assert.equal(await UNLOCK(2), NlmStat.GRANTED);
    assert.equal(await LOCK(1), NlmStat.GRANTED);
    assert.equal(await holderOf(), 1);
  });
});
