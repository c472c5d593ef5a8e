import { strict as assert } from 'node:assert';
import { MAX_FRAME_BYTES, MsgType, NewViewMsg, decodeFrame, maxFrameBytes } from '../src';
import { Cluster, Envelope } from './support/cluster';
import { addOp } from './support/kv';

/**
 * Seq 1 prepares at every backup and commits nowhere (commits are lost), then the primary of
 * view 0 falls silent: the request is prepared, so it must survive into view 1 at seq 1.
 */
function preparedThenPrimarySilent(): { c: Cluster; digest: string } {
  const c = new Cluster(1, { tentative: false, viewChangeTimeoutMs: 100 });
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
  it('carries a VIEW-CHANGE and NEW-VIEW bigger than MAX_FRAME_BYTES when many full batches prepared above the checkpoint (a primary crash under load)', () => {
    // 192 clients, four rounds of ~900-byte inline requests: about 760 KiB of pre-prepares
    // prepared (and committed) above the stable checkpoint, more than a normal frame may hold.
    const clients = 192;
    const c = new Cluster(1, { tentative: false, viewChangeTimeoutMs: 100 }, clients);
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < clients; i++) c.invoke(addOp(i, 1, 900), false, i);
      c.run();
    }
    for (let i = 0; i < clients; i++) assert.equal(c.results.get(c.client(i).id)!.length, 4);
    assert.ok(c.replicas[1]!.log.size > 2, 'several batches prepared at replica 1');
    const before = c.replicas[1]!.lastCommitted;
    // Every frame on the wire is checked against the limit of its type, as the TCP transport does.
    let oversizeNormal = 0;
    c.filter = (e) => {
      if (e.from === 0 || e.to === 0 || oldCommit(e)) return false;
      if (e.bytes.length > maxFrameBytes(e.bytes[1])) oversizeNormal++;
      return true;
    };
    c.invoke(addOp(0, 1), false, 0);
    runFor(c, 10_000, () => c.results.get(c.client(0).id)!.length === 5);
    assert.equal(c.results.get(c.client(0).id)!.length, 5, 'a request after the crash completed');
    const big = c.actions.filter(
      (a) =>
        a.action.kind === 'send' &&
        a.action.bytes[1] === MsgType.ViewChange &&
        a.action.bytes.length > MAX_FRAME_BYTES,
    );
    assert.ok(big.length > 0, 'some VIEW-CHANGE exceeded MAX_FRAME_BYTES');
    assert.equal(oversizeNormal, 0);
    for (const i of [1, 2, 3]) {
      const r = c.replicas[i]!;
      assert.equal(r.view, 1, `replica ${i} view`);
      assert.ok(r.active, `replica ${i} active`);
      assert.equal(r.stats.dropMalformed, undefined, `replica ${i} dropped no frame as malformed`);
    }
    // The batches of view 0 stay where they were; the new request follows them in view 1.
    const last = c.replicas[1]!.lastCommitted;
    assert.ok(last > before);
    for (const i of [2, 3]) assert.equal(c.replicas[i]!.lastCommitted, last);
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
