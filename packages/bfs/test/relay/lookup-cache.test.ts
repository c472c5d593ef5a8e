import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { PageStore } from '@bfs/page-store';
import {
  type FileHandle,
  Nfs3Client,
  NfsError,
  NfsStatus,
  RpcClient,
  XdrWriter,
  authSys,
} from 'nfs-server-ts';
import { LOOKUP_CACHE_MS, LookupCache } from '../../src/lookup-cache';
import { Relay, type RelayOptions } from '../../src/relay';
import { BfsService } from '../../src/service/bfs-service';
import { OpKind, decodeOp } from '../../src/service/op';

const STATE = 64 * 2 ** 20;
const TTL_MS = 1000;

/**
 * Two relays over one BfsService executed in this process: `a` with the lookup cache on a clock
 * the test moves, `b` with it off (a change through `b` is what another relay's change looks
 * like to `a`). `lookups` counts the LOOKUPs that reached the replicas.
 */
async function twoRelays(aOpts: Partial<RelayOptions> = {}) {
  const service = new BfsService(new PageStore({ size: STATE }), { fsid: 7 });
  let lookups = 0;
  let clockMs = 0;
  const invoke: RelayOptions['invoke'] = async (op, readOnly) => {
    const d = decodeOp(op);
    if (d.kind === OpKind.Nfs && d.version === 3 && d.procedure === 3) lookups++;
    return service.execute(op, 1, service.proposeNondet(Date.now()), readOnly);
  };
  const a = new Relay({
    invoke,
    lookupCacheMs: TTL_MS,
    lookupCacheClock: () => clockMs,
    ...aOpts,
  });
  const b = new Relay({ invoke, lookupCacheMs: 0 });
  const rpcs: RpcClient[] = [];
  const client = async (relay: Relay, uid = 1000) => {
    const port = await relay.listen({ port: 0, host: '127.0.0.1' });
    const rpc = await RpcClient.connect({ port, timeoutMs: 10_000 });
    rpcs.push(rpc);
    return new Nfs3Client(rpc, authSys(uid, uid));
  };
  const nfsA = await client(a);
  const otherUidA = await client(a, 2000);
  const nfsB = await client(b);
  const root = await nfsA.mount('/');
  return {
    a,
    b,
    nfsA,
    otherUidA,
    nfsB,
    root,
    lookups: () => lookups,
    advance: (ms: number) => (clockMs += ms),
    async close() {
      for (const r of rpcs) r.close();
      await Promise.all([a.close(), b.close()]);
    },
  };
}

/** The lookup's status, 0 for OK. */
const lookupStatus = (nfs: Nfs3Client, dir: FileHandle, name: string): Promise<number> =>
  nfs.lookup(dir, name).then(
    () => 0,
    (e: unknown) => {
      if (e instanceof NfsError) return e.status;
      throw e;
    },
  );

