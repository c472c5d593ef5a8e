import { strict as assert } from 'node:assert';
import {
  CLIENT_FULL_RESULT_GRACE_MS,
  ClientCore,
  ClientGroup,
  READ_ALL_AFTER_DISAGREEMENT,
  READ_WIDEN_MIN_MS,
  ReadTargets,
  RttEstimator,
  CLIENT_RETRANSMIT_MAX_MS,
  CLIENT_RETRANSMIT_MS_PER_MIB,
  FIRST_CLIENT_ID,
  HEADER_BYTES,
  MacAuthenticator,
  MsgType,
  REPLY_DIGEST_ONLY,
  REPLY_READ_ONLY,
  REPLY_TENTATIVE,
  decodeFrame,
  encodeUnsealed,
  sha256,
} from '../src';
import { testSessionKey } from '../src/testing';

const ID = FIRST_CLIENT_ID;
const auth = (id: number, peers: number[]) =>
  new MacAuthenticator(
    id,
    peers.filter((p) => p !== id).map((p) => [p, testSessionKey('c', id, p)]),
  );
const replicas = [0, 1, 2, 3];

function reply(from: number, ts: number, result: Uint8Array, flags = 0): Uint8Array {
  const digestOnly = (flags & REPLY_DIGEST_ONLY) !== 0;
  return auth(from, [ID]).sealTo(
    {
      type: MsgType.Reply,
      view: 0,
      timestamp: ts,
      clientId: ID,
      replica: from,
      flags,
      result: digestOnly ? sha256(result) : result,
    },
    ID,
  );
}

function started(readOnly = false): { c: ClientCore; ts: number; to: number[] } {
  const c = new ClientCore({ n: 4, id: ID, initialTimestamp: 10 }, auth(ID, replicas));
  const out = c.start(Buffer.from('op'), readOnly, 0);
  const f = decodeFrame(out.sends[0]!.bytes);
  assert.equal(f.body.type, MsgType.Request);
  return { c, ts: (f.body as { timestamp: number }).timestamp, to: out.sends[0]!.to };
}

const R = Buffer.from('result');
const WRONG = Buffer.from('forged');

