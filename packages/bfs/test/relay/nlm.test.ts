import { strict as assert } from 'node:assert';
import { PageStore } from '@bfs/page-store';
import {
  IPPROTO_TCP,
  IPPROTO_UDP,
  NLM_PROGRAM,
  NSM_PROGRAM,
  Nfs2Client,
  Nfs3Client,
  NlmClient,
  NlmProc,
  NsmProc,
  PortmapClient,
  RpcClient,
  RpcError,
  XdrReader,
  authSys,
  decodeNlmRes,
  encodeNlmLockArgs,
  encodeNlmNotify,
  type NlmLockArg,
} from 'nfs-server-ts';
import { Relay } from '../../src/relay';
import { DEFAULT_EXPORTS, exportedTrees } from '../../src/exports';
import { BfsService } from '../../src/service/bfs-service';
import { NlmStat } from '../../src/locks/lock-table';
import { clientLockManager } from '../locks/callbacks';

const STATE = 64 * 2 ** 20;

async function relayWithLocks() {
  const service = new BfsService(new PageStore({ size: STATE }), { fsid: 9 });
  const lm = await clientLockManager();
  const relay = new Relay({
    invoke: async (op, readOnly) =>
      service.execute(op, 1, service.proposeNondet(Date.now()), readOnly),
    lockCallbackPort: async () => lm.port,
  });
  const port = await relay.listen({ port: 0, host: '127.0.0.1' });
  const rpc = await RpcClient.connect({ port });
  const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
  const root = await nfs.mount('/');
  const { handle } = await nfs.create(root, 'db');
  const nlm = new NlmClient(rpc);
  const lock = (svid: number, offset = 0, length = 0): NlmLockArg => ({
    callerName: svid < 100 ? 'client-a' : 'client-b',
    fh: handle,
    oh: Buffer.from(`${svid}@client`),
    svid,
    offset: BigInt(offset),
    length: BigInt(length),
  });
  const cookie = Buffer.from('cookie');
  const LOCK = async (svid: number, block = false, exclusive = true, offset = 0, length = 0) =>
    (
      await nlm.lock({
        cookie,
        block,
        exclusive,
        lock: lock(svid, offset, length),
        reclaim: false,
        state: 1,
      })
    ).stat;
  const UNLOCK = async (svid: number, offset = 0, length = 0) =>
    (await nlm.unlock({ cookie, lock: lock(svid, offset, length) })).stat;
  return {
    service,
    relay,
    port,
    rpc,
    nfs,
    root,
    handle,
    nlm,
    lm,
    lock,
    LOCK,
    UNLOCK,
    cookie,
    async close() {
      rpc.close();
      await relay.close();
      await lm.close();
    },
  };
}

