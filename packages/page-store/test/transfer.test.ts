import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { PageStore, StateTransfer, UNTOUCHED, serveFetch } from '../src';
import type { FetchRequest, PageReply, PartitionReply } from '../src';

const PAGE = 256;
const PAGES = 3000;

/** Small deterministic PRNG so histories are reproducible. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Applies checkpoints from..to of a deterministic history (20 random writes each). */
function play(store: PageStore, from: number, to: number, seed = 7): void {
  for (let seq = from; seq <= to; seq++) {
    const r = rng(seed * 1000 + seq);
    for (let i = 0; i < 20; i++) {
      const offset = Math.floor(r() * (PAGES * PAGE - 600));
      store.write(offset, new Uint8Array(1 + Math.floor(r() * 500)).fill(seq & 0xff));
    }
    store.checkpoint(seq);
  }
}

function newStore(): PageStore {
  return new PageStore({ size: PAGES * PAGE, pageSize: PAGE, fanout: 8 });
}

/** Answers every pending request through `answer` until the transfer is done. */
function drive(t: StateTransfer, answer: (req: FetchRequest) => unknown, maxRounds = 1000): void {
  for (let round = 0; !t.done; round++) {
    assert.ok(round < maxRounds, 'transfer makes progress');
    for (const req of t.pending()) t.receive(answer(req));
  }
}