describe('pbft client: when a result is accepted (OSDI 1999 sections 4.1, 5.1)', () => {
  it('sends read-write requests to every replica, marked as sent to all (Aardvark), and read-only ones to a quorum of 2f + 1 (from the id mod n), the designated replier among them', () => {
    const rw = started();
    assert.deepEqual(rw.to, [0, 1, 2, 3]);
    const { c } = rw;
    const first = c.tick(10_000).sends[0]!;
    const body = decodeFrame(first.bytes).body;
    assert.ok(body.type === MsgType.Request && body.toAll === true, 'marked, retransmissions too');
    // With requestsToAll off, as PBFT: the primary alone, unmarked.
    const alone = new ClientCore(
      { n: 4, id: ID, initialTimestamp: 10, requestsToAll: false },
      auth(ID, replicas),
    ).start(Buffer.from('op'), false, 0).sends[0]!;
    assert.deepEqual(alone.to, [0]);
    const b = decodeFrame(alone.bytes).body;
    assert.ok(b.type === MsgType.Request && b.toAll === undefined);
    const sets: number[][] = [];
    for (let i = 0; i < 4; i++) {
      const c = new ClientCore({ n: 4, id: ID + i, initialTimestamp: 10 }, auth(ID + i, replicas));
      const s = c.start(Buffer.from('op'), true, 0).sends[0]!;
      const f = decodeFrame(s.bytes);
      assert.ok(f.body.type === MsgType.Request);
      assert.ok(s.to.includes(f.body.replier), 'the full result comes from the read set');
      sets.push(s.to);
    }
    assert.deepEqual(sets, [
      [0, 1, 2],
      [1, 2, 3],
      [2, 3, 0],
      [3, 0, 1],
    ]);
  });

  it('widens a read to the other replicas at once when its whole read set answered without a quorum', () => {
    const { c, ts, to } = started(true);
    assert.deepEqual(to, [0, 1, 2]);
    c.handleMessage(reply(0, ts, R, REPLY_READ_ONLY | REPLY_TENTATIVE));
    c.handleMessage(reply(1, ts, R, REPLY_READ_ONLY | REPLY_TENTATIVE | REPLY_DIGEST_ONLY));
    const out = c.handleMessage(reply(2, ts, WRONG, REPLY_READ_ONLY | REPLY_TENTATIVE));
    assert.deepEqual(
      out.sends.map((x) => x.to),
      [[3]],
    );
    assert.equal(c.stats.readOnlyWidened, 1);
    const done = c.handleMessage(reply(3, ts, R, REPLY_READ_ONLY | REPLY_TENTATIVE));
    assert.deepEqual(done.result, R);
    assert.equal(done.readOnly, true);
    // After a disagreement the next reads go to every replica, as in the paper, for a while.
    for (let i = 0; i < READ_ALL_AFTER_DISAGREEMENT; i++)
      assert.deepEqual(c.readTargets.take(), replicas);
    assert.deepEqual(c.readTargets.take(), [0, 1, 2]);
  });

  it('runs a read as read-write at once, not after a timeout, when every replica answered and no 2f + 1 agree', () => {
    const { c, ts } = started(true);
    c.handleMessage(reply(0, ts, R, REPLY_READ_ONLY | REPLY_TENTATIVE));
    c.handleMessage(reply(1, ts, WRONG, REPLY_READ_ONLY | REPLY_TENTATIVE));
    c.handleMessage(reply(2, ts, R, REPLY_READ_ONLY | REPLY_TENTATIVE | REPLY_DIGEST_ONLY));
    const out = c.handleMessage(reply(3, ts, WRONG, REPLY_READ_ONLY | REPLY_TENTATIVE));
    assert.equal(c.stats.readOnlyRetriedReadWrite, 1);
    const f = decodeFrame(out.sends[0]!.bytes);
    assert.ok(f.body.type === MsgType.Request && !f.body.readOnly && f.body.timestamp > ts);
    assert.deepEqual(out.sends[0]!.to, [0, 1, 2, 3], 'to every replica');
  });

  it('leaves a replica that missed a read out of later reads until it is heard from again', () => {
    const targets = new ReadTargets(4);
    const core = (i: number) =>
      new ClientCore(
        { n: 4, id: ID + i, initialTimestamp: 10, readTargets: targets },
        auth(ID + i, replicas),
      );
    const a = core(0);
    const s = a.start(Buffer.from('op'), true, 0).sends[0]!;
    assert.deepEqual(s.to, [0, 1, 2]);
    const ts = (decodeFrame(s.bytes).body as { timestamp: number }).timestamp;
    a.handleMessage(reply(0, ts, R, REPLY_READ_ONLY | REPLY_TENTATIVE));
    a.handleMessage(reply(1, ts, R, REPLY_READ_ONLY | REPLY_TENTATIVE | REPLY_DIGEST_ONLY));
    // Replica 2 is silent: after the widening delay the read goes to replica 3 as well.
    assert.deepEqual(
      a.tick(READ_WIDEN_MIN_MS).sends.map((x) => x.to),
      [[3]],
    );
    assert.deepEqual(
      a.handleMessage(reply(3, ts, R, REPLY_READ_ONLY | REPLY_TENTATIVE | REPLY_DIGEST_ONLY))
        .result,
      R,
    );
    // The next reads skip replica 2 ...
    assert.deepEqual(targets.take(), [0, 1, 3]);
    assert.deepEqual(core(1).start(Buffer.from('op'), true, 0).sends[0]!.to, [0, 1, 3]);
    // ... until it answers anything; with two suspects no quorum is left: all four.
    targets.heardFrom(2);
    assert.deepEqual(targets.take(), [0, 1, 2]);
    targets.missed(0);
    targets.missed(1);
    assert.deepEqual(targets.take(), [0, 1, 2, 3]);
  });

  it('accepts f + 1 matching committed replies, one of them full', () => {
    const { c, ts } = started();
    assert.equal(c.handleMessage(reply(1, ts, R, REPLY_DIGEST_ONLY)).result, undefined);
    assert.deepEqual(c.handleMessage(reply(0, ts, R)).result, R);
    assert.equal(c.busy, false);
  });

  it('does not accept f matching replies however wrong results the others send', () => {
    const { c, ts } = started();
    assert.equal(c.handleMessage(reply(3, ts, WRONG)).result, undefined);
    assert.equal(c.handleMessage(reply(2, ts, R)).result, undefined);
    assert.deepEqual(c.handleMessage(reply(1, ts, R, REPLY_DIGEST_ONLY)).result, R);
  });

  it('needs 2f + 1 matching tentative replies', () => {
    const { c, ts } = started();
    assert.equal(c.handleMessage(reply(0, ts, R, REPLY_TENTATIVE)).result, undefined);
    assert.equal(
      c.handleMessage(reply(1, ts, R, REPLY_TENTATIVE | REPLY_DIGEST_ONLY)).result,
      undefined,
    );
    assert.deepEqual(
      c.handleMessage(reply(2, ts, R, REPLY_TENTATIVE | REPLY_DIGEST_ONLY)).result,
      R,
    );
  });

  it('counts a wrong reply that comes after the result was accepted, once per replica; late replies that agree skip the MAC check', () => {
    const { c, ts } = started();
    c.handleMessage(reply(1, ts, R, REPLY_DIGEST_ONLY));
    assert.deepEqual(c.handleMessage(reply(0, ts, R)).result, R);
    assert.equal(c.faults.snapshot()[3]!.wrongReply, 0);
    c.handleMessage(reply(2, ts, R, REPLY_DIGEST_ONLY));
    c.handleMessage(reply(3, ts, WRONG, REPLY_DIGEST_ONLY));
    c.handleMessage(reply(3, ts, WRONG));
    const bad = Buffer.from(reply(3, ts, Buffer.from('other'), REPLY_DIGEST_ONLY));
    bad[bad.length - 1] ^= 1;
    c.handleMessage(bad);
    const faults = c.faults.snapshot();
    assert.deepEqual(
      faults.map((f) => f!.wrongReply),
      [0, 0, 0, 1],
    );
    assert.equal(c.stats.lateWrongReply, 1);
    assert.equal(c.stats.dropBadMac, 1, 'a disagreeing late reply is MAC-checked');
  });

  it('waits for a full result when the quorum sent only digests', () => {
    const { c, ts } = started();
    for (const r of [1, 2, 3])
      assert.equal(c.handleMessage(reply(r, ts, R, REPLY_DIGEST_ONLY)).result, undefined);
    assert.deepEqual(c.handleMessage(reply(0, ts, R)).result, R);
  });

  it('ignores malformed replies, replies with a bad MAC and replies for another timestamp', () => {
    const { c, ts } = started();
    const bad = Buffer.from(reply(0, ts, R));
    bad[bad.length - 1] ^= 1;
    c.handleMessage(bad);
    c.handleMessage(reply(1, ts + 1, R));
    c.handleMessage(Buffer.from('junk'));
    assert.equal(c.stats.dropBadMac, 1);
    assert.equal(c.stats.dropStaleReply, 1);
    assert.equal(c.stats.dropMalformed, 1);
    assert.equal(c.busy, true);
  });

  it('refuses a REPLY to a request it never made (another timestamp or client id) on its header, before decoding it or checking a MAC', () => {
    const { c, ts } = started();
    let macChecks = 0;
    const verify = c.auth.verifyFrame.bind(c.auth);
    c.auth.verifyFrame = (...args) => (macChecks++, verify(...args));
    const other = auth(1, [ID + 1]).sealTo(
      {
        type: MsgType.Reply,
        view: 0,
        timestamp: ts,
        clientId: ID + 1,
        replica: 1,
        flags: 0,
        result: R,
      },
      ID + 1,
    );
    for (const bytes of [reply(1, ts + 7, R), reply(2, ts - 3, R), other]) c.handleMessage(bytes);
    assert.equal(c.stats.dropStaleReply, 3);
    assert.equal(macChecks, 0);
    // The reply it waits for is still checked and counted.
    c.handleMessage(reply(1, ts, R));
    assert.equal(macChecks, 1);
  });

  it('asks every replica for a full read-only result (replier -1) when its designated replier sends a wrong one, and designates the next read-set member from then on', () => {
    // Id 1002: read set [2, 3, 0], designated replier 2.
    const c = new ClientCore({ n: 4, id: ID + 2, initialTimestamp: 0 }, auth(ID + 2, replicas));
    const sent = c.start(Buffer.from('op'), true, 0).sends[0]!;
    const req = decodeFrame(sent.bytes).body as { timestamp: number; replier: number };
    assert.deepEqual([sent.to, req.replier], [[2, 3, 0], 2]);
    const r = (from: number, result: Uint8Array, flags = 0) =>
      auth(from, [ID + 2]).sealTo(
        {
          type: MsgType.Reply,
          view: 0,
          timestamp: req.timestamp,
          clientId: ID + 2,
          replica: from,
          flags: flags | REPLY_READ_ONLY | REPLY_TENTATIVE,
          result: flags & REPLY_DIGEST_ONLY ? sha256(result) : result,
        },
        ID + 2,
      );
    c.handleMessage(r(2, WRONG), 0);
    c.handleMessage(r(3, R, REPLY_DIGEST_ONLY), 0);
    // The whole read set answered without 2f + 1 matching: widened to replica 1.
    assert.deepEqual(
      c.handleMessage(r(0, R, REPLY_DIGEST_ONLY), 0).sends.map((x) => x.to),
      [[1]],
    );
    c.handleMessage(r(1, R, REPLY_DIGEST_ONLY), 0);
    // A digest quorum without its full result: after the grace, every replica, in full.
    const again = c.tick(CLIENT_FULL_RESULT_GRACE_MS).sends[0]!;
    assert.deepEqual(again.to, replicas);
    assert.equal((decodeFrame(again.bytes).body as { replier: number }).replier, -1);
    assert.deepEqual(c.handleMessage(r(3, R), 6).result, R);
    const next = decodeFrame(c.start(Buffer.from('op2'), true, 10).sends[0]!.bytes).body;
    assert.equal((next as { replier: number }).replier, 3);
  });

  it('needs 2f + 1 matching read-only replies, widens to every replica, and retries as read-write on timeout', () => {
    const { c, ts } = started(true);
    assert.equal(
      c.handleMessage(reply(0, ts, R, REPLY_READ_ONLY | REPLY_TENTATIVE)).result,
      undefined,
    );
    assert.equal(
      c.handleMessage(reply(1, ts, WRONG, REPLY_READ_ONLY | REPLY_TENTATIVE)).result,
      undefined,
    );
    assert.deepEqual(
      c.tick(READ_WIDEN_MIN_MS).sends.map((x) => x.to),
      [[3]],
    );
    const out = c.tick(1000);
    assert.equal(c.stats.readOnlyRetriedReadWrite, 1);
    const f = decodeFrame(out.sends[0]!.bytes);
    assert.equal(f.body.type === MsgType.Request && f.body.readOnly, false);
    assert.ok(f.body.type === MsgType.Request && f.body.timestamp > ts, 'a fresh timestamp');
  });

  it('retransmits the identical request to every replica with a doubling timeout', () => {
    const c = new ClientCore({ n: 4, id: ID, initialTimestamp: 0 }, auth(ID, replicas));
    const first = c.start(Buffer.from('op'), false, 0).sends[0]!;
    assert.equal(c.tick(100).sends.length, 0, 'not before 150 ms');
    const r1 = c.tick(150).sends[0]!;
    assert.deepEqual(r1.to, replicas);
    assert.deepEqual(Buffer.from(r1.bytes), Buffer.from(first.bytes));
    assert.equal(c.tick(400).sends.length, 0, 'next one after 300 more ms');
    assert.equal(c.tick(450).sends.length, 1);
  });

  it("waits CLIENT_RETRANSMIT_MS_PER_MIB longer per MiB of its process's outstanding requests before retransmitting, beyond the clamp", () => {
    const rtt = new RttEstimator();
    const [a, b] = [ID, ID + 1].map(
      (id) => new ClientCore({ n: 4, id, initialTimestamp: 0, rtt }, auth(id, replicas)),
    );
    const mib = new Uint8Array(2 ** 20);
    const sent = a.start(mib, false, 0).sends[0]!;
    b.start(mib, false, 0);
    const perMib = CLIENT_RETRANSMIT_MS_PER_MIB;
    assert.equal(a.tick(150 + perMib - 1).sends.length, 0, 'its own MiB');
    assert.equal(a.tick(150 + perMib).sends.length, 1);
    assert.equal(b.tick(150 + 2 * perMib - 1).sends.length, 0, 'its own and the MiB ahead');
    assert.equal(b.tick(150 + 2 * perMib).sends.length, 1);
    // A completed request's bytes no longer count.
    const ts = (decodeFrame(sent.bytes).body as { timestamp: number }).timestamp;
    a.handleMessage(reply(0, ts, R), 400);
    a.handleMessage(reply(1, ts, R), 400);
    assert.equal(rtt.outstandingBytes, 2 ** 20);
  });

  it('asks every replica for the full result at once when a digest quorum arrives without it, and designates another replier next', () => {
    const c = new ClientCore({ n: 4, id: ID, initialTimestamp: 0 }, auth(ID, replicas));
    const designated = (bytes: Uint8Array) => {
      const f = decodeFrame(bytes);
      return f.body.type === MsgType.Request ? f.body.replier : -1;
    };
    const first = c.start(Buffer.from('op'), false, 0).sends[0]!;
    const dead = designated(first.bytes);
    const ts = (decodeFrame(first.bytes).body as { timestamp: number }).timestamp;
    const live = replicas.filter((r) => r !== dead);
    assert.equal(
      c.handleMessage(reply(live[0], ts, R, REPLY_TENTATIVE | REPLY_DIGEST_ONLY)).sends.length,
      0,
    );
    assert.equal(
      c.handleMessage(reply(live[1], ts, R, REPLY_TENTATIVE | REPLY_DIGEST_ONLY)).sends.length,
      0,
    );
    const out = c.handleMessage(reply(live[2], ts, R, REPLY_TENTATIVE | REPLY_DIGEST_ONLY));
    assert.equal(out.result, undefined);
    assert.deepEqual(out.sends[0]?.to, replicas, 'a retransmission to all, before any timeout');
    assert.deepEqual(Buffer.from(out.sends[0]!.bytes), Buffer.from(first.bytes));
    assert.deepEqual(c.handleMessage(reply(live[0], ts, R, REPLY_TENTATIVE)).result, R);
    const next = c.start(Buffer.from('op2'), false, 10).sends[0]!;
    assert.notEqual(designated(next.bytes), dead, 'the silent replica is no longer designated');
  });
});

