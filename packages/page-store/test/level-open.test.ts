import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import {
  CorruptStoreError,
  LevelDamageError,
  PersistentPageStore,
  isCorruption,
  openLevelChecked,
} from '../src';
import { damageLevelFile } from './fixtures/damage';

async function filled(dir: string, entries: number): Promise<void> {
  const db = new Level<Uint8Array, Uint8Array>(dir, {
    keyEncoding: 'view',
    valueEncoding: 'view',
  });
  await db.open();
  for (let i = 0; i < entries; i++)
    await db.put(Buffer.from(`key ${String(i).padStart(6, '0')}`), Buffer.alloc(1000, i));
  await db.close();
}

describe('page-store: LevelDB damage is reported, never used silently (openLevelChecked)', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(join(tmpdir(), 'level-open-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('opens a sound database, new or not', async () => {
    const fresh = await openLevelChecked(join(dir, 'new'));
    await fresh.close();
    await filled(join(dir, 'old'), 100);
    const db = await openLevelChecked(join(dir, 'old'));
    assert.equal((await db.keys().all()).length, 100);
    await db.close();
  });

  it('a damaged write-ahead log, which LevelDB repairs at open by dropping records, is damage', async () => {
    await filled(dir, 300);
    damageLevelFile(dir, '.log');
    await assert.rejects(openLevelChecked(dir), (e: Error) => {
      assert.ok(e instanceof LevelDamageError);
      assert.match(e.message, /dropped unreadable records.*[Cc]orruption/);
      return true;
    });
    // LevelDB rewrote it while opening; the mark keeps it damaged for the next open.
    await assert.rejects(openLevelChecked(dir), /dropped unreadable records/);
  });

  it('a damaged MANIFEST, which fails the open, is damage', async () => {
    await filled(dir, 10);
    const manifest = fs.readdirSync(dir).find((f) => f.startsWith('MANIFEST-'))!;
    fs.writeFileSync(join(dir, manifest), randomBytes(64));
    await assert.rejects(openLevelChecked(dir), LevelDamageError);
  });

  it('a database locked by another user is not damage: the error comes as it is', async () => {
    const holder = await openLevelChecked(dir);
    await assert.rejects(openLevelChecked(dir), (e: Error) => {
      assert.ok(!(e instanceof LevelDamageError));
      assert.ok(!isCorruption(e));
      return true;
    });
    await holder.close();
  });

  it('a persistent page store whose write-ahead log is damaged is a CorruptStoreError (moved aside and fetched again by a replica)', async () => {
    const options = { size: 64 * 1024, pageSize: 1024, fanout: 4 };
    const store = await PersistentPageStore.open(dir, options);
    for (let seq = 1; seq <= 3; seq++) {
      store.state.write(seq * 3000, randomBytes(20_000));
      store.state.checkpoint(seq);
      await store.persist(seq);
    }
    await store.close();
    damageLevelFile(dir, '.log');
    await assert.rejects(PersistentPageStore.open(dir, options), CorruptStoreError);
  });
});
