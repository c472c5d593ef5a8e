import { strict as assert } from 'node:assert';
import {
  Action,
  MAX_HELD_SENDS,
  MsgType,
  PersistedCert,
  Replica,
  ReplicaNode,
  Transport,
  decodeFrame,
  decodeRestorePoint,
  encodeRestorePoint,
} from '../src';
import { Cluster } from './support/cluster';
import { KvService, addOp, readOp } from './support/kv';

const KEY = 3;

function typeOf(bytes: Uint8Array): MsgType | undefined {
  try {
    return decodeFrame(bytes).body.type;
  } catch {
    return undefined;
  }
}

function drive(c: Cluster, ms: number): void {
  for (let t = 0; t < ms; t += 10) {
    c.run();
    c.tick(10);
  }
  c.run();
}

function prepared(c: Cluster, replica: number): PersistedCert[] {
  return c.actions
    .filter((a) => a.replica === replica && a.action.kind === 'prepared')
    .map((a) => a.action as Extract<Action, { kind: 'prepared' }>);
}

/**
 * The cluster of `c` restarted: every replica from its persisted prepared certificates (with
 * `withLog`) and nothing else, the same client carrying on.
 */
function restarted(c: Cluster, withLog: boolean): Cluster {
  const d = new Cluster(1, opts);
  for (let i = 0; i < c.n; i++) {
    d.services[i] = new KvService();
    d.replicas[i] = new Replica(
      {
        n: c.n,
        id: i,
        holdCommits: false,
        idleCheckpointMs: 0,
        ...opts,
        rejoinAfterView: c.replicas[i]!.view,
        prepared: withLog ? prepared(c, i) : [],
        logIntact: withLog,
      },
      d.services[i]!,
      Cluster.auth(i, [0, 1, 2, 3, c.client().id]),
    );
  }
  d.clients[0] = c.client();
  d.results.set(c.client().id, []);
  return d;
}

const opts = { viewChangeTimeoutMs: 100 };

/** A cluster where add(KEY, 7) is acknowledged on 2f + 1 tentative replies and commits nowhere. */
function acknowledgedTentatively(): Cluster {
  const c = new Cluster(1, opts);
  // No COMMIT arrives anywhere.
  c.filter = (e) => e.to >= c.n || typeOf(e.bytes) !== MsgType.Commit;
  c.invoke(addOp(KEY, 7));
  c.run();
  assert.equal(c.results.get(c.client().id)!.length, 1, 'acknowledged (tentatively)');
  return c;
}

describe('durability: the prepared certificate is the durable point of an operation', () => {
  it('hands the host the prepared certificate before the COMMIT and the tentative reply that depend on it', () => {
    const c = new Cluster(1);
    c.invoke(addOp(KEY, 5));
    c.run();
    assert.equal(c.results.get(c.client().id)!.length, 1, 'the client has its result');
    for (let r = 0; r < c.n; r++) {
      const mine = c.actions.filter((a) => a.replica === r).map((a) => a.action);
      const cert = mine.findIndex((a) => a.kind === 'prepared');
      const commit = mine.findIndex((a) => a.kind === 'send' && typeOf(a.bytes) === MsgType.Commit);
      const reply = mine.findIndex((a) => a.kind === 'send' && typeOf(a.bytes) === MsgType.Reply);
      assert.ok(cert >= 0, `replica ${r} persisted a certificate`);
      assert.ok(cert < commit, `replica ${r}: certificate before its COMMIT`);
      assert.ok(cert < reply, `replica ${r}: certificate before its reply`);
      const p = mine[cert] as Extract<Action, { kind: 'prepared' }>;
      assert.equal(p.seq, 1);
      assert.equal(p.prepares.length, 2, '2f prepares');
    }
  });

  it('after every replica crashed with an operation executed only tentatively, the restarted cluster re-proposes it from the persisted certificates (OSDI 1999 section 4.4 with TOCS 2002 section 5)', () => {
    const c = acknowledgedTentatively();
    assert.ok(
      c.replicas.every((r) => r.lastCommitted === 0),
      'committed nowhere',
    );

    const restart = (withLog: boolean): Cluster => {
      const d = restarted(c, withLog);
      // The same client carries on: its next request sets the view change going.
      d.invoke(readOp(KEY), false);
      drive(d, 3000);
      return d;
    };

    const d = restart(true);
    assert.ok(
      d.replicas.every((r) => !r.recovering),
      'an intact log makes no replica recovering',
    );
    const read = d.results.get(c.client().id)!;
    assert.equal(read.length, 1, 'the restarted cluster answers');
    assert.equal(Buffer.from(read[0]!).readUInt32BE(0), 7, 'the acknowledged add survived');
    for (let i = 0; i < d.n; i++) assert.equal(d.replicas[i]!.lastCommitted, 2);

    // Without the certificates, as before they were kept: the acknowledged add is gone.
    const lost = restart(false);
    const r = lost.results.get(c.client().id)!;
    assert.equal(r.length, 1);
    assert.equal(Buffer.from(r[0]!).readUInt32BE(0), 0, 'lost without the log');
  });

  it('a replica restarted with a prepared certificate above what it committed answers no read-only request until that batch commits: its client may hold the result already (a read of the state before it would undo an acknowledged write)', () => {
    const c = acknowledgedTentatively();
    const d = restarted(c, true);
    d.invoke(readOp(KEY), true);
    d.run();
    assert.equal(
      d.results.get(c.client().id)!.length,
      0,
      'no replica answered from before the add',
    );
    // The read goes read-write after its timeout, which sets the view change going.
    drive(d, 3000);
    const read = d.results.get(c.client().id)!;
    assert.equal(read.length, 1);
    assert.equal(Buffer.from(read[0]!).readUInt32BE(0), 7);
  });

  it('restore points keep the last results, so a client whose reply was lost in a restart of every replica still gets it in full; older restore points without them still parse', () => {
    const base = {
      seq: 128,
      replyTable: new Uint8Array(0),
      proof: [Uint8Array.of(1, 2, 3)],
      initialDigest: new Uint8Array(32).fill(9),
    };
    const results = [{ clientId: 1000, result: Uint8Array.of(5, 6, 7) }];
    const back = decodeRestorePoint(encodeRestorePoint({ ...base, results }))!;
    assert.deepEqual(back.results, results);
    assert.deepEqual(back.initialDigest, base.initialDigest);
    const old = decodeRestorePoint(encodeRestorePoint(base))!;
    assert.equal(old.results, undefined);
    assert.deepEqual(old.proof, base.proof);
    const torn = encodeRestorePoint({ ...base, results }).subarray(0, -1);
    assert.equal(decodeRestorePoint(torn), undefined);
  });
});