describe('pbft client: a crashed replica after a view change (smoothed completion time inflated)', () => {
  // A view change makes a few requests take seconds; their samples push the smoothed completion
  // time past the retransmission clamp. Every delay derived from it must stay below the
  // retransmission timeout, or the client never finds out which replica is dead and every
  // request waits for a timeout (seen end to end: one second per read with replica 0 killed).
  const slow = () => {
    const rtt = new RttEstimator();
    rtt.srttMs = 3000;
    return rtt;
  };
  /** A client with an inflated smoothed time, one write started at 0: its replier and timestamp. */
  const slowWrite = () => {
    const c = new ClientCore(
      { n: 4, id: ID, initialTimestamp: 0, rtt: slow() },
      auth(ID, replicas),
    );
    const f = decodeFrame(c.start(Buffer.from('op'), false, 0).sends[0]!.bytes);
    assert.ok(f.body.type === MsgType.Request);
    return { c, dead: f.body.replier, ts: f.body.timestamp };
  };
  /** The replier the client designates for its next write. */
  const nextReplier = (c: ClientCore, now: number) => {
    const f = decodeFrame(c.start(Buffer.from('op2'), false, now).sends[0]!.bytes);
    assert.ok(f.body.type === MsgType.Request);
    return f.body.replier;
  };

  it('widens a read whose read set holds a dead replica halfway to the timeout, and leaves the dead one out of the next reads', () => {
    const c = new ClientCore(
      { n: 4, id: ID, initialTimestamp: 0, rtt: slow() },
      auth(ID, replicas),
    );
    const s = c.start(Buffer.from('op'), true, 0).sends[0]!;
    assert.deepEqual(s.to, [0, 1, 2]);
    const ts = (decodeFrame(s.bytes).body as { timestamp: number }).timestamp;
    c.handleMessage(reply(1, ts, R, REPLY_READ_ONLY | REPLY_TENTATIVE), 1);
    c.handleMessage(reply(2, ts, R, REPLY_READ_ONLY | REPLY_TENTATIVE | REPLY_DIGEST_ONLY), 1);
    assert.equal(c.tick(CLIENT_RETRANSMIT_MAX_MS / 2 - 1).sends.length, 0);
    assert.deepEqual(
      c.tick(CLIENT_RETRANSMIT_MAX_MS / 2).sends.map((x) => x.to),
      [[3]],
      'widened before the timeout',
    );
    const done = c.handleMessage(
      reply(3, ts, R, REPLY_READ_ONLY | REPLY_TENTATIVE | REPLY_DIGEST_ONLY),
      CLIENT_RETRANSMIT_MAX_MS / 2 + 1,
    );
    assert.deepEqual(done.result, R);
    assert.equal(c.stats.readOnlyRetriedReadWrite, undefined, 'no read-write retry');
    assert.deepEqual(c.start(Buffer.from('op'), true, 600).sends[0]!.to, [1, 2, 3]);
  });

  it('asks everyone for a full result halfway to the timeout when the designated replier is dead, and designates another from then on', () => {
    const { c, dead, ts } = slowWrite();
    for (const r of replicas.filter((x) => x !== dead))
      c.handleMessage(reply(r, ts, R, REPLY_TENTATIVE | REPLY_DIGEST_ONLY), 1);
    const asked = c.tick(CLIENT_RETRANSMIT_MAX_MS / 2 + 1);
    assert.equal(c.stats.askedAllForFullResult, 1);
    assert.deepEqual(asked.sends[0]!.to, replicas);
    const live = replicas.find((x) => x !== dead)!;
    assert.deepEqual(
      c.handleMessage(reply(live, ts, R, REPLY_TENTATIVE), CLIENT_RETRANSMIT_MAX_MS / 2 + 2).result,
      R,
    );
    assert.notEqual(nextReplier(c, 600), dead);
  });

  it('designates another replier after a retransmission the designated replier never answered', () => {
    const { c, dead, ts } = slowWrite();
    assert.deepEqual(
      c.tick(CLIENT_RETRANSMIT_MAX_MS).sends.map((x) => x.to),
      [replicas],
    );
    for (const r of replicas.filter((x) => x !== dead))
      c.handleMessage(reply(r, ts, R), CLIENT_RETRANSMIT_MAX_MS + 1);
    assert.notEqual(nextReplier(c, 1100), dead);
  });

  it('samples the completion time of a read retried as read-write from the retry, not from the read', () => {
    const rtt = new RttEstimator();
    const c = new ClientCore({ n: 4, id: ID, initialTimestamp: 0, rtt }, auth(ID, replicas));
    c.start(Buffer.from('op'), true, 0);
    c.tick(READ_WIDEN_MIN_MS);
    const retry = c.tick(150).sends[0]!;
    assert.equal(c.stats.readOnlyRetriedReadWrite, 1);
    const ts = (decodeFrame(retry.bytes).body as { timestamp: number }).timestamp;
    c.handleMessage(reply(0, ts, R), 158);
    assert.deepEqual(c.handleMessage(reply(1, ts, R), 160).result, R);
    assert.equal(rtt.srttMs, 10);
  });
});

