import { strict as assert } from 'node:assert';
import {
  MAX_FRAME_BYTES,
  MAX_QUOTED_KEY_EPOCHS,
  MsgType,
  NewViewMsg,
  decodeFrame,
  maxNewViewBytes,
  maxViewChangeBytes,
} from '../src';
import { Cluster, Envelope, refreshKeys } from './support/cluster';
import { addOp } from './support/kv';

/**
 * Seq 1 prepares at every backup and commits nowhere (commits are lost), then the primary of
 * view 0 falls silent: the request is prepared, so it must survive into view 1 at seq 1.
 */
function preparedThenPrimarySilent(viewChangeTimeoutMs = 100): { c: Cluster; digest: string } {
  const c = new Cluster(1, { tentative: false, viewChangeTimeoutMs });
  c.filter = (e) => e.bytes[1] !== MsgType.Commit;
  c.invoke(addOp(0, 5));
  c.run();
  for (const i of [1, 2, 3]) assert.ok(c.replicas[i]!.log.get(1)?.prepared, `replica ${i}`);
  assert.equal(c.executed(1).length, 0);
  const digest = c.replicas[1]!.log.get(1)!.pp!.digest.toString('hex');
  c.filter = (e) => e.from !== 0 && e.to !== 0 && !oldCommit(e);
  return { c, digest };
}

/** Commits of view 0 stay lost, so only a view change can complete seq 1. */
function oldCommit(e: Envelope): boolean {
  if (e.bytes[1] !== MsgType.Commit) return false;
  const b = decodeFrame(e.bytes).body;
  return b.type === MsgType.Commit && b.view === 0;
}

function runFor(c: Cluster, ms: number, until: () => boolean): void {
  for (let t = 0; t < ms && !until(); t += 20) {
    c.tick(20);
    c.run();
  }
}