describe('relay lookup cache: LOOKUP replies served by the relay, dropped by its own changes, bounded in time for others', function () {
  this.timeout(30_000);
  let r: Awaited<ReturnType<typeof twoRelays>>;
  beforeEach(async () => {
    r = await twoRelays();
  });
  afterEach(() => r.close());

  it('the default bound is named and on', async () => {
    assert.ok(LOOKUP_CACHE_MS > 0);
    const relay = new Relay({ invoke: async () => new Uint8Array(0) });
    assert.ok(relay.lookups);
    await relay.close();
  });

  it('a negative lookup is served from the cache within the bound and not after it', async () => {
    assert.equal(await lookupStatus(r.nfsA, r.root, 'late'), NfsStatus.NOENT);
    const asked = r.lookups();
    await r.nfsB.create(r.root, 'late');
    r.advance(TTL_MS - 1);
    assert.equal(
      await lookupStatus(r.nfsA, r.root, 'late'),
      NfsStatus.NOENT,
      "within the bound another relay's CREATE is not seen",
    );
    assert.equal(r.lookups(), asked, 'served without a round through the replicas');
    r.advance(1);
    assert.equal(await lookupStatus(r.nfsA, r.root, 'late'), 0, 'after the bound it is');
    assert.equal(r.lookups(), asked + 1);
  });

  it('a positive lookup is served from the cache within the bound, with the same handle and attributes', async () => {
    await r.nfsA.create(r.root, 'kept');
    const first = await r.nfsA.lookup(r.root, 'kept');
    const asked = r.lookups();
    const again = await r.nfsA.lookup(r.root, 'kept');
    assert.equal(r.lookups(), asked);
    assert.deepEqual(again, first);
  });

  it('a CREATE, MKDIR or SYMLINK through the relay makes the name visible at once', async () => {
    for (const name of ['file', 'dir', 'link'])
      assert.equal(await lookupStatus(r.nfsA, r.root, name), NfsStatus.NOENT);
    const made = [
      (await r.nfsA.create(r.root, 'file')).handle,
      (await r.nfsA.mkdir(r.root, 'dir')).handle,
      (await r.nfsA.symlink(r.root, 'link', 'file')).handle,
    ];
    for (const [i, name] of ['file', 'dir', 'link'].entries())
      assert.deepEqual((await r.nfsA.lookup(r.root, name)).handle, made[i]);
  });

  it('a REMOVE or RMDIR through the relay makes the name vanish at once', async () => {
    await r.nfsA.create(r.root, 'gone');
    await r.nfsA.mkdir(r.root, 'gonedir');
    await r.nfsA.lookup(r.root, 'gone');
    await r.nfsA.lookup(r.root, 'gonedir');
    await r.nfsA.remove(r.root, 'gone');
    await r.nfsA.rmdir(r.root, 'gonedir');
    assert.equal(await lookupStatus(r.nfsA, r.root, 'gone'), NfsStatus.NOENT);
    assert.equal(await lookupStatus(r.nfsA, r.root, 'gonedir'), NfsStatus.NOENT);
  });

  it('a RENAME through the relay makes the old name vanish and the new one appear at once, in both directories', async () => {
    const { handle: sub } = await r.nfsA.mkdir(r.root, 'sub');
    const { handle } = await r.nfsA.create(r.root, 'old');
    await r.nfsA.lookup(r.root, 'old');
    assert.equal(await lookupStatus(r.nfsA, sub, 'new'), NfsStatus.NOENT);
    const parentBefore = (await r.nfsA.lookup(sub, '..')).attributes!;
    await r.nfsA.rename(r.root, 'old', sub, 'new');
    assert.equal(await lookupStatus(r.nfsA, r.root, 'old'), NfsStatus.NOENT);
    assert.deepEqual((await r.nfsA.lookup(sub, 'new')).handle, handle);
    const parentAfter = (await r.nfsA.lookup(sub, '..')).attributes!;
    assert.notDeepEqual(parentAfter.mtime, parentBefore.mtime, "the parent's new mtime shows");
  });

  it('a RENAME over an existing file shows the new file under the name at once', async () => {
    const { handle: from } = await r.nfsA.create(r.root, 'from');
    await r.nfsA.create(r.root, 'to');
    await r.nfsA.lookup(r.root, 'to');
    await r.nfsA.rename(r.root, 'from', r.root, 'to');
    assert.deepEqual((await r.nfsA.lookup(r.root, 'to')).handle, from);
  });

  it("a LINK through the relay shows the new name and the file's new link count at once", async () => {
    const { handle } = await r.nfsA.create(r.root, 'one');
    assert.equal((await r.nfsA.lookup(r.root, 'one')).attributes!.nlink, 1);
    assert.equal(await lookupStatus(r.nfsA, r.root, 'two'), NfsStatus.NOENT);
    await r.nfsA.link(handle, r.root, 'two');
    assert.equal((await r.nfsA.lookup(r.root, 'one')).attributes!.nlink, 2);
    assert.deepEqual((await r.nfsA.lookup(r.root, 'two')).handle, handle);
    await r.nfsA.remove(r.root, 'two');
    assert.equal(
      (await r.nfsA.lookup(r.root, 'one')).attributes!.nlink,
      1,
      'removing the other name shows too',
    );
  });

  it("SETATTR's new attributes are seen at once in the next LOOKUP", async () => {
    const { handle } = await r.nfsA.create(r.root, 'attrs', {
      mode: 'unchecked',
      attributes: { mode: 0o644 },
    });
    assert.equal((await r.nfsA.lookup(r.root, 'attrs')).attributes!.mode & 0o777, 0o644);
    await r.nfsA.setattr(handle, { mode: 0o600 });
    assert.equal((await r.nfsA.lookup(r.root, 'attrs')).attributes!.mode & 0o777, 0o600);
  });

  it("a WRITE answered from the write-back buffer shows in the next LOOKUP's size, and after its flush", async () => {
    const { handle } = await r.nfsA.create(r.root, 'grow');
    assert.equal((await r.nfsA.lookup(r.root, 'grow')).attributes!.size, 0);
    await r.nfsA.write(handle, 0, randomBytes(3000), 'unstable');
    assert.equal((await r.nfsA.lookup(r.root, 'grow')).attributes!.size, 3000);
    await r.nfsA.write(handle, 3000, randomBytes(1000), 'unstable');
    await r.a.writeBack!.flushFile(handle);
    assert.equal((await r.nfsA.lookup(r.root, 'grow')).attributes!.size, 4000);
    await r.nfsA.commit(handle);
    assert.equal((await r.nfsA.lookup(r.root, 'grow')).attributes!.size, 4000);
  });

  it('a uid without search permission gets ACCES even after another uid cached the entry', async () => {
    const { handle: dir } = await r.nfsA.mkdir(r.root, 'private', { mode: 0o700 });
    await r.nfsA.create(dir, 'secret');
    assert.equal(await lookupStatus(r.nfsA, dir, 'secret'), 0);
    assert.equal(await lookupStatus(r.nfsA, dir, 'missing'), NfsStatus.NOENT);
    assert.equal(await lookupStatus(r.otherUidA, dir, 'secret'), NfsStatus.ACCES);
    assert.equal(await lookupStatus(r.otherUidA, dir, 'missing'), NfsStatus.ACCES);
  });

  it("a chmod of a directory through the relay takes away another uid's cached lookups in it at once", async () => {
    const { handle: dir } = await r.nfsA.mkdir(r.root, 'shared', { mode: 0o755 });
    await r.nfsA.create(dir, 'f');
    assert.equal(await lookupStatus(r.otherUidA, dir, 'f'), 0);
    assert.equal(await lookupStatus(r.otherUidA, dir, 'none'), NfsStatus.NOENT);
    await r.nfsA.setattr(dir, { mode: 0o700 });
    assert.equal(await lookupStatus(r.otherUidA, dir, 'f'), NfsStatus.ACCES);
    assert.equal(await lookupStatus(r.otherUidA, dir, 'none'), NfsStatus.ACCES);
  });

  it('bad handles and bad names get the same errors as from a relay without the cache', async () => {
    const badHandle = randomBytes(32);
    const cases: [FileHandle, string][] = [
      [r.root, 'a/b'],
      [r.root, 'nul\0byte'],
      [r.root, 'x'.repeat(256)],
      [r.root, 'x'.repeat(1000)],
      [r.root, ''],
      [badHandle, 'name'],
      [new Uint8Array(0), 'name'],
    ];
    for (const [dir, name] of cases) {
      const without = await lookupStatus(r.nfsB, dir, name);
      for (let i = 0; i < 2; i++)
        assert.equal(await lookupStatus(r.nfsA, dir, name), without, JSON.stringify(name));
    }
  });
});