describe('pbft client: one process, replies batched (ClientGroup, REPLY-BATCH)', () => {
  const ids = [ID, ID + 1, ID + 2];
  function group(): { g: ClientGroup; ts: number[] } {
    const cores = ids.map(
      (id) => new ClientCore({ n: 4, id, initialTimestamp: 10, replyTo: ID }, auth(id, replicas)),
    );
    const ts = cores.map((c) => {
      const f = decodeFrame(c.start(Buffer.from('op'), false, 0).sends[0]!.bytes);
      assert.ok(f.body.type === MsgType.Request);
      assert.equal(f.body.replyTo, c.id === ID ? undefined : ID, 'only the other ids name one');
      return f.body.timestamp;
    });
    return { g: new ClientGroup(4, cores), ts };
  }
  const batch = (from: number, ts: number[], result: Uint8Array, sealFor = ID): Buffer =>
    auth(from, [sealFor]).sealTo(
      {
        type: MsgType.ReplyBatch,
        replica: from,
        group: ID,
        replies: ids.map((clientId, i) => ({
          view: 0,
          timestamp: ts[i]!,
          clientId,
          flags: 0,
          result,
        })),
      },
      sealFor,
    );

  it('checks one MAC per REPLY-BATCH and completes each id with f + 1 matching replies', () => {
    const { g, ts } = group();
    assert.ok(g.handleMessage(batch(0, ts, R)).every((o) => o.out.result === undefined));
    const outs = g.handleMessage(batch(1, ts, R));
    assert.deepEqual(
      outs.map((o) => [o.core.id, o.out.result]),
      ids.map((id) => [id, R]),
    );
    // Late batches for completed requests cost no MAC check.
    assert.deepEqual(g.handleMessage(batch(2, ts, R)), []);
    assert.equal(g.stats.dropReplyBatchStale, 1);
  });

  it("drops a whole batch whose MAC does not check under the group id's key, or that names another replica", () => {
    const { g, ts } = group();
    const flipped = batch(0, ts, R);
    flipped[HEADER_BYTES + 20]! ^= 1;
    assert.deepEqual(g.handleMessage(flipped), []);
    assert.deepEqual(g.handleMessage(batch(1, ts, R, ID + 1)), [], "MAC'd for another id");
    assert.equal(g.stats.dropReplyBatchBadMac, 2);
    const { frame, signedLength } = encodeUnsealed(
      2,
      { type: MsgType.ReplyBatch, replica: 3, group: ID, replies: [] },
      1,
    );
    auth(2, [ID])
      .mac(ID, frame.subarray(0, signedLength))!
      .copy(frame, signedLength + 1);
    assert.deepEqual(g.handleMessage(frame), []);
    assert.equal(g.stats.dropReplyBatchMalformed, 1);
    // No id completed from the dropped batches.
    assert.ok(g.handleMessage(batch(0, ts, WRONG)).every((o) => o.out.result === undefined));
  });
});
