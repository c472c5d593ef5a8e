import { strict as assert } from 'node:assert';
import { PageStore, encodeTransferMessage } from '@bfs/page-store';
import {
  FETCH_HAS_META,
  FETCH_MISSING,
  MsgType,
  Replica,
  decodeFrame,
  encodeUnsealed,
  sha256,
} from '../src';
import { SimOptions, SimResult } from '../src/testing';
import { Cluster } from './support/cluster';
import { KvService, addOp } from './support/kv';
import { runKvSim } from './support/sim';

/** Seeds per crash-recovery scenario (`PBFT_ST_SEEDS` overrides). */
const SEEDS = Number(process.env.PBFT_ST_SEEDS ?? 30);

/** Small windows so that a replica down for a while falls behind every peer's log. */
const small = {
  checkpointInterval: 4,
  logWindow: 8,
  retainBelowStable: 4,
  viewChangeTimeoutMs: 300,
  stateTransferDelayMs: 200,
};

function sweep(
  name: string,
  base: number,
  opts: Partial<SimOptions>,
  check: (r: SimResult) => void,
): void {
  it(`${name} (${SEEDS} seeds)`, function () {
    this.timeout(180_000);
    const failures: string[] = [];
    for (let s = 0; s < SEEDS; s++) {
      // A second of quiet at the end: "caught up" is checked once the replicas settled.
      const r = runKvSim(base + s, { settleMs: 1000, ...opts });
      if (!r.ok) failures.push(r.error!);
      else
        try {
          check(r);
        } catch (e) {
          failures.push(`seed ${base + s}: ${(e as Error).message}`);
        }
    }
    assert.deepEqual(failures, [], `replay with runKvSim(seed, { settleMs: 1000, ...opts })`);
  });
}

/** The replica that restarted ends on the same stable checkpoint digest as a correct peer at that seq. */
function restartedCaughtUp(replica: number) {
  return (r: SimResult): void => {
    const me = r.replicaEnd[replica]!;
    const peers = r.replicaEnd.filter((e, i) => e && i !== replica);
    const same = peers.find((p) => p!.stable === me.stable);
    if (same) assert.equal(me.stableDigest, same.stableDigest, 'stable digests agree');
    const best = Math.max(...peers.map((p) => p!.stable));
    assert.ok(me.stable >= best - small.checkpointInterval, `stable ${me.stable} vs ${best}`);
  };
}

function everyReplicaCaughtUp(r: SimResult): void {
  r.replicaEnd.forEach((_, i) => restartedCaughtUp(i)(r));
}