describe('relay NLM v4 (XNFS chapter 10): lock calls as replicated operations', function () {
  this.timeout(30_000);
  let r: Awaited<ReturnType<typeof relayWithLocks>>;
  beforeEach(async () => {
    r = await relayWithLocks();
  });
  afterEach(() => r.close());

  it('the portmapper on the relay port maps NLM 1, 3, 4 and NSM 1 to that port', async () => {
    const pm = new PortmapClient(r.rpc);
    for (const v of [1, 3, 4]) {
      assert.equal(await pm.getport(NLM_PROGRAM, v, IPPROTO_TCP), r.port);
      assert.equal(await pm.getport(NLM_PROGRAM, v, IPPROTO_UDP), r.port);
    }
    assert.equal(await pm.getport(NSM_PROGRAM, 1, IPPROTO_TCP), r.port);
    await r.rpc.call(NLM_PROGRAM, 4, NlmProc.NULL, new Uint8Array(0));
  });

  it('two owners contend: the second is DENIED and TEST names the holder (NLM4_DENIED, nlm4_holder)', async () => {
    assert.equal(await r.LOCK(1, false, true, 0, 100), NlmStat.GRANTED);
    assert.equal(await r.LOCK(200, false, true, 50, 10), NlmStat.DENIED);
    const t = await r.nlm.test({ cookie: r.cookie, exclusive: false, lock: r.lock(200, 10, 1) });
    assert.equal(t.stat, NlmStat.DENIED);
    assert.deepEqual(Buffer.from(t.cookie).toString(), 'cookie', 'the cookie comes back');
    assert.equal(t.holder?.svid, 1);
    assert.equal(t.holder?.offset, 0n);
    assert.equal(t.holder?.length, 100n);
    assert.equal(await r.UNLOCK(1, 0, 100), NlmStat.GRANTED);
    assert.equal(await r.LOCK(200, false, true, 50, 10), NlmStat.GRANTED);
  });

  it('NLM over UDP sees the same locks as over TCP', async () => {
    assert.equal(await r.LOCK(1), NlmStat.GRANTED);
    const udp = await RpcClient.connect({ port: r.port, transport: 'udp' });
    try {
      const t = await new NlmClient(udp).test({
        cookie: r.cookie,
        exclusive: false,
        lock: r.lock(200),
      });
      assert.equal(t.holder?.svid, 1);
    } finally {
      udp.close();
    }
  });

  it('a blocked LOCK is BLOCKED, then granted by a GRANTED callback once the holder unlocks', async () => {
    assert.equal(await r.LOCK(1), NlmStat.GRANTED);
    assert.equal(await r.LOCK(200, true), NlmStat.BLOCKED);
    const called = r.lm.next();
    const started = Date.now();
    assert.equal(await r.UNLOCK(1), NlmStat.GRANTED);
    await called;
    assert.ok(Date.now() - started < 2000, 'within a few GRANT_POLL_MS');
    const g = r.lm.granted[0];
    assert.equal(g.lock.svid, 200);
    assert.deepEqual(Buffer.from(g.cookie).toString(), 'cookie');
    assert.deepEqual(Buffer.from(g.lock.fh), Buffer.from(r.handle));
    const t = await r.nlm.test({ cookie: r.cookie, exclusive: true, lock: r.lock(1) });
    assert.equal(t.holder?.svid, 200, 'the waiter holds the lock');
  });

  it('a GRANTED callback the client refuses gives the lock back', async () => {
    r.lm.refuse();
    await r.LOCK(1);
    await r.LOCK(200, true);
    const called = r.lm.next();
    await r.UNLOCK(1);
    await called;
    for (let i = 0; i < 50 && r.relay.locks.stats.grantsGivenBack === 0; i++)
      await new Promise((res) => setTimeout(res, 20));
    const t = await r.nlm.test({ cookie: r.cookie, exclusive: true, lock: r.lock(1) });
    assert.equal(t.stat, NlmStat.GRANTED);
  });

  it('CANCEL withdraws a blocked LOCK: no callback comes and the unlock frees the file', async () => {
    await r.LOCK(1);
    await r.LOCK(200, true);
    const c = await r.nlm.cancel({
      cookie: r.cookie,
      block: true,
      exclusive: true,
      lock: r.lock(200),
    });
    assert.equal(c.stat, NlmStat.GRANTED);
    await r.UNLOCK(1);
    await new Promise((res) => setTimeout(res, 600));
    assert.equal(r.lm.granted.length, 0);
  });

  it('LOCK_MSG answers at once and sends the result as a LOCK_RES call', async () => {
    await r.LOCK(1);
    const res = r.lm.next();
    await r.nlm.message(
      NlmProc.LOCK_MSG,
      encodeNlmLockArgs(4, {
        cookie: Buffer.from('m1'),
        block: false,
        exclusive: true,
        lock: r.lock(200),
        reclaim: false,
        state: 0,
      }),
    );
    await res;
    const [m] = r.lm.results;
    assert.equal(m.proc, NlmProc.LOCK_RES);
    const back = decodeNlmRes(new XdrReader(m.body));
    assert.equal(back.stat, NlmStat.DENIED);
    assert.deepEqual(Buffer.from(back.cookie).toString(), 'm1');
  });

  it('a malformed NLM call is GARBAGE_ARGS and changes nothing', async () => {
    const good = encodeNlmLockArgs(4, {
      cookie: r.cookie,
      block: false,
      exclusive: true,
      lock: r.lock(1),
      reclaim: false,
      state: 0,
    });
    for (const bad of [good.subarray(0, good.length - 4), Uint8Array.from([...good, 1, 2, 3, 4])]) {
      await assert.rejects(
        r.rpc.call(NLM_PROGRAM, 4, NlmProc.LOCK, bad),
        (e) => e instanceof RpcError && e.reply.kind === 'garbage_args',
      );
    }
    const longName = { ...r.lock(1), callerName: 'x'.repeat(300) };
    await assert.rejects(
      r.nlm.lock({
        cookie: r.cookie,
        block: false,
        exclusive: true,
        lock: longName,
        reclaim: false,
        state: 0,
      }),
      (e) => e instanceof RpcError && e.reply.kind === 'garbage_args',
    );
    for (const [v, proc] of [
      [4, 17],
      [1, NlmProc.SHARE],
      [4, 24],
    ])
      await assert.rejects(
        r.rpc.call(NLM_PROGRAM, v, proc, new Uint8Array(0)),
        (e) => e instanceof RpcError && e.reply.kind === 'proc_unavail',
        `version ${v} procedure ${proc}`,
      );
    const t = await r.nlm.test({ cookie: r.cookie, exclusive: true, lock: r.lock(200) });
    assert.equal(t.stat, NlmStat.GRANTED, 'no lock was taken');
  });

  it('SM_NOTIFY from a rebooted client and NLM FREE_ALL free its locks (XNFS 11)', async () => {
    await r.LOCK(1, false, true, 0, 10);
    await r.LOCK(200, false, true, 20, 10);
    await r.rpc.call(
      NSM_PROGRAM,
      1,
      NsmProc.NOTIFY,
      encodeNlmNotify({ name: 'client-a', state: 3 }),
    );
    assert.equal(await r.LOCK(201, false, true, 0, 10), NlmStat.GRANTED);
    await r.nlm.freeAll({ name: 'client-b', state: 5 });
    assert.equal(await r.LOCK(2, false, true, 0, 30), NlmStat.GRANTED);
  });

  it('NLM v1 over an NFSv2 handle and NLM v4 over the NFSv3 handle lock the same file', async () => {
    const v2 = new Nfs2Client(r.rpc, authSys(1000, 1000));
    const root2 = await v2.mount('/');
    const fh2 = (await v2.lookup(root2, 'db')).handle;
    assert.equal(fh2.length, 32);
    await r.LOCK(1);
    const nlm1 = new NlmClient(r.rpc, 1);
    const res = await nlm1.lock({
      cookie: r.cookie,
      block: false,
      exclusive: false,
      lock: { ...r.lock(200), fh: fh2 },
      reclaim: false,
      state: 0,
    });
    assert.equal(res.stat, NlmStat.DENIED);
  });

  it("LOCK and UNLOCK land the file's buffered writes first, so the next holder reads them", async () => {
    assert.equal(await r.LOCK(1), NlmStat.GRANTED);
    await r.nfs.write(r.handle, 0, Buffer.from('under lock'), 'unstable');
    assert.ok(!r.relay.writeBack!.idle, 'the write is buffered');
    assert.equal(await r.UNLOCK(1), NlmStat.GRANTED);
    assert.ok(r.relay.writeBack!.idle, 'flushed before the unlock was agreed');
  });

  it('SHARE reservations: a share that denies writes refuses a writer (XNFS 10.12)', async () => {
    const share = (name: string, mode: number, access: number) => ({
      cookie: r.cookie,
      share: { callerName: name, fh: r.handle, oh: Buffer.from(name), mode, access },
      reclaim: false,
    });
    assert.equal((await r.nlm.share(share('a', 2, 1))).stat, NlmStat.GRANTED);
    assert.equal((await r.nlm.share(share('b', 0, 2))).stat, NlmStat.DENIED);
    await r.nlm.share(share('a', 0, 0), NlmProc.UNSHARE);
    assert.equal((await r.nlm.share(share('b', 0, 2))).stat, NlmStat.GRANTED);
  });
});