describe('page-store: state transfer', () => {
  it('brings a replica 50 checkpoints behind up to date, fetching only pages modified since its base', () => {
    const source = newStore();
    play(source, 1, 60);
    const behind = newStore();
    play(behind, 1, 10);
    const target = { seq: 60, digest: source.digestAt(60)! };
    const t = new StateTransfer(behind, target);
    assert.equal(t.base, 10);
    drive(t, (req) => serveFetch(source, req));
    const changed = source.pagesChangedBetween(10, 60)!;
    assert.ok(t.pagesFetched <= changed.length && t.pagesFetched > 0);
    assert.equal(t.rejected, 0);
    t.apply();
    assert.deepEqual(behind.digestAt(60), target.digest);
    assert.deepEqual(behind.read(0, PAGES * PAGE), source.readAt(60, 0, PAGES * PAGE));
    // The installed tree is a working tree: both continue identically.
    play(source, 61, 62);
    play(behind, 61, 62);
    assert.deepEqual(behind.digestAt(62), source.digestAt(62));
  });

  it('fills an empty replica from nothing', () => {
    const source = newStore();
    play(source, 1, 5);
    const fresh = newStore();
    const t = new StateTransfer(fresh, { seq: 5, digest: source.digestAt(5)! });
    assert.equal(t.base, UNTOUCHED);
    drive(t, (req) => serveFetch(source, req));
    t.apply();
    assert.deepEqual(fresh.checkpoints(), [5]);
    assert.deepEqual(fresh.read(0, PAGES * PAGE), source.read(0, PAGES * PAGE));
  });

  it('rejects corrupted pages and lying partitions without touching the current state, then replaces tentative checkpoints above the base', () => {
    const source = newStore();
    play(source, 1, 40);
    const behind = newStore();
    play(behind, 1, 20);
    // Tentative work after the base that the transfer must discard on apply.
    behind.write(0, new Uint8Array(100).fill(0xee));
    behind.checkpoint(21);
    behind.write(5, new Uint8Array(100).fill(0xef));
    const before = behind.read(0, PAGES * PAGE);
    const beforeDigest = behind.digestAt(20);
    const tentativeDigest = behind.digestAt(21);
    const t = new StateTransfer(behind, { seq: 40, digest: source.digestAt(40)! }, 20);
    const lies = rng(99);
    let served = 0;
    const reasons = new Set<string>();
    const faulty = (req: FetchRequest): PartitionReply | PageReply => {
      const honest = serveFetch(source, req);
      const pick = lies();
      if (honest.kind === 'page' && pick < 0.3) {
        const data = honest.data.slice();
        data[Math.floor(lies() * data.length)] ^= 0x01;
        return { ...honest, data };
      }
      if (honest.kind === 'page' && pick < 0.4) return { ...honest, lm: honest.lm - 1 };
      if (honest.kind === 'partition' && pick < 0.2 && honest.children.length > 0) {
        return { ...honest, children: honest.children.slice(1) }; // hides a modified child
      }
      if (honest.kind === 'partition' && pick < 0.3 && honest.children.length > 0) {
        const children = honest.children.map((c) => ({ ...c, digest: c.digest.slice() }));
        children[0].digest[0] ^= 0x80;
        return { ...honest, children };
      }
      return honest;
    };
    for (let round = 0; !t.done; round++) {
      assert.ok(round < 100);
      for (const req of t.pending()) {
        const verdict = t.receive(faulty(req));
        served++;
        if (!verdict.ok) reasons.add(verdict.reason);
      }
      // Until apply(), the store is exactly as it was.
      assert.deepEqual(behind.read(0, PAGES * PAGE), before);
    }
    assert.ok(t.rejected > 0 && t.rejected < served);
    assert.ok(reasons.has('page does not match its digest'));
    assert.ok(reasons.has('partition does not match its digest'));
    assert.deepEqual(behind.digestAt(20), beforeDigest);
    assert.deepEqual(behind.digestAt(21), tentativeDigest);
    t.apply();
    assert.deepEqual(behind.read(0, PAGES * PAGE), source.readAt(40, 0, PAGES * PAGE));
    assert.deepEqual(
      behind.checkpoints(),
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 40],
    );
  });

  it('rejects malformed, unrequested and stale replies with a reason instead of throwing', () => {
    const source = newStore();
    play(source, 1, 3);
    const fresh = newStore();
    const t = new StateTransfer(fresh, { seq: 3, digest: source.digestAt(3)! });
    const root = t.pending()[0] as Extract<FetchRequest, { kind: 'partition' }>;
    const good = serveFetch(source, root) as PartitionReply;
    const bad: unknown[] = [
      null,
      'partition',
      42,
      { kind: 'nonsense' },
      { ...good, seq: 2 },
      { ...good, index: 1e300 },
      { ...good, level: -1 },
      { ...good, children: 'x' },
      { ...good, children: [null] },
      { ...good, children: [{ index: 0, lm: 1, digest: new Uint8Array(3) }] },
      { ...good, children: [...good.children].reverse() },
      { ...good, children: new Array(1000).fill(good.children[0]) },
      { ...good, lm: 1e6 },
      { kind: 'page', seq: 3, index: 0, lm: 1, data: new Uint8Array(PAGE) },
    ];
    for (const b of bad) assert.equal(t.receive(b).ok, false, JSON.stringify(b));
    assert.equal(t.rejected, bad.length);
    assert.equal(t.pending().length, 1);
    assert.ok(t.receive(good).ok);
    assert.throws(() => t.apply(), /incomplete/);
  });

  it('refuses a base that is not a kept checkpoint below the target', () => {
    const s = newStore();
    play(s, 1, 3);
    assert.throws(
      () => new StateTransfer(s, { seq: 10, digest: new Uint8Array(32) }, 7),
      RangeError,
    );
    assert.throws(
      () => new StateTransfer(s, { seq: 2, digest: new Uint8Array(32) }, 3),
      RangeError,
    );
  });

  it('agrees with the source for random shapes, histories and starting points', () => {
    const write = fc.record({
      page: fc.nat(),
      at: fc.nat(),
      data: fc.uint8Array({ minLength: 1, maxLength: 80 }),
    });
    fc.assert(
      fc.property(
        fc.record({
          pages: fc.integer({ min: 1, max: 60 }),
          fanout: fc.integer({ min: 2, max: 5 }),
          intervals: fc.array(fc.array(write, { maxLength: 6 }), { minLength: 1, maxLength: 12 }),
          shared: fc.nat(),
          tentative: fc.array(write, { maxLength: 4 }),
          after: fc.array(write, { maxLength: 4 }),
        }),
        ({ pages, fanout, intervals, shared, tentative, after }) => {
          const options = { size: pages * 64, pageSize: 64, fanout };
          const apply = (
            s: PageStore,
            ws: { page: number; at: number; data: Uint8Array }[],
          ): void => {
            for (const w of ws) {
              const offset = (w.page % pages) * 64 + (w.at % 64);
              s.write(offset, w.data.subarray(0, options.size - offset));
            }
          };
          const source = new PageStore(options);
          const behind = new PageStore(options);
          const common = shared % (intervals.length + 1); // 0: the replica starts from nothing
          intervals.forEach((ws, i) => {
            apply(source, ws);
            source.checkpoint(i + 1);
            if (i < common) {
              apply(behind, ws);
              behind.checkpoint(i + 1);
            }
          });
          apply(behind, tentative);
          const target = intervals.length;
          const t = new StateTransfer(behind, { seq: target, digest: source.digestAt(target)! });
          drive(t, (req) => serveFetch(source, req));
          assert.equal(t.rejected, 0);
          t.apply();
          assert.deepEqual(behind.read(0, options.size), source.read(0, options.size));
          apply(source, after);
          apply(behind, after);
          assert.deepEqual(
            behind.checkpoint(target + 1).digest,
            source.checkpoint(target + 1).digest,
          );
        },
      ),
      { numRuns: 150 },
    );
  });
});