describe('pbft state transfer and crash recovery (OSDI 1999 s4.3, TOCS 2002 s5.3)', () => {
  sweep(
    'a backup down while the others move past its log fetches the stable checkpoint and rejoins',
    21000,
    {
      clients: 3,
      opsPerClient: 100,
      restarts: [{ replica: 2, withinMs: 300, downForMs: 500 }],
      replicaOptions: small,
      maxTimeMs: 60_000,
    },
    restartedCaughtUp(2),
  );

  sweep(
    'the primary crashes, the others change view, it restarts from disk and catches up in the new view',
    22000,
    {
      clients: 3,
      opsPerClient: 100,
      restarts: [{ replica: 0, withinMs: 300, downForMs: 800 }],
      loss: 0.02,
      replicaOptions: small,
      maxTimeMs: 60_000,
    },
    restartedCaughtUp(0),
  );

  sweep(
    'f = 2: two replicas restart from disk under loss and reordering',
    23000,
    {
      f: 2,
      clients: 3,
      opsPerClient: 50,
      restarts: [
        { replica: 1, withinMs: 300, downForMs: 500 },
        { replica: 4, withinMs: 1000, downForMs: 400 },
      ],
      loss: 0.03,
      maxDelayMs: 15,
      replicaOptions: small,
      maxTimeMs: 90_000,
    },
    (r) => {
      restartedCaughtUp(1)(r);
      restartedCaughtUp(4)(r);
    },
  );

  // Every result a client accepted (2f + 1 tentative or f + 1 committed replies) survives power
  // cuts that stop every replica at once: the runs check each one against the reference machine
  // of what committed, and that every operation completes after the restarts.
  sweep(
    'whole-cluster crashes: every replica stops at once and restarts from its disk, nothing acknowledged is lost',
    25000,
    {
      clients: 3,
      opsPerClient: 60,
      clusterRestarts: { count: 3, withinMs: 3000, downForMs: 200 },
      replicaOptions: small,
      maxTimeMs: 60_000,
    },
    everyReplicaCaughtUp,
  );

  sweep(
    'whole-cluster crashes under loss, with a restarted backup as well',
    26000,
    {
      clients: 3,
      opsPerClient: 60,
      clusterRestarts: { count: 2, withinMs: 3000, downForMs: 300 },
      restarts: [{ replica: 1, withinMs: 3000, downForMs: 400 }],
      loss: 0.03,
      replicaOptions: small,
      maxTimeMs: 60_000,
    },
    everyReplicaCaughtUp,
  );

  it('state transfer fetches only the pages changed since the replica stable checkpoint', () => {
    let transfers = 0;
    let pages = 0;
    for (let s = 0; s < 10; s++) {
      const r = runKvSim(24000 + s, {
        clients: 2,
        opsPerClient: 100,
        restarts: [{ replica: 3, withinMs: 300, downForMs: 500 }],
        replicaOptions: small,
        maxTimeMs: 60_000,
      });
      assert.ok(r.ok, r.error);
      transfers += r.replicaStats[3]!.stateTransferDone ?? 0;
      pages += r.replicaStats[3]!.transferPagesFetched ?? 0;
    }
    assert.ok(transfers > 0, 'some restarted replica caught up by state transfer');
    // The kv state has 16 pages of 4 KiB; the counters live in the first one and the clock
    // in another, so an incremental transfer fetches few pages, never the whole store.
    assert.ok(pages / transfers <= 4, `${pages} pages over ${transfers} transfers`);
  });

  describe('rules', () => {
    function drive(c: Cluster, ms: number): void {
      for (let t = 0; t < ms; t += 10) {
        c.run();
        c.tick(10);
      }
      c.run();
    }

    it('a replica whose state was damaged in place finds its checkpoint digest outvoted and repairs it', () => {
      const c = new Cluster(1, { checkpointInterval: 4, logWindow: 8 }, 1);
      for (let i = 0; i < 4; i++) {
        c.invoke(addOp(i % 4, 1));
        drive(c, 100);
      }
      assert.ok(c.replicas.every((r) => r.lowWater === 4));
      // Flip bytes of replica 3's state behind the service's back (a disk or memory fault).
      c.services[3]!.state.write(0, Uint8Array.of(0xde, 0xad, 0xbe, 0xef));
      for (let i = 0; i < 4; i++) {
        c.invoke(addOp(i % 4, 1));
        drive(c, 100);
      }
      drive(c, 1500);
      const r3 = c.replicas[3]!;
      assert.ok((r3.stats.checkpointDigestMismatch ?? 0) >= 1, 'mismatch noticed');
      assert.ok((r3.stats.stateTransferDone ?? 0) >= 1, 'state fetched');
      assert.equal(r3.lowWater, 8);
      assert.deepEqual(r3.stableDigest, c.replicas[0]!.stableDigest);
      assert.deepEqual(
        Buffer.from(c.services[3]!.state.read(0, 64)),
        Buffer.from(c.services[0]!.state.read(0, 64)),
      );
    });

    it('a fetch for a checkpoint the replica does not keep is answered FETCH_MISSING, never with wrong state', () => {
      const c = new Cluster(1, { checkpointInterval: 4, logWindow: 8 }, 1);
      const auth = Cluster.auth(1, [0, 1, 2, 3]);
      const fetch = auth.sealTo({ type: MsgType.Fetch, seq: 400, meta: true, requests: [] }, 0);
      const out = c.replicas[0]!.handleMessage(1, fetch, 0);
      const sent = out.filter((a) => a.kind === 'send');
      assert.equal(sent.length, 1);
      const reply = decodeFrame((sent[0] as { bytes: Uint8Array }).bytes).body;
      assert.equal(reply.type, MsgType.FetchReply);
      if (reply.type !== MsgType.FetchReply) return;
      assert.equal(reply.flags, FETCH_MISSING);
      assert.equal(reply.pieces.length, 0);
    });

    it('a kept checkpoint is served with its root and reply table, which hash to the checkpoint digest', () => {
      const c = new Cluster(1, { checkpointInterval: 4, logWindow: 8 }, 1);
      for (let i = 0; i < 4; i++) {
        c.invoke(addOp(i, 1));
        drive(c, 100);
      }
      const r0 = c.replicas[0]!;
      assert.equal(r0.lowWater, 4);
      const auth = Cluster.auth(1, [0, 1, 2, 3]);
      const store = c.services[0]!.state as PageStore;
      const root = { kind: 'partition', seq: 4, level: store.levels, index: 0, since: -1 } as const;
      const fetch = auth.sealTo(
        { type: MsgType.Fetch, seq: 4, meta: true, requests: [encodeTransferMessage(root)] },
        0,
      );
      const out = r0.handleMessage(1, fetch, c.now);
      const reply = decodeFrame((out[0] as { bytes: Uint8Array }).bytes).body;
      assert.ok(reply.type === MsgType.FetchReply && reply.flags === FETCH_HAS_META);
      assert.equal(reply.meta.length, 32 + 44, 'root digest and the one client of the reply table');
      assert.deepEqual(sha256(reply.meta), Buffer.from(r0.stableDigest!));
      assert.equal(reply.pieces.length, 1, 'the root partition');
    });

    it('fetches from clients and malformed fetch pieces are dropped and counted', () => {
      const c = new Cluster(1, { checkpointInterval: 4, logWindow: 8 }, 1);
      const client = Cluster.auth(1000, [0, 1, 2, 3]);
      const fromClient = client.sealTo(
        { type: MsgType.Fetch, seq: 0, meta: true, requests: [] },
        0,
      );
      assert.deepEqual(c.replicas[0]!.handleMessage(1000, fromClient, 0), []);
      assert.equal(c.replicas[0]!.stats.dropNotReplica, 1);
      const auth = Cluster.auth(1, [0, 1, 2, 3]);
      const junk = auth.sealTo(
        { type: MsgType.Fetch, seq: 0, meta: false, requests: [Uint8Array.of(9, 9, 9)] },
        0,
      );
      c.replicas[0]!.handleMessage(1, junk, 0);
      assert.equal(c.replicas[0]!.stats.dropBadFetch, 1);
    });

    it('a restarted primary re-sends nothing of the view it may have voted in, not even the batches its commit log re-ran', () => {
      // TOCS 2002 s4.3: after a restart a replica sends nothing in views up to the one it was in.
      // Re-sending its re-run slots (large requests and all) every interval once flooded the
      // links and starved the restarted replica's own state transfer.
      const opts = { checkpointInterval: 4, logWindow: 8, largeRequestBytes: 64 };
      const c = new Cluster(1, opts, 1);
      for (let i = 0; i < 7; i++) {
        c.invoke(addOp(i % 4, 1, i >= 4 ? 200 : 0)); // the last three are large requests
        drive(c, 100);
      }
      const mine = c.actions.filter((a) => a.replica === 0).map((a) => a.action);
      const stable = mine.filter((a) => a.kind === 'stable').pop()!;
      assert.equal(stable.seq, 4);
      const after = mine.filter(
        (a): a is Extract<typeof a, { kind: 'committed' }> => a.kind === 'committed' && a.seq > 4,
      );
      assert.equal(after.length, 3);
      assert.ok(
        after.some((a) => a.large.length > 0),
        'a separately sent request among them',
      );

      // Its disk: the stable checkpoint and the commit log after it.
      const old = c.services[0]!.state as PageStore;
      const store = PageStore.restore(
        { size: old.size, pageSize: old.pageSize, fanout: old.fanout },
        4,
        old.populatedPagesAt(4).map((p) => old.pageAt(4, p)),
      );
      const all = [0, 1, 2, 3, ...c.clients.map((x) => x.id)];
      const r0 = new Replica(
        {
          n: 4,
          id: 0,
          ...opts,
          restore: {
            seq: 4,
            replyTable: stable.replyTable,
            proof: stable.proof,
            view: 0,
            initialDigest: c.replicas[0]!.initialDigest,
          },
        },
        new KvService(store),
        Cluster.auth(0, all),
      );
      r0.replayCommitted(after, c.now);
      assert.equal(r0.stats.replayedBatches, 3);
      assert.equal(r0.lastExecuted, 7);

      const sent = new Set<string>();
      for (let t = 10; t <= 3000; t += 10)
        for (const a of r0.tick(c.now + t))
          if (a.kind === 'send') sent.add(MsgType[decodeFrame(a.bytes).body.type]!);
      assert.ok(sent.has('Status'), 'it still reports its progress');
      for (const t of ['PrePrepare', 'Prepare', 'Commit', 'Request'])
        assert.ok(!sent.has(t), `sent a ${t} of view 0: ${[...sent]}`);
    });

    it('a FETCH body round-trips through the codec', () => {
      const { frame, signedLength } = encodeUnsealed(
        2,
        {
          type: MsgType.FetchReply,
          seq: 12,
          flags: FETCH_HAS_META,
          meta: Buffer.alloc(76, 7),
          pieces: [Buffer.alloc(5, 1)],
        },
        1,
      );
      const f = decodeFrame(frame);
      assert.equal(f.signed.length, signedLength);
      assert.ok(f.body.type === MsgType.FetchReply);
      assert.equal(f.body.seq, 12);
      assert.equal(f.body.flags, FETCH_HAS_META);
      assert.deepEqual(Buffer.from(f.body.meta), Buffer.alloc(76, 7));
      assert.deepEqual(
        f.body.pieces.map((p) => Buffer.from(p)),
        [Buffer.alloc(5, 1)],
      );
    });
  });
});
