import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { CorruptStoreError, PageStore, PersistentPageStore } from '../src';
import { rng, writesFor } from './fixtures/history';

const PAGE = 1024;
const SIZE = 4096 * PAGE;
const OPTIONS = { size: SIZE, pageSize: PAGE, fanout: 16 };

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'page-store-test-'));
}

describe('page-store: LevelDB persistence', function () {
  const dirs: string[] = [];
  const dir = (): string => {
    const d = tempDir();
    dirs.push(d);
    return d;
  };
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('restarts from the last persisted checkpoint with the same bytes and digest', async () => {
    const path = dir();
    const a = await PersistentPageStore.open(path, OPTIONS);
    assert.equal(a.persistedSeq, -1);
    for (let seq = 1; seq <= 5; seq++) {
      writesFor(a.state, 1, seq, 30);
      a.state.checkpoint(seq);
      if (seq % 2 === 1) void a.persist(seq);
    }
    writesFor(a.state, 1, 6, 30); // never persisted
    await a.close();
    const b = await PersistentPageStore.open(path, OPTIONS);
    assert.equal(b.persistedSeq, 5);
    assert.deepEqual(b.state.checkpoints(), [5]);
    assert.deepEqual(b.state.digestAt(5), a.state.digestAt(5));
    assert.deepEqual(b.state.read(0, SIZE), a.state.readAt(5, 0, SIZE));
    // The restored tree keeps working incrementally, identically to the original.
    a.state.rollback(5);
    writesFor(a.state, 1, 6, 30);
    writesFor(b.state, 1, 6, 30);
    assert.deepEqual(b.state.checkpoint(6).digest, a.state.checkpoint(6).digest);
    await b.close();
  });

  it('writes only the pages modified since the previous persisted checkpoint', async () => {
    const path = dir();
    const s = await PersistentPageStore.open(path, OPTIONS);
    writesFor(s.state, 2, 1, 500);
    s.state.checkpoint(1);
    await s.persist(1);
    s.state.write(10 * PAGE, new Uint8Array(3 * PAGE).fill(1)); // pages 10..12
    s.state.checkpoint(2);
    s.state.write(100 * PAGE, new Uint8Array(1).fill(2));
    s.state.checkpoint(3);
    s.state.discardBelow(2); // persisted 1 is no longer kept: the tree tells what changed since
    const third = await s.persist(3);
    assert.deepEqual([third.fullRewrite, third.pagesWritten], [false, 4]);
    s.state.write(7, Uint8Array.of(9));
    s.state.checkpoint(4);
    const fourth = await s.persist(4);
    assert.deepEqual([fourth.fullRewrite, fourth.pagesWritten, fourth.pagesDeleted], [false, 1, 0]);
    assert.ok(fourth.bytesWritten < 2 * PAGE);
    await s.close();
    const again = await PersistentPageStore.open(path, OPTIONS);
    assert.deepEqual(again.state.digestAt(4), s.state.digestAt(4));
    await again.close();
  });

  it('ignores a persist of a checkpoint older than the one on disk', async () => {
    const path = dir();
    const s = await PersistentPageStore.open(path, OPTIONS);
    s.state.write(0, Uint8Array.of(1));
    s.state.checkpoint(1);
    s.state.write(0, Uint8Array.of(2));
    s.state.checkpoint(2);
    void s.persist(2);
    const late = await s.persist(1);
    assert.deepEqual([late.pagesWritten, s.persistedSeq], [0, 2]);
    await s.close();
    const again = await PersistentPageStore.open(path, OPTIONS);
    assert.equal(again.persistedSeq, 2);
    await again.close();
  });

  it('rewrites everything consistently after a rollback below the persisted checkpoint', async () => {
    const path = dir();
    const s = await PersistentPageStore.open(path, OPTIONS);
    s.state.write(0, new Uint8Array(PAGE).fill(1));
    s.state.checkpoint(1);
    await s.persist(1);
    s.state.write(5 * PAGE, new Uint8Array(PAGE).fill(2));
    s.state.checkpoint(2);
    await s.persist(2);
    s.state.rollback(1); // checkpoint 2 is undone: page 5 was never written in this history
    s.state.write(9 * PAGE, new Uint8Array(PAGE).fill(3));
    s.state.checkpoint(2);
    const stats = await s.persist(2);
    assert.equal(stats.fullRewrite, true);
    assert.equal(stats.pagesDeleted, 1);
    await s.close();
    const again = await PersistentPageStore.open(path, OPTIONS);
    assert.deepEqual(again.state.read(0, SIZE), s.state.read(0, SIZE));
    await again.close();
  });

  it('detects a flipped byte in a stored page at start-up and refuses to use the store', async () => {
    const path = dir();
    const s = await PersistentPageStore.open(path, OPTIONS);
    writesFor(s.state, 3, 1, 50);
    s.state.checkpoint(1);
    await s.persist(1);
    await s.close();
    const db = new Level<Uint8Array, Uint8Array>(path, {
      keyEncoding: 'view',
      valueEncoding: 'view',
    });
    const it = db.iterator({ gte: Uint8Array.of(1), lt: Uint8Array.of(2), limit: 1 });
    const first = await it.next();
    await it.close();
    const [key, value] = first!;
    const bad = value.slice();
    bad[100] ^= 0x04;
    await db.put(key, bad);
    await db.close();
    await assert.rejects(PersistentPageStore.open(path, OPTIONS), CorruptStoreError);
  });

  it('detects a deleted page and a changed last-modified checkpoint', async () => {
    for (const damage of ['delete', 'lm'] as const) {
      const path = dir();
      const s = await PersistentPageStore.open(path, OPTIONS);
      writesFor(s.state, 4, 1, 50);
      s.state.checkpoint(1);
      writesFor(s.state, 4, 2, 50);
      s.state.checkpoint(2);
      await s.persist(2);
      await s.close();
      const db = new Level<Uint8Array, Uint8Array>(path, {
        keyEncoding: 'view',
        valueEncoding: 'view',
      });
      const it = db.iterator({ gte: Uint8Array.of(1), lt: Uint8Array.of(2), limit: 1 });
      const [key, value] = (await it.next())!;
      await it.close();
      if (damage === 'delete') await db.del(key);
      else
        await db.put(
          key,
          Uint8Array.from([...value.subarray(0, 7), value[7] === 2 ? 3 : 2, ...value.subarray(8)]),
        );
      await db.close();
      await assert.rejects(PersistentPageStore.open(path, OPTIONS), CorruptStoreError, damage);
    }
  });

  it('detects bytes flipped inside the LevelDB table files', async () => {
    const path = dir();
    const s = await PersistentPageStore.open(path, OPTIONS);
    // Enough data (about 8 MiB) that LevelDB flushes it into a table file.
    const r = rng(5);
    const page = new Uint8Array(PAGE);
    for (let p = 0; p < SIZE / PAGE; p += 1) {
      for (let i = 0; i < PAGE; i += 4) page[i] = Math.floor(r() * 256);
      s.state.write(p * PAGE, page);
    }
    s.state.checkpoint(1);
    await s.persist(1);
    s.state.write(0, Uint8Array.of(1));
    s.state.checkpoint(2);
    await s.persist(2);
    await s.close();
    // A clean reopen makes LevelDB move its log into table files listed in its manifest.
    await (await PersistentPageStore.open(path, OPTIONS)).close();
    const tables = readdirSync(path).filter((f) => f.endsWith('.ldb'));
    assert.ok(tables.length > 0, 'table files exist');
    for (const t of tables) {
      const bytes = readFileSync(join(path, t));
      bytes[Math.floor(bytes.length / 2)] ^= 0x10;
      writeFileSync(join(path, t), bytes);
    }
    await assert.rejects(PersistentPageStore.open(path, OPTIONS), CorruptStoreError);
  });

  it('refuses an unreadable checkpoint record and pages without one', async () => {
    for (const damage of ['garbage', 'missing'] as const) {
      const path = dir();
      const s = await PersistentPageStore.open(path, OPTIONS);
      s.state.write(0, Uint8Array.of(1));
      s.state.checkpoint(1);
      await s.persist(1);
      await s.close();
      const db = new Level<Uint8Array, Uint8Array>(path, {
        keyEncoding: 'view',
        valueEncoding: 'view',
      });
      if (damage === 'garbage') await db.put(Uint8Array.of(0, 0x6d), Uint8Array.of(0x7b, 0x22));
      else await db.del(Uint8Array.of(0, 0x6d));
      await db.close();
      await assert.rejects(PersistentPageStore.open(path, OPTIONS), CorruptStoreError, damage);
    }
  });

  it('refuses a store made with another shape', async () => {
    const path = dir();
    const s = await PersistentPageStore.open(path, OPTIONS);
    s.state.write(0, Uint8Array.of(1));
    s.state.checkpoint(1);
    await s.persist(1);
    await s.close();
    await assert.rejects(PersistentPageStore.open(path, { ...OPTIONS, fanout: 8 }), /fanout/);
  });

  it('survives SIGKILL at random moments: restarts from a persisted checkpoint whose digest matches', async function () {
    this.timeout(60000);
    const path = dir();
    const child = join(__dirname, 'fixtures', 'crash-child.ts');
    const seed = 11;
    const digests = new Map<number, string>();
    const pause = rng(42);
    let lastPersisted = -1;
    for (let round = 0; round < 6; round++) {
      const proc = spawn(
        process.execPath,
        [
          '--require',
          require.resolve('tsx/cjs'),
          child,
          path,
          String(seed),
          String(SIZE),
          String(PAGE),
        ],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let err = '';
      proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
      let buffered = '';
      let persistedThisRound = 0;
      let killAt = 2 + Math.floor(pause() * 6);
      const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
      proc.stdout.on('data', (d: Buffer) => {
        buffered += d.toString();
        const lines = buffered.split('\n');
        buffered = lines.pop()!;
        for (const line of lines) {
          const [tag, seq, hex] = line.split(' ');
          if (tag === 'O')
            assert.ok(
              Number(seq) >= lastPersisted,
              `reopened at ${seq}, persisted ${lastPersisted}`,
            );
          if (tag === 'C') digests.set(Number(seq), hex);
          if (tag === 'P') {
            lastPersisted = Number(seq);
            if (++persistedThisRound === killAt) {
              // Let it get into the next checkpoint's writes or batch, then kill it mid-flight.
              setTimeout(() => proc.kill('SIGKILL'), Math.floor(pause() * 15));
              killAt = -1;
            }
          }
        }
      });
      await exited;
      assert.equal(proc.signalCode, 'SIGKILL', err);
      const reopened = await PersistentPageStore.open(path, OPTIONS);
      const seq = reopened.persistedSeq;
      assert.ok(
        seq >= lastPersisted,
        `restarted at ${seq}, but ${lastPersisted} was reported persisted`,
      );
      assert.equal(Buffer.from(reopened.state.digestAt(seq)!).toString('hex'), digests.get(seq));
      // And the bytes are the history's bytes at that checkpoint, replayed in memory.
      const replay = new PageStore(OPTIONS);
      for (let s = 0; s <= seq; s++) writesFor(replay, seed, s, 40);
      assert.deepEqual(reopened.state.read(0, SIZE), replay.read(0, SIZE));
      await reopened.close();
      lastPersisted = seq;
    }
  });
});