describe('pbft replica: view changes (OSDI 1999 section 4.4)', () => {
  it('carries batch digests, not batches, in VIEW-CHANGE and NEW-VIEW: more batches prepared above the checkpoint than a frame holds change views in frames of a few KiB (a primary crash under load)', () => {
    // 192 clients, rounds of ~900-byte inline requests: more pre-prepares prepared (and
    // committed) above the stable checkpoint than a frame may hold.
    const clients = 192;
    const rounds = Math.ceil((1.1 * MAX_FRAME_BYTES) / (clients * 900));
    const c = new Cluster(1, { tentative: false, viewChangeTimeoutMs: 100 }, clients);
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < clients; i++) c.invoke(addOp(i, 1, 900), false, i);
      c.run();
    }
    for (let i = 0; i < clients; i++) assert.equal(c.results.get(c.client(i).id)!.length, rounds);
    const r1 = c.replicas[1]!;
    let preparedBytes = 0;
    let preparedSlots = 0;
    for (const slot of r1.log.values())
      if (slot.seq > r1.lowWater && slot.prepared) {
        preparedBytes += slot.pp!.frame.length;
        preparedSlots++;
      }
    assert.ok(preparedBytes > MAX_FRAME_BYTES, `${preparedBytes} bytes of batches prepared`);
    const before = r1.lastCommitted;
    let oversize = 0;
    c.filter = (e) => {
      if (e.from === 0 || e.to === 0 || oldCommit(e)) return false;
      if (e.bytes.length > MAX_FRAME_BYTES) oversize++;
      return true;
    };
    c.invoke(addOp(0, 1), false, 0);
    runFor(c, 10_000, () => c.results.get(c.client(0).id)!.length === rounds + 1);
    assert.equal(
      c.results.get(c.client(0).id)!.length,
      rounds + 1,
      'a request after the crash completed',
    );
    const sizes = (type: MsgType) =>
      c.actions
        .filter((a) => a.action.kind === 'send' && a.action.bytes[1] === type)
        .map((a) => (a.action.kind === 'send' ? a.action.bytes.length : 0));
    const viewChanges = sizes(MsgType.ViewChange);
    const newViews = sizes(MsgType.NewView);
    assert.ok(viewChanges.length > 0 && newViews.length > 0);
    // A few hundred bytes per prepared batch in a VIEW-CHANGE, whatever the batch holds (a
    // NEW-VIEW quotes 2f + 1 of them): a small part of the batches' bytes.
    for (const b of [...viewChanges, ...newViews]) {
      assert.ok(b < 4096 + 2048 * preparedSlots, `${b}-byte frame, ${preparedSlots} batches`);
      assert.ok(b < preparedBytes / 16, `${b}-byte frame for ${preparedBytes} bytes of batches`);
    }
    assert.equal(oversize, 0);
    for (const i of [1, 2, 3]) {
      const r = c.replicas[i]!;
      assert.equal(r.view, 1, `replica ${i} view`);
      assert.ok(r.active, `replica ${i} active`);
      assert.equal(r.stats.dropMalformed, undefined, `replica ${i} dropped no frame as malformed`);
      // Every re-proposed body was in the replica's own log.
      assert.equal(r.stats.reproposedBatchMissing, undefined, `replica ${i} missed no body`);
    }
    // The batches of view 0 stay where they were; the new request follows them in view 1.
    const last = r1.lastCommitted;
    assert.ok(last > before);
    for (const i of [2, 3]) assert.equal(c.replicas[i]!.lastCommitted, last);
  });

  /**
   * Seq 1 prepares at two replicas while `lacking` never gets its pre-prepare; then the primary
   * of view 0 falls silent and the view change re-proposes seq 1 by digest only.
   */
  function preparedWithoutBodyAt(lacking: number): { c: Cluster; digest: string } {
    const c = new Cluster(1, { tentative: false, viewChangeTimeoutMs: 100 });
    c.filter = (e) =>
      e.bytes[1] !== MsgType.Commit && !(e.bytes[1] === MsgType.PrePrepare && e.to === lacking);
    c.invoke(addOp(0, 5));
    c.run();
    const others = [1, 2, 3].filter((i) => i !== lacking);
    for (const i of others) assert.ok(c.replicas[i]!.log.get(1)?.prepared, `replica ${i}`);
    assert.equal(c.replicas[lacking]!.log.get(1)?.pp, undefined);
    const digest = c.replicas[others[0]!]!.log.get(1)!.pp!.digest.toString('hex');
    return { c, digest };
  }

  function executedAtSeq1(c: Cluster, i: number): string {
    const ex = c.executed(i).filter((e) => !e.tentative);
    assert.equal(ex.length, 1, `replica ${i} executed one batch`);
    assert.equal(ex[0]!.seq, 1);
    return Buffer.from(ex[0]!.digest).toString('hex');
  }

  it('a backup without the body of a re-proposed batch fetches it (BATCH-FETCH), refuses a body that does not match the digest, and executes the batch at the same seq', () => {
    const { c, digest } = preparedWithoutBodyAt(3);
    let holdBodies = true;
    c.filter = (e) =>
      e.from !== 0 &&
      e.to !== 0 &&
      !oldCommit(e) &&
      !(holdBodies && e.to === 3 && e.bytes[1] === MsgType.PrePrepare);
    const r3 = c.replicas[3]!;
    runFor(c, 5000, () => r3.view === 1 && r3.active);
    assert.equal(r3.stats.reproposedBatchMissing, 1);
    assert.ok(r3.stats.batchFetchSent! >= 1);
    assert.ok(r3.log.get(1)?.header && !r3.log.get(1)?.pp, 'seq 1 known by digest only');
    // A body from a replica is taken only if it hashes to the digest the NEW-VIEW names.
    const wrong = c.replicas[2]!.auth.sealTo(
      { type: MsgType.PrePrepare, view: 1, seq: 1, nondet: Buffer.alloc(8), entries: [] },
      3,
    );
    c.apply(3, r3.handleMessage(2, wrong, c.now));
    assert.equal(r3.stats.dropBatchBodyMismatch, 1);
    assert.equal(r3.log.get(1)?.pp, undefined);
    holdBodies = false;
    runFor(c, 5000, () => c.results.get(c.client().id)!.length > 0);
    assert.equal(c.results.get(c.client().id)!.length, 1, 'the client got its result');
    assert.equal(r3.stats.batchBodyFilled, 1);
    for (const i of [1, 2, 3]) assert.equal(executedAtSeq1(c, i), digest, `replica ${i}`);
  });

  it('a new primary without the body of a batch it must re-propose fetches it and orders it', () => {
    const { c, digest } = preparedWithoutBodyAt(1);
    c.filter = (e) => e.from !== 0 && e.to !== 0 && !oldCommit(e);
    runFor(c, 5000, () => c.results.get(c.client().id)!.length > 0);
    assert.equal(c.results.get(c.client().id)!.length, 1, 'the client got its result');
    const r1 = c.replicas[1]!;
    assert.equal(r1.stats.newViewSent, 1);
    assert.equal(r1.stats.reproposedBatchMissing, 1);
    assert.equal(r1.stats.batchBodyFilled, 1);
    for (const i of [1, 2, 3]) assert.equal(executedAtSeq1(c, i), digest, `replica ${i}`);
  });

  it('a view change long after the batches prepared completes although every replica refreshed its keys since: quoted frames are checked under retired keys too', () => {
    const { c, digest } = preparedThenPrimarySilent();
    for (let r = 0; r < 4; r++) refreshKeys(c, r, 3);
    runFor(c, 5000, () => c.results.get(c.client().id)!.length > 0);
    assert.equal(c.results.get(c.client().id)!.length, 1, 'the client got its result');
    for (const i of [1, 2, 3]) {
      assert.equal(c.replicas[i]!.stats.dropBadViewChange, undefined, `replica ${i}`);
      assert.equal(executedAtSeq1(c, i), digest, `replica ${i}`);
    }
  });

  it('an idle primary fills the checkpoint interval with null batches, so a view change hours later quotes no certificate whose keys are gone', () => {
    const c = new Cluster(1, {
      tentative: false,
      viewChangeTimeoutMs: 100,
      checkpointInterval: 4,
      logWindow: 8,
      idleCheckpointMs: 1000,
    });
    c.invoke(addOp(0, 5));
    runFor(c, 500, () => false);
    for (const r of c.replicas) assert.equal(r.lastCommitted, 1);
    runFor(c, 1500, () => c.replicas.every((r) => r.lowWater === 4));
    assert.equal(c.replicas[0]!.stats.idleCheckpointFill, 1);
    assert.equal(c.replicas[0]!.stats.idleNullBatch, 3, 'seqs 2-4');
    for (const r of c.replicas) assert.equal(r.lowWater, 4, `replica ${r.id} stable at 4`);
    // Long idle: every replica has refreshed its keys beyond the retired ones it keeps.
    for (let r = 0; r < 4; r++) refreshKeys(c, r, MAX_QUOTED_KEY_EPOCHS + 2);
    // Checkpoint proofs are re-sent under current keys every PROOF_REFRESH_INTERVAL_MS.
    runFor(c, 1500, () => false);
    c.filter = (e) => e.from !== 0 && e.to !== 0;
    c.invoke(addOp(0, 1));
    runFor(c, 5000, () => c.results.get(c.client().id)!.length === 2);
    assert.equal(Buffer.from(c.results.get(c.client().id)![1]!).readUInt32BE(0), 6);
    for (const i of [1, 2, 3]) {
      assert.equal(c.replicas[i]!.view, 1);
      assert.equal(c.replicas[i]!.stats.dropBadViewChange, undefined, `replica ${i}`);
    }
  });

  it('a replica whose keys changed since it prepared still sends its VIEW-CHANGE (its own certificate is not refused for MACs made under its old keys) and joins the view on the NEW-VIEW the others vouch for', () => {
    const { c, digest } = preparedThenPrimarySilent(2000);
    const r3 = c.replicas[3]!;
    // More refreshes than the keys kept for quoted frames: as good as a restart.
    refreshKeys(c, 3, MAX_QUOTED_KEY_EPOCHS + 2);
    runFor(c, 5000, () => c.results.get(c.client().id)!.length > 0);
    assert.equal(r3.stats.ownViewChangeInvalid, undefined);
    assert.ok(r3.active && r3.view === 1);
    for (const i of [1, 2, 3]) assert.equal(executedAtSeq1(c, i), digest, `replica ${i}`);
  });

  it('a replica that missed the NEW-VIEW and whose keys changed since adopts it once f + 1 replicas forward it under their current keys', () => {
    // Timeouts long enough that nobody gives up on view 1 while replica 3 catches up.
    const { c, digest } = preparedThenPrimarySilent(2000);
    const r3 = c.replicas[3]!;
    const live = (e: Envelope) => e.from !== 0 && e.to !== 0 && !oldCommit(e);
    c.filter = (e) => live(e) && !(e.to === 3 && e.bytes[1] === MsgType.NewView);
    runFor(c, 5000, () => c.replicas[1]!.active && c.replicas[1]!.view === 1);
    assert.ok(c.replicas[2]!.active && c.replicas[2]!.view === 1);
    assert.ok(!r3.active, 'replica 3 never got the NEW-VIEW');
    // Replica 3 chooses new keys for what is sent to it (as after a restart): every MAC the
    // NEW-VIEW carries for it is now stale (more refreshes than the keys kept for quoted frames).
    refreshKeys(c, 3, MAX_QUOTED_KEY_EPOCHS + 2);
    // One replica's word is not enough.
    c.filter = (e) => live(e) && !(e.from === 2 && e.bytes[1] === MsgType.ForwardedNewView);
    runFor(c, 1000, () => (r3.stats.newViewVouched ?? 0) > 0);
    assert.ok(r3.stats.newViewVouched! >= 1);
    assert.ok(!r3.active);
    c.filter = live;
    runFor(c, 5000, () => r3.active);
    assert.ok(r3.active && r3.view === 1, 'replica 3 entered view 1');
    assert.equal(r3.stats.newViewAcceptedOnVouches, 1);
    runFor(c, 5000, () => c.results.get(c.client().id)!.length > 0);
    assert.equal(executedAtSeq1(c, 3), digest, 'replica 3 runs the re-proposed batch');
  });

  it('a replica left behind while f + 1 peers report progress does not change view alone, even when their last reports are most of a timeout old (a replica busy installing a checkpoint); once they fall silent it does', () => {
    const c = new Cluster(1, { tentative: false, viewChangeTimeoutMs: 1000 });
    const r3 = c.replicas[3]!;
    // Replica 3 hears only STATUS and clients: it knows a request (a large one goes to every
    // replica) that the others execute, and it cannot catch up.
    let statusTo3 = true;
    c.filter = (e) => e.to !== 3 || e.from >= c.n || (statusTo3 && e.bytes[1] === MsgType.Status);
    c.invoke(addOp(0, 1, 2000));
    c.run();
    assert.equal(c.replicas[1]!.lastCommitted, 1);
    const step = () => {
      c.tick(100);
      c.run();
    };
    for (let t = 0; t < 30 && !r3.stats.viewChangeDeferredCatchingUp; t++) step();
    assert.equal(r3.stats.viewChangeDeferredCatchingUp, 1, 'its timer expired, it deferred');
    for (let t = 0; t < 6; t++) step();
    // The next expiry comes 400 ms after the last report it read (300 ms was the old window).
    statusTo3 = false;
    for (let t = 0; t < 5; t++) step();
    assert.equal(r3.stats.viewChangeDeferredCatchingUp, 2);
    assert.ok(r3.active && r3.view === 0, 'still in view 0 with the others');
    // Silent for longer than a timeout: the peers may be gone, so it suspects the primary.
    for (let t = 0; t < 20 && r3.active; t++) step();
    assert.equal(r3.stats.viewChangeStarted, 1);
    for (const i of [0, 1, 2]) assert.ok(c.replicas[i]!.active && c.replicas[i]!.view === 0);
  });

  it('a host that did not run for most of a timeout (ticks 1.5 s apart) is forgiven the stall once per deadline, so messages queued meanwhile are read first; a primary that stays silent is still suspected one timeout later', () => {
    const run = (stallGraceMs: number | undefined) => {
      const c = new Cluster(1, { tentative: false, viewChangeTimeoutMs: 1000, stallGraceMs });
      c.filter = (e) => e.from !== 0; // the primary is silent
      c.invoke(addOp(0, 1, 2000)); // large: every replica has it and awaits its execution
      c.run();
      c.tick(10); // the backups arm their timers
      c.run();
      c.tick(1500); // no tick for 1.5 s: the deadline passed while the host was stalled
      c.run();
      const r1 = c.replicas[1]!;
      const afterStall = r1.stats.viewChangeStarted ?? 0;
      let waited = 0;
      while (r1.view === 0 && waited < 5000) {
        c.tick(20);
        c.run();
        waited += 20;
      }
      return { afterStall, waited, forgiven: r1.stats.viewChangeStallForgiven ?? 0 };
    };
    const strict = run(undefined);
    assert.equal(strict.afterStall, 1, 'without the option the stall itself starts a view change');
    const forgiving = run(200);
    assert.equal(forgiving.afterStall, 0, 'the stall is forgiven');
    assert.equal(forgiving.forgiven, 1);
    // The deadline moved by one timeout (1 s after the first), 500 ms after the stalled tick.
    assert.ok(
      forgiving.waited >= 480 && forgiving.waited <= 540,
      `suspected ${forgiving.waited} ms after`,
    );
  });

  it('drops a stripped PRE-PREPARE outside a VIEW-CHANGE or NEW-VIEW', () => {
    const c = new Cluster(1);
    const stripped = c.replicas[0]!.auth.sealMulticast(
      {
        type: MsgType.PrePrepare,
        view: 0,
        seq: 1,
        nondet: new Uint8Array(0),
        entries: [],
        batch: Buffer.alloc(32, 1),
      },
      4,
    );
    const r1 = c.replicas[1]!;
    c.apply(1, r1.handleMessage(0, stripped, c.now));
    assert.equal(r1.stats.dropStrippedPrePrepare, 1);
    assert.equal(r1.log.get(1)?.pp, undefined);
  });

  it('refuses a configuration whose largest NEW-VIEW would not fit in MAX_VIEW_CHANGE_FRAME_BYTES', () => {
    // The bound depends on n and the log window only; n = 4 and n = 7 fit with room to spare.
    assert.ok(maxNewViewBytes(4, 256, 3, maxViewChangeBytes(4, 256, 2)) < MAX_FRAME_BYTES);
    assert.throws(() => new Cluster(3, { logWindow: 4096 }), /NEW-VIEW may take/);
  });

  it('moves to view 1 when the primary falls silent and executes the prepared request at the same seq', () => {
    const { c, digest } = preparedThenPrimarySilent();
    runFor(c, 5000, () => c.results.get(c.client().id)!.length > 0);
    assert.equal(c.results.get(c.client().id)!.length, 1, 'the client got its result');
    assert.equal(Buffer.from(c.results.get(c.client().id)![0]!).readUInt32BE(0), 5);
    assert.equal(
      c.replicas[1]!.stats.newViewSent,
      1,
      'replica 1, primary of view 1, sent NEW-VIEW',
    );
    for (const i of [1, 2, 3]) {
      const r = c.replicas[i]!;
      assert.equal(r.view, 1, `replica ${i} view`);
      assert.ok(r.active);
      const ex = c.executed(i).filter((e) => !e.tentative);
      assert.equal(ex.length, 1);
      assert.equal(ex[0]!.seq, 1);
      assert.equal(Buffer.from(ex[0]!.digest).toString('hex'), digest, 'same batch at seq 1');
    }
    assert.equal(c.client().view, 1, 'the client follows the new primary');
  });

  it('rejects a NEW-VIEW that drops a prepared request, then accepts the correct one', () => {
    const { c } = preparedThenPrimarySilent();
    const held: Envelope[] = [];
    c.filter = (e) => {
      if (e.from === 0 || e.to === 0 || oldCommit(e)) return false;
      if (e.bytes[1] === MsgType.NewView && e.to === 2) {
        held.push(e);
        return false;
      }
      return true;
    };
    runFor(c, 5000, () => held.length > 0);
    assert.ok(held.length > 0, 'replica 1 sent a NEW-VIEW');
    const real = decodeFrame(held[0]!.bytes).body as NewViewMsg;
    const primary = c.replicas[1]!;
    // Same VIEW-CHANGE proofs, but seq 1 filled with a null request instead of the prepared one.
    const nullPp = primary.auth.sealMulticast(
      { type: MsgType.PrePrepare, view: 1, seq: 1, nondet: new Uint8Array(0), entries: [] },
      4,
    );
    const forged = primary.auth.sealMulticast(
      { type: MsgType.NewView, view: 1, viewChanges: real.viewChanges, prePrepares: [nullPp] },
      4,
    );
    const r2 = c.replicas[2]!;
    c.apply(2, r2.handleMessage(1, forged, c.now));
    assert.equal(r2.stats.dropBadNewView, 1);
    assert.equal(r2.stats.newViewAccepted, undefined);
    // Nor may it leave the prepared request out altogether.
    const empty = primary.auth.sealMulticast(
      { type: MsgType.NewView, view: 1, viewChanges: real.viewChanges, prePrepares: [] },
      4,
    );
    c.apply(2, r2.handleMessage(1, empty, c.now));
    assert.equal(r2.stats.dropBadNewView, 2);
    c.apply(2, r2.handleMessage(1, held[0]!.bytes, c.now));
    assert.equal(r2.stats.newViewAccepted, 1);
    assert.equal(r2.view, 1);
    assert.ok(r2.active);
  });

  it('rejects a NEW-VIEW built on fewer than 2f + 1 VIEW-CHANGE messages', () => {
    const { c } = preparedThenPrimarySilent();
    const held: Envelope[] = [];
    c.filter = (e) => {
      if (e.from === 0 || e.to === 0 || oldCommit(e)) return false;
      if (e.bytes[1] === MsgType.NewView && e.to === 3) {
        held.push(e);
        return false;
      }
      return true;
    };
    runFor(c, 5000, () => held.length > 0);
    const real = decodeFrame(held[0]!.bytes).body as NewViewMsg;
    const primary = c.replicas[1]!;
    const short = primary.auth.sealMulticast(
      { ...real, viewChanges: real.viewChanges.slice(0, 2) },
      4,
    );
    const r3 = c.replicas[3]!;
    c.apply(3, r3.handleMessage(1, short, c.now));
    assert.equal(r3.stats.dropBadNewView, 1);
    assert.equal(r3.stats.newViewAccepted, undefined);
  });
});