describe('relay lookup cache: bounds', function () {
  this.timeout(30_000);

  it('the entry bound holds: the oldest entries are evicted first', async () => {
    const r = await twoRelays({ lookupCacheEntries: 4 });
    try {
      for (let i = 0; i < 10; i++) await lookupStatus(r.nfsA, r.root, `n${i}`);
      assert.equal(r.a.lookups!.size, 4);
      assert.equal(r.a.lookups!.stats.evicted, 6);
      const asked = r.lookups();
      await lookupStatus(r.nfsA, r.root, 'n9');
      assert.equal(r.lookups(), asked, 'the newest is kept');
      await lookupStatus(r.nfsA, r.root, 'n0');
      assert.equal(r.lookups(), asked + 1, 'the oldest was evicted');
      assert.equal(r.a.lookups!.size, 4);
    } finally {
      await r.close();
    }
  });

  it("cache off (0): no cache, and another relay's change shows at once, as before", async () => {
    const r = await twoRelays({ lookupCacheMs: 0 });
    try {
      assert.equal(r.a.lookups, undefined);
      assert.equal(await lookupStatus(r.nfsA, r.root, 'now'), NfsStatus.NOENT);
      await r.nfsB.create(r.root, 'now');
      assert.equal(await lookupStatus(r.nfsA, r.root, 'now'), 0);
    } finally {
      await r.close();
    }
  });

  it('without write-back the cache still drops a file whose WRITE changed its size', async () => {
    const r = await twoRelays({ writeBack: false });
    try {
      const { handle } = await r.nfsA.create(r.root, 'w');
      await r.nfsA.lookup(r.root, 'w');
      await r.nfsA.write(handle, 0, randomBytes(500), 'unstable');
      assert.equal((await r.nfsA.lookup(r.root, 'w')).attributes!.size, 500);
    } finally {
      await r.close();
    }
  });
});

describe('LookupCache on its own', () => {
  const cred = { uid: 1, gid: 1, gids: [] };
  const dir = new Uint8Array(32).fill(7);
  const args = new XdrWriter().opaque(dir).string('name').bytes();
  const noent = new XdrWriter().u32(NfsStatus.NOENT).bool(false).bytes();

  it('a reply asked for before a change was answered is not stored', () => {
    const cache = new LookupCache({ ttlMs: 1000, now: () => 0 });
    const since = cache.generation;
    cache.forget(dir);
    cache.store(args, cred, noent, since);
    assert.equal(cache.size, 0);
    cache.store(args, cred, noent, cache.generation);
    assert.deepEqual(cache.get(args, cred), noent);
  });

  it('replies other than OK and NOENT are not stored, nor arguments with trailing bytes', () => {
    const cache = new LookupCache({ ttlMs: 1000, now: () => 0 });
    const acces = new XdrWriter().u32(NfsStatus.ACCES).bool(false).bytes();
    cache.store(args, cred, acces, cache.generation);
    const trailing = new XdrWriter().opaque(dir).string('name').u32(0).bytes();
    cache.store(trailing, cred, noent, cache.generation);
    assert.equal(cache.size, 0);
  });

  it('another credential does not hit an entry', () => {
    const cache = new LookupCache({ ttlMs: 1000, now: () => 0 });
    cache.store(args, cred, noent, cache.generation);
    assert.equal(cache.get(args, { uid: 2, gid: 1, gids: [] }), undefined);
    assert.equal(cache.get(args, { uid: 1, gid: 1, gids: [5] }), undefined);
    assert.ok(cache.get(args, cred));
  });
});