describe('ReplicaNode: nothing that follows a prepared certificate leaves before the host made it durable', () => {
  function fakeReplica(script: Action[][]): Replica {
    return {
      deferPrePrepares: false,
      hasQueuedRequests: false,
      handleMessage: () => script.shift() ?? [],
      tick: () => [],
      endOfInput: () => [],
    } as unknown as Replica;
  }
  function fakeTransport(sent: Uint8Array[]): Transport & { deliver(): void } {
    let cb: ((from: number, b: Uint8Array) => void) | undefined;
    return {
      ids: [0],
      send: (_to: number, b: Uint8Array) => sent.push(b),
      onMessage: (f: (from: number, b: Uint8Array) => void) => (cb = f),
      close: async () => {},
      deliver: () => cb!(1, Uint8Array.of(0)),
    } as unknown as Transport & { deliver(): void };
  }
  const cert = (seq: number): Action => ({
    kind: 'prepared',
    seq,
    view: 0,
    prePrepare: Uint8Array.of(seq),
    prepares: [],
    large: [],
  });
  const send = (b: number): Action => ({ kind: 'send', to: [1], bytes: Uint8Array.of(b) });

  it('holds later sends (of this input and of later ones) until the write resolves, in order, with writes started at once for group commit', async () => {
    const sent: Uint8Array[] = [];
    const writes: { seq: number; done: () => void }[] = [];
    const t = fakeTransport(sent);
    const node = new ReplicaNode(
      fakeReplica([
        [send(1), cert(1), send(2)],
        [cert(2), send(3)],
      ]),
      t,
      {
        onAction: (a) => {
          if (a.kind !== 'prepared') return;
          return new Promise<void>((done) => writes.push({ seq: a.seq, done }));
        },
      },
    );
    t.deliver();
    t.deliver();
    assert.deepEqual(
      sent.map((b) => b[0]),
      [1],
      'only what came before the first certificate',
    );
    assert.deepEqual(
      writes.map((w) => w.seq),
      [1, 2],
      'both writes asked for at once',
    );
    writes[0]!.done();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(
      sent.map((b) => b[0]),
      [1, 2],
    );
    writes[1]!.done();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(
      sent.map((b) => b[0]),
      [1, 2, 3],
    );
    await node.stop();
  });

  it('holds at most MAX_HELD_SENDS sends behind a stalled write; the others are dropped and counted, as a lossy network would', async () => {
    const sent: Uint8Array[] = [];
    const t = fakeTransport(sent);
    let done: (() => void) | undefined;
    const burst = Array.from({ length: MAX_HELD_SENDS + 10 }, () => send(7));
    const node = new ReplicaNode(fakeReplica([[cert(1), ...burst]]), t, {
      onAction: (a) => (a.kind === 'prepared' ? new Promise<void>((r) => (done = r)) : undefined),
    });
    t.deliver();
    assert.equal(node.heldSendsDropped, 10);
    done!();
    await new Promise((r) => setImmediate(r));
    assert.equal(sent.length, MAX_HELD_SENDS);
    await node.stop();
  });

  it('a failed write fences the node: what waited for it, and everything later, is never sent', async () => {
    const sent: Uint8Array[] = [];
    const t = fakeTransport(sent);
    let failed: Error | undefined;
    const node = new ReplicaNode(fakeReplica([[cert(1), send(2)], [send(3)]]), t, {
      onAction: (a) => (a.kind === 'prepared' ? Promise.reject(new Error('ENOSPC')) : undefined),
      onPersistFailure: (e) => (failed = e),
    });
    t.deliver();
    await new Promise((r) => setImmediate(r));
    t.deliver();
    assert.equal(failed?.message, 'ENOSPC');
    assert.equal(node.fenced?.message, 'ENOSPC');
    assert.deepEqual(sent, []);
    await node.stop();
  });

  it('a synchronous write of the host that throws (the view file before a VIEW-CHANGE) fences the node before the sends that follow it', async () => {
    const sent: Uint8Array[] = [];
    const t = fakeTransport(sent);
    let failed: Error | undefined;
    const view: Action = { kind: 'view', view: 1 };
    const node = new ReplicaNode(fakeReplica([[send(1), view, send(2)], [send(3)]]), t, {
      onAction: (a) => {
        if (a.kind === 'view') throw new Error('EIO');
      },
      onPersistFailure: (e) => (failed = e),
    });
    t.deliver();
    t.deliver();
    assert.equal(failed?.message, 'EIO');
    assert.deepEqual(
      sent.map((b) => b[0]),
      [1],
      'the VIEW-CHANGE after the failed view write never leaves',
    );
    await node.stop();
  });

  it('fence() from the host (a checkpoint or key write failed) stops every later send, once', async () => {
    const sent: Uint8Array[] = [];
    const t = fakeTransport(sent);
    const failures: Error[] = [];
    const node = new ReplicaNode(fakeReplica([[send(1)], [send(2)]]), t, {
      onPersistFailure: (e) => failures.push(e),
    });
    t.deliver();
    node.fence(new Error('ENOSPC'));
    node.fence(new Error('again'));
    t.deliver();
    assert.deepEqual(
      sent.map((b) => b[0]),
      [1],
    );
    assert.deepEqual(
      failures.map((e) => e.message),
      ['ENOSPC'],
    );
    await node.stop();
  });
});