describe('relay NLM when the replicas cannot be reached', () => {
  it('answers DENIED_NOLOCKS (the client retries) and keeps serving', async () => {
    const relay = new Relay({ invoke: () => Promise.reject(new Error('no quorum')) });
    const port = await relay.listen({ port: 0, host: '127.0.0.1' });
    const rpc = await RpcClient.connect({ port });
    try {
      const nlm = new NlmClient(rpc);
      const lock = {
        callerName: 'c',
        fh: new Uint8Array(16),
        oh: Buffer.from('o'),
        svid: 1,
        offset: 0n,
        length: 0n,
      };
      const cookie = Buffer.from('k');
      const args = { cookie, block: true, exclusive: true, lock, reclaim: false, state: 0 };
      assert.equal((await nlm.lock(args)).stat, NlmStat.DENIED_NOLOCKS);
      assert.equal(
        (await nlm.test({ cookie, exclusive: true, lock })).stat,
        NlmStat.DENIED_NOLOCKS,
      );
      assert.equal((await nlm.unlock({ cookie, lock })).stat, NlmStat.DENIED_NOLOCKS);
      await rpc.call(NLM_PROGRAM, 4, NlmProc.NULL, new Uint8Array(0));
    } finally {
      rpc.close();
      await relay.close();
    }
  });
});

describe('relay NLM under export rules (exports.ts): lock calls obey the rules NFS calls do', function () {
  this.timeout(30_000);

  it('a client no export admits gets AUTH_TOOWEAK; a handle of an export that refuses it is DENIED, and the lock is not taken', async () => {
    const exports = [
      { ...DEFAULT_EXPORTS[0], clients: ['127.0.0.1'] },
      { ...DEFAULT_EXPORTS[0], clients: ['10.0.0.0/8'] },
    ];
    const service = new BfsService(new PageStore({ size: STATE }), {
      exports: exportedTrees(exports),
    });
    let forwarded = 0;
    const relay = new Relay({
      invoke: async (op, readOnly) => {
        forwarded++;
        return service.execute(op, 1, service.proposeNondet(Date.now()), readOnly);
      },
      exports,
    });
    const port = await relay.listen({ port: 0, host: '127.0.0.1' });
    const rpc = await RpcClient.connect({ port, host: '127.0.0.1' });
    const outsider = await RpcClient.connect({
      port,
      host: '127.0.0.1',
      localAddress: '127.0.0.2',
    });
    try {
      const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
      const { handle } = await nfs.create(await nfs.mount('/'), 'f');
      // The same file through export 1, which admits 10.0.0.0/8 only.
      const inner = service.exported.unwrap(handle).inner;
      const other = service.exported.wrap(inner, 1);
      const lock = (fh: Uint8Array) => ({
        cookie: Buffer.from('k'),
        block: false,
        exclusive: true,
        lock: { callerName: 'c', fh, oh: Buffer.from('o'), svid: 1, offset: 0n, length: 0n },
        reclaim: false,
        state: 0,
      });
      const before = forwarded;
      assert.equal((await new NlmClient(rpc).lock(lock(other))).stat, NlmStat.DENIED);
      assert.equal(forwarded, before, 'refused at the relay');
      await assert.rejects(
        new NlmClient(outsider).lock(lock(handle)),
        (e: unknown) => e instanceof RpcError && e.reply.kind === 'auth_error',
      );
      assert.equal((await new NlmClient(rpc).lock(lock(handle))).stat, NlmStat.GRANTED);
    } finally {
      rpc.close();
      outsider.close();
      await relay.close();
    }
  });
});