describe('restart liveness: checkpoints become stable after restarts that left the replicas apart', () => {
  const small = { checkpointInterval: 4, logWindow: 8, stateTransferDelayMs: 200 };

  function body(bytes: Uint8Array): ReturnType<typeof decodeFrame>['body'] | undefined {
    try {
      return decodeFrame(bytes).body;
    } catch {
      return undefined;
    }
  }

  it('re-sends its CHECKPOINT votes until the checkpoint is stable: votes lost once (a restart re-runs its commit log before its peers listen) do not leave the log window full for good', () => {
    const c = new Cluster(1, small);
    let lose = true;
    c.filter = (e) => !(lose && typeOf(e.bytes) === MsgType.Checkpoint);
    for (let i = 0; i < 4; i++) {
      c.invoke(addOp(KEY, 1));
      c.run();
      c.tick(10);
      c.run();
    }
    assert.ok(c.replicas.every((r) => r.lastCommitted >= 4 && r.lowWater === 0));
    lose = false;
    drive(c, 1200);
    assert.deepEqual(
      c.replicas.map((r) => r.lowWater),
      [4, 4, 4, 4],
    );
    assert.ok((c.replicas[0]!.stats.checkpointVoteResent ?? 0) > 0);
  });

  it('f + 1 matching votes for a checkpoint at the end of its log window make a replica fetch that state and vote for it (the others committed further before every replica restarted)', () => {
    const c = new Cluster(1, small);
    // Replica 3 hears nothing: the others go on to seq 8, the end of its window.
    c.filter = (e) => e.to !== 3;
    for (let i = 0; i < 8; i++) {
      c.invoke(addOp(KEY, 1));
      drive(c, 20);
    }
    assert.ok(c.replicas.slice(0, 3).every((r) => r.lastCommitted >= 8));
    assert.equal(c.replicas[3]!.lastExecuted, 0);
    // Now only two votes reach it, those of replicas 1 and 2 for checkpoint 8, and state transfer.
    c.filter = (e) => {
      if (e.to !== 3) return true;
      const b = body(e.bytes);
      if (b?.type === MsgType.FetchReply) return true;
      return b?.type === MsgType.Checkpoint && b.seq === 8 && (e.from === 1 || e.from === 2);
    };
    drive(c, 1500);
    const r3 = c.replicas[3]!;
    assert.equal(r3.stats.behindOnWeakCheckpoint, 1);
    assert.equal(r3.stats.stateTransferDone, 1);
    assert.equal(r3.lastExecuted, 8);
    assert.equal(r3.lowWater, 8, 'its own vote made the third');
    assert.deepEqual(r3.stableDigest, c.replicas[1]!.stableDigest);
  });
});
