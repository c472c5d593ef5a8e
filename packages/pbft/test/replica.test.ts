import { strict as assert } from 'node:assert';
import {
  FIRST_CLIENT_ID,
  MsgType,
  REPLY_DIGEST_ONLY,
  REPLY_READ_ONLY,
  REPLY_TENTATIVE,
  REQUEST_RELAY_TIMEOUTS,
  decodeFrame,
} from '../src';
import { Cluster, refreshKeys } from './support/cluster';
import { addOp, readOp } from './support/kv';

const CLIENT = FIRST_CLIENT_ID;

function value(result: Uint8Array): number {
  return Buffer.from(result).readUInt32BE(0);
}

function sentTypes(c: Cluster, replica: number): MsgType[] {
  return c.actions
    .filter((a) => a.replica === replica && a.action.kind === 'send')
    .map((a) => (a.action.kind === 'send' ? a.action.bytes[1]! : 0));
}

describe('pbft replica: normal case (OSDI 1999 section 4.2)', () => {
  it('orders a request through pre-prepare, prepare and commit and executes it at seq 1 everywhere', () => {
    const c = new Cluster(1, { tentative: false });
    c.invoke(addOp(1, 5));
    c.run();
    for (let i = 0; i < 4; i++) {
      const ex = c.executed(i);
      assert.equal(ex.length, 1, `replica ${i}`);
      assert.equal(ex[0]!.seq, 1);
      assert.equal(ex[0]!.tentative, false);
    }
    assert.deepEqual(c.results.get(CLIENT)!.map(value), [5]);
    assert.ok(sentTypes(c, 0).includes(MsgType.PrePrepare));
    assert.ok(!sentTypes(c, 0).includes(MsgType.Prepare), 'the primary sends no prepare');
    assert.ok(sentTypes(c, 1).includes(MsgType.Prepare));
  });

  it('works for f = 2 with seven replicas and certificates of five', () => {
    const c = new Cluster(2);
    c.invoke(addOp(0, 1));
    c.run();
    for (let i = 0; i < 7; i++) assert.equal(c.executed(i).length, 1);
    assert.deepEqual(c.results.get(CLIENT)!.map(value), [1]);
  });

  it('makes progress with f silent backups but not with f + 1', () => {
    const ok = new Cluster(1);
    ok.filter = (e) => e.from !== 3 && e.to !== 3;
    ok.invoke(addOp(0, 1));
    ok.run();
    assert.equal(ok.results.get(CLIENT)!.length, 1);
    const stuck = new Cluster(1);
    stuck.filter = (e) => ![2, 3].includes(e.from) && ![2, 3].includes(e.to);
    stuck.invoke(addOp(0, 1));
    stuck.run();
    assert.equal(stuck.executed(0).length, 0, 'no certificate without 2f + 1 replicas');
  });

  it('executes each client request exactly once and re-sends the last reply to a retransmission', () => {
    const c = new Cluster(1);
    c.invoke(addOp(2, 7));
    c.run();
    const frame = c.actions.find((a) => a.replica === 0 && a.action.kind === 'send');
    assert.ok(frame);
    // Replay the client's original request to every replica: no second execution.
    const req = c.client().auth.sealMulticast(
      {
        type: MsgType.Request,
        clientId: CLIENT,
        timestamp: 1,
        readOnly: false,
        replier: -1,
        op: addOp(2, 7),
      },
      4,
    );
    const before = c.actions.length;
    c.post(CLIENT, [0, 1, 2, 3], req);
    c.run();
    for (let i = 0; i < 4; i++) assert.equal(c.executed(i).length, 1);
    assert.ok(c.replicas.every((r) => (r.stats.resendReply ?? 0) === 1));
    assert.ok(c.actions.length > before);
  });

  it('drops requests with a timestamp older than the last executed one', () => {
    const c = new Cluster(1);
    c.invoke(addOp(2, 7));
    c.run();
    c.invoke(addOp(2, 1));
    c.run();
    const old = c.client().auth.sealMulticast(
      {
        type: MsgType.Request,
        clientId: CLIENT,
        timestamp: 1,
        readOnly: false,
        replier: -1,
        op: addOp(2, 1),
      },
      4,
    );
    c.post(CLIENT, [0], old);
    c.run();
    assert.equal(c.replicas[0]!.stats.dropOldTimestamp, 1);
    assert.equal(c.executed(0).length, 2);
  });
});

describe('pbft replica: batched replies to one client process (REPLY-BATCH)', () => {
  function sentTo(c: Cluster, replica: number, to: number, type: MsgType): Uint8Array[] {
    return c.actions.flatMap((a) =>
      a.replica === replica &&
      a.action.kind === 'send' &&
      a.action.to.includes(to) &&
      a.action.bytes[1] === type
        ? [a.action.bytes]
        : [],
    );
  }

  it('answers the requests of one batch from one process in a REPLY-BATCH under the MAC of its first id, and a lone request in a REPLY', () => {
    // One pre-prepare in flight: client 0's request goes alone, the other three wait and share
    // the second batch.
    const c = new Cluster(1, { maxOutstandingPrePrepares: 1 }, 4);
    const group = c.oneClientProcess();
    for (let i = 0; i < 4; i++) c.invoke(addOp(i, 10 + i), false, i);
    c.run();
    for (let i = 0; i < 4; i++)
      assert.deepEqual(c.results.get(FIRST_CLIENT_ID + i)!.map(value), [10 + i], `client ${i}`);
    for (let r = 0; r < 4; r++) {
      const batches = sentTo(c, r, FIRST_CLIENT_ID, MsgType.ReplyBatch);
      assert.equal(batches.length, 1, `replica ${r} sent one REPLY-BATCH`);
      const f = decodeFrame(batches[0]!);
      assert.ok(f.body.type === MsgType.ReplyBatch);
      assert.equal(f.body.group, FIRST_CLIENT_ID);
      assert.deepEqual(
        f.body.replies.map((x) => x.clientId),
        [FIRST_CLIENT_ID + 1, FIRST_CLIENT_ID + 2, FIRST_CLIENT_ID + 3],
      );
      assert.equal(f.macs.length, 1, 'one MAC for the whole batch');
      assert.ok(group.cores[0]!.auth.verifyFrame(r, f.signed, f.macs));
      // Client 0's own request (batch 1, alone) got a REPLY; nobody else got one.
      assert.equal(sentTo(c, r, FIRST_CLIENT_ID, MsgType.Reply).length, 1);
      for (let i = 1; i < 4; i++)
        assert.equal(sentTo(c, r, FIRST_CLIENT_ID + i, MsgType.Reply).length, 0);
    }
  });

  it('sends plain REPLYs when replyTo names a replica or an id it shares no key with', () => {
    for (const replyTo of [1, 4242]) {
      const c = new Cluster(1, { maxOutstandingPrePrepares: 1 }, 3);
      c.oneClientProcess(replyTo);
      for (let i = 0; i < 3; i++) c.invoke(addOp(i, 1), false, i);
      c.run();
      for (let i = 0; i < 3; i++)
        assert.equal(c.results.get(FIRST_CLIENT_ID + i)!.length, 1, `replyTo ${replyTo}`);
      assert.ok(c.replicas.every((r) => (r.stats.replyBatchSent ?? 0) === 0));
    }
  });
});

describe('pbft replica: batching a burst of input (deferPrePrepares, endOfInput)', () => {
  it('puts every request of one burst into one pre-prepare at the end of the burst, not the first alone into a free slot', () => {
    const c = new Cluster(1, {}, 3);
    const primary = c.replicas[0]!;
    primary.deferPrePrepares = true;
    for (let i = 0; i < 3; i++) c.invoke(addOp(i, 1), false, i);
    // The burst: the three requests, as one socket read would hand them over (the backups'
    // copies wait in the queue).
    const burst = c.queue.filter((e) => e.to === 0);
    c.queue.splice(0, c.queue.length, ...c.queue.filter((e) => e.to !== 0));
    assert.equal(burst.length, 3);
    for (const e of burst) c.apply(0, primary.handleMessage(e.from, e.bytes, c.now));
    assert.ok(!sentTypes(c, 0).includes(MsgType.PrePrepare), 'nothing ordered mid-burst');
    assert.ok(primary.hasQueuedRequests);
    c.apply(0, primary.endOfInput(c.now));
    assert.equal(primary.stats.prePrepareSent, 1);
    assert.equal(primary.stats.requestsOrdered, 3);
    assert.ok(!primary.hasQueuedRequests);
    c.run();
    for (let i = 0; i < 3; i++) assert.equal(c.results.get(FIRST_CLIENT_ID + i)!.length, 1);
  });

  it('without the flag orders the first request of the burst at once, alone (the default for the simulator)', () => {
    const c = new Cluster(1, {}, 3);
    for (let i = 0; i < 3; i++) c.invoke(addOp(i, 1), false, i);
    const primary = c.replicas[0]!;
    const first = c.queue.shift()!;
    c.apply(0, primary.handleMessage(first.from, first.bytes, c.now));
    assert.equal(primary.stats.prePrepareSent, 1);
    assert.equal(primary.stats.requestsOrdered, 1);
  });
});

describe('pbft replica: read-write requests sent to every replica (Aardvark, NSDI 2009, section 4.1)', () => {
  const isRequest = (e: { bytes: Uint8Array }) => e.bytes[1] === MsgType.Request;
  const relayed = (c: Cluster) =>
    c.actions.filter(
      (a) => a.replica > 0 && a.action.kind === 'send' && a.action.bytes[1] === MsgType.Request,
    ).length;
  const T = 400;
  const relayAfter = REQUEST_RELAY_TIMEOUTS * T;

  function stepTo(c: Cluster, until: number): void {
    while (c.now < until) {
      c.run();
      c.tick(10);
    }
    c.run();
  }

  it('a backup does not relay the first copy of a request its client sent to all: the primary has its own', () => {
    const c = new Cluster(1);
    c.invoke(addOp(1, 5));
    c.run();
    for (let i = 0; i < 4; i++) assert.equal(c.executed(i).length, 1);
    assert.equal(relayed(c), 0);
  });

  it("a backup relays a request it still awaits REQUEST_RELAY_TIMEOUTS view-change timeouts after it heard it: the primary's copy was lost, and the client's retransmission may come after the per-request timer", () => {
    const c = new Cluster(1, { viewChangeTimeoutMs: T });
    c.filter = (e) => !(e.from === CLIENT && e.to === 0);
    c.invoke(addOp(1, 5));
    stepTo(c, relayAfter - 10);
    assert.equal(c.executed(1).length, 0, 'not ordered: the primary never heard of it');
    assert.equal(relayed(c), 0);
    stepTo(c, relayAfter + 10);
    for (let i = 0; i < 4; i++) assert.equal(c.executed(i).length, 1, `replica ${i}`);
    for (let i = 1; i < 4; i++) assert.equal(c.replicas[i]!.stats.relayAwaited, 1);
    assert.deepEqual(c.results.get(CLIENT)!.map(value), [5]);
  });

  it("a late copy from the client of a request the backup executed already gets no second reply (the first is on its way); the client's retransmission does", () => {
    const c = new Cluster(1);
    const held: { from: number; to: number; bytes: Uint8Array }[] = [];
    c.filter = (e) => {
      if (e.from === CLIENT && e.to === 1 && isRequest(e)) {
        held.push(e);
        return false;
      }
      return true;
    };
    c.invoke(addOp(1, 5));
    c.run();
    assert.equal(c.executed(1).length, 1, 'from the pre-prepare');
    c.filter = () => true;
    const replies = () =>
      c.actions.filter(
        (a) => a.replica === 1 && a.action.kind === 'send' && a.action.bytes[1] === MsgType.Reply,
      ).length;
    const before = replies();
    c.post(CLIENT, [1], held[0]!.bytes);
    c.run();
    assert.equal(c.replicas[1]!.stats.lateRequestCopy, 1);
    assert.equal(replies(), before);
    // Past RETRANSMISSION_INTERVAL_MS, as a client's retransmission is.
    c.now += 10;
    c.post(CLIENT, [1], held[0]!.bytes);
    c.run();
    assert.equal(c.replicas[1]!.stats.resendReply, 1);
    assert.equal(replies(), before + 1);
  });
});

describe('pbft replica: what it refuses (dropped and counted, never thrown)', () => {
  it('drops malformed frames, unknown senders and bad MACs', () => {
    const c = new Cluster(1);
    const r = c.replicas[1]!;
    r.handleMessage(0, Buffer.from('garbage'), 0);
    const stranger = Cluster.auth(4242, [0, 1, 2, 3]).sealMulticast(
      { type: MsgType.Status, view: 0, lastExecuted: 0, stable: 0 },
      4,
    );
    r.handleMessage(4242, stranger, 0);
    const forged = Buffer.from(
      c.replicas[0]!.auth.sealMulticast(
        { type: MsgType.Status, view: 0, lastExecuted: 0, stable: 0 },
        4,
      ),
    );
    forged[forged.length - 1] ^= 1;
    forged[forged.length - 1 - 16 * 2] ^= 1; // replica 1's MAC entry
    r.handleMessage(0, forged, 0);
    assert.equal(r.stats.dropMalformed, 1);
    assert.equal(r.stats.dropUnknownSender, 1);
    assert.equal(r.stats.dropBadMac, 1);
  });

  it('accepts pre-prepares only from the primary of the current view', () => {
    const c = new Cluster(1);
    const pp = (from: number, view: number) =>
      c.replicas[from]!.auth.sealMulticast(
        { type: MsgType.PrePrepare, view, seq: 1, nondet: Buffer.alloc(8), entries: [] },
        4,
      );
    c.replicas[1]!.handleMessage(2, pp(2, 0), 0);
    assert.equal(c.replicas[1]!.stats.dropPrePrepareNotFromPrimary, 1);
    c.replicas[3]!.handleMessage(1, pp(1, 1), 0); // primary of view 1, but we are in view 0
    assert.equal(c.replicas[3]!.stats.dropWrongView, 1);
  });

  it('refuses sequence numbers outside the water marks h < n <= h + L', () => {
    const c = new Cluster(1, { checkpointInterval: 4, logWindow: 8 });
    const prep = (seq: number) =>
      c.replicas[2]!.auth.sealMulticast(
        { type: MsgType.Prepare, view: 0, seq, digest: Buffer.alloc(32) },
        4,
      );
    c.replicas[1]!.handleMessage(2, prep(0), 0);
    c.replicas[1]!.handleMessage(2, prep(9), 0);
    c.replicas[1]!.handleMessage(2, prep(8), 0);
    assert.equal(c.replicas[1]!.stats.dropOutsideWaterMarks, 2);
  });

  it('never accepts two different pre-prepares for the same view and sequence number', () => {
    const c = new Cluster(1);
    const mk = (nondet: number) =>
      c.replicas[0]!.auth.sealMulticast(
        {
          type: MsgType.PrePrepare,
          view: 0,
          seq: 1,
          nondet: Buffer.from([0, 0, 0, 0, 0, 0, 0, nondet]),
          entries: [],
        },
        4,
      );
    c.apply(1, c.replicas[1]!.handleMessage(0, mk(1), 0));
    c.apply(1, c.replicas[1]!.handleMessage(0, mk(2), 0));
    assert.equal(c.replicas[1]!.stats.dropConflictingPrePrepare, 1);
    assert.equal(
      sentTypes(c, 1).filter((t) => t === MsgType.Prepare).length,
      1,
      'one prepare only',
    );
  });

  it('refuses to prepare when its checker rejects the proposed non-deterministic value', () => {
    const c = new Cluster(1);
    c.services[0]!.proposeNondet = () => {
      const b = Buffer.alloc(8);
      b.writeDoubleBE(1e12); // far in the future
      return b;
    };
    c.invoke(addOp(0, 1));
    c.run();
    assert.ok([1, 2, 3].every((i) => c.replicas[i]!.stats.dropNondetRejected === 1));
    assert.equal(c.executed(0).length, 0);
  });

  it('drops a pre-prepare carrying a request whose client MAC does not verify', () => {
    const c = new Cluster(1);
    const req = Buffer.from(
      c.client().auth.sealMulticast(
        {
          type: MsgType.Request,
          clientId: CLIENT,
          timestamp: 5,
          readOnly: false,
          replier: 0,
          op: addOp(0, 1),
        },
        4,
      ),
    );
    req[req.length - 1] ^= 1; // replica 3's entry
    const pp = c.replicas[0]!.auth.sealMulticast(
      {
        type: MsgType.PrePrepare,
        view: 0,
        seq: 1,
        nondet: c.services[0]!.proposeNondet(0),
        entries: [{ inline: req }],
      },
      4,
    );
    c.replicas[3]!.handleMessage(0, pp, 0);
    c.replicas[2]!.handleMessage(0, pp, 0);
    assert.equal(c.replicas[3]!.stats.dropPrePrepareBadRequest, 1);
    assert.equal(c.replicas[2]!.stats.dropPrePrepareBadRequest, undefined);
  });
});

describe('pbft replica: checkpoints and garbage collection (OSDI 1999 section 4.3)', () => {
  it('makes a checkpoint stable on 2f + 1 matching CHECKPOINT messages, moves h and discards the log', () => {
    const c = new Cluster(1, { checkpointInterval: 4, logWindow: 8, maxOutstandingPrePrepares: 1 });
    for (let i = 0; i < 9; i++) {
      c.invoke(addOp(i, 1));
      c.run();
    }
    for (const r of c.replicas) {
      assert.equal(r.lowWater, 8);
      assert.equal(r.highWater, 16);
      assert.equal(r.stats.stableCheckpoints, 2);
      assert.equal(r.stableProof.length >= 3, true);
      assert.deepEqual(r.service.state.checkpoints(), [8]);
    }
    const stable = c.actions.filter((a) => a.action.kind === 'stable');
    assert.equal(stable.length, 8);
    const digests = new Set(
      stable
        .filter((a) => a.action.kind === 'stable' && a.action.seq === 8)
        .map((a) => Buffer.from((a.action as { digest: Uint8Array }).digest).toString('hex')),
    );
    assert.equal(digests.size, 1, 'every replica reaches the same checkpoint digest');
  });

  it('never lets the primary assign a sequence number above the high water mark', () => {
    const c = new Cluster(
      1,
      { checkpointInterval: 2, logWindow: 4, maxOutstandingPrePrepares: 100, maxBatchRequests: 1 },
      8,
    );
    // Backups never answer: nothing commits, so h stays 0 and only H = 4 slots can be used.
    c.filter = (e) => e.from !== 1 && e.from !== 2 && e.from !== 3;
    for (let i = 0; i < 8; i++) c.invoke(addOp(i, 1), false, i);
    c.run();
    assert.equal(c.replicas[0]!.stats.prePrepareSent, 4);
  });
});

describe('pbft replica: seams for view changes (issue 6)', () => {
  it('rolls tentative execution back to the latest checkpoint, state and last-reply table alike', () => {
    const c = new Cluster(1, { checkpointInterval: 4, logWindow: 8, maxOutstandingPrePrepares: 1 });
    for (let i = 0; i < 5; i++) {
      c.invoke(addOp(0, 1));
      c.run();
    }
    const r = c.replicas[2]!;
    assert.equal(r.lastExecuted, 5);
    assert.equal(value(r.service.state.read(0, 4)), 5);
    assert.equal(r.rollback(r.lastExecuted), 4);
    assert.equal(value(r.service.state.read(0, 4)), 4);
    assert.equal(r.lastExecuted, 4);
    // The client's fifth request is no longer recorded: its retransmission is new again.
    const again = c.client().auth.sealMulticast(
      {
        type: MsgType.Request,
        clientId: CLIENT,
        timestamp: 5,
        readOnly: false,
        replier: -1,
        op: addOp(0, 1),
      },
      4,
    );
    r.handleMessage(CLIENT, again, 0);
    assert.equal(r.stats.resendReply, undefined);
  });
});

describe('pbft replica: optimizations (OSDI 1999 section 5)', () => {
  it('batches requests that arrive while the window of pre-prepares is full', () => {
    const c = new Cluster(1, { maxOutstandingPrePrepares: 1 }, 6);
    for (let i = 0; i < 6; i++) c.invoke(addOp(i, 1), false, i);
    c.run();
    assert.equal(
      c.replicas[0]!.stats.prePrepareSent,
      2,
      'one request, then the other five in one batch',
    );
    assert.equal(c.replicas[0]!.stats.requestsOrdered, 6);
    for (let i = 0; i < 6; i++) assert.equal(c.results.get(FIRST_CLIENT_ID + i)!.length, 1);
  });

  it('sends the full result only from the designated replier, digests from the others', () => {
    const c = new Cluster(1, { tentative: false });
    c.invoke(addOp(0, 3));
    const replies: { replica: number; flags: number }[] = [];
    c.filter = (e) => {
      if (e.to === CLIENT) {
        const f = decodeFrame(e.bytes);
        if (f.body.type === MsgType.Reply) replies.push({ replica: f.sender, flags: f.body.flags });
      }
      return true;
    };
    c.run();
    const full = replies.filter((r) => !(r.flags & REPLY_DIGEST_ONLY)).map((r) => r.replica);
    assert.deepEqual(full, [CLIENT % 4]);
    assert.equal(replies.length, 4);
  });

  it('executes tentatively once prepared and replies with tentative replies the client accepts on 2f + 1', () => {
    const c = new Cluster(1, { tentative: true });
    // Drop every COMMIT: nothing commits, yet the client gets its result.
    c.filter = (e) => e.bytes[1] !== MsgType.Commit;
    c.invoke(addOp(0, 9));
    c.run();
    for (let i = 0; i < 4; i++) assert.equal(c.executed(i)[0]?.tentative, true);
    assert.deepEqual(c.results.get(CLIENT)!.map(value), [9]);
    assert.equal(c.replicas[0]!.lastCommitted, 0);
  });

  it('answers read-only requests from every replica without ordering them', () => {
    const c = new Cluster(1);
    c.invoke(addOp(4, 11));
    c.run();
    const flags: number[] = [];
    c.filter = (e) => {
      if (e.to === CLIENT)
        flags.push(
          decodeFrame(e.bytes).body.type === MsgType.Reply
            ? (decodeFrame(e.bytes).body as { flags: number }).flags
            : -1,
        );
      return true;
    };
    c.invoke(readOp(4), true);
    c.run();
    assert.deepEqual(c.results.get(CLIENT)!.map(value), [11, 11]);
    assert.equal(c.executed(0).length, 1, 'the read was not ordered');
    assert.ok(flags.every((f) => (f & REPLY_READ_ONLY) !== 0 && (f & REPLY_TENTATIVE) !== 0));
  });

  it('carries large requests as digests in the pre-prepare; backups wait for the request itself', () => {
    const c = new Cluster(1, { largeRequestBytes: 64 });
    // The counter service answers an unknown op with 0xffffffff: its content does not matter.
    const op = Buffer.alloc(200);
    let ppEntries = -1;
    c.filter = (e) => {
      if (e.bytes[1] === MsgType.PrePrepare) {
        const b = decodeFrame(e.bytes).body;
        if (b.type === MsgType.PrePrepare)
          ppEntries = b.entries.filter((x) => 'digest' in x).length;
      }
      // Hold the client's direct copy to replica 2 back until the end.
      return !(e.from === CLIENT && e.to === 2);
    };
    c.invoke(op);
    c.run();
    assert.equal(ppEntries, 1);
    assert.equal(c.replicas[2]!.stats.waitingForLargeRequest, 1);
    assert.equal(c.results.get(CLIENT)!.length, 1, 'the other three form the certificates');
  });

  it('gives every replica the same agreed non-deterministic value', () => {
    const c = new Cluster(1);
    c.now = 12345;
    c.invoke(addOp(0, 1));
    c.run();
    const times = c.replicas.map((r) =>
      Buffer.from(r.service.state.read(16 * 4, 8)).readDoubleBE(0),
    );
    assert.deepEqual(times, [12345, 12345, 12345, 12345]);
  });
});

describe('pbft replica: held commits (holdCommits)', () => {
  /** Sequence numbers of the batches each replica has seen committed. */
  function committed(c: Cluster, replica: number): number[] {
    return c.actions
      .filter((a) => a.replica === replica && a.action.kind === 'committed')
      .map((a) => (a.action.kind === 'committed' ? a.action.seq : 0));
  }
  function commitsSent(c: Cluster, replica: number): number {
    return sentTypes(c, replica).filter((t) => t === MsgType.Commit).length;
  }

  it('holds the COMMIT of the only batch in flight: the client has its tentative result, the batch stays uncommitted', () => {
    const c = new Cluster(1, { holdCommits: true });
    c.invoke(addOp(1, 5));
    c.run();
    assert.deepEqual(c.results.get(CLIENT)!.map(value), [5], '2f + 1 tentative replies');
    for (let i = 0; i < 4; i++) {
      assert.equal(commitsSent(c, i), 0, `replica ${i} sent no COMMIT`);
      assert.deepEqual(committed(c, i), [], `replica ${i}`);
      assert.equal(c.replicas[i]!.stats.commitHeld, 1);
    }
  });

  it('sends a held COMMIT right before its next message to the replicas, so both leave in one write', () => {
    const c = new Cluster(1, { holdCommits: true });
    c.invoke(addOp(1, 5));
    c.run();
    c.invoke(addOp(1, 2));
    c.run();
    assert.deepEqual(c.results.get(CLIENT)!.map(value), [5, 7]);
    for (let i = 0; i < 4; i++) {
      assert.deepEqual(committed(c, i), [1], `replica ${i} committed batch 1, holds batch 2`);
      const types = sentTypes(c, i);
      const at = types.indexOf(MsgType.Commit);
      // The primary's next message is its PRE-PREPARE, a backup's its PREPARE.
      const next = i === 0 ? MsgType.PrePrepare : MsgType.Prepare;
      assert.equal(types[at + 1], next, `replica ${i}: the held commit, then its next message`);
    }
  });

  it('sends held commits at the next tick when no batch follows', () => {
    const c = new Cluster(1, { holdCommits: true });
    c.invoke(addOp(1, 5));
    c.run();
    c.tick(10);
    c.run();
    for (let i = 0; i < 4; i++) assert.deepEqual(committed(c, i), [1], `replica ${i}`);
  });

  it('releases held commits when a read-only request waits for the tentative batch to commit', () => {
    const c = new Cluster(1, { holdCommits: true });
    c.invoke(addOp(1, 5));
    c.run();
    c.invoke(readOp(1), true);
    c.run();
    assert.deepEqual(c.results.get(CLIENT)!.map(value), [5, 5], 'answered without a tick');
    for (let i = 0; i < 4; i++) assert.deepEqual(committed(c, i), [1], `replica ${i}`);
  });

  it('sends a COMMIT at once while a later batch is in flight (a full window would otherwise wait for the tick)', () => {
    const c = new Cluster(1, { holdCommits: true }, 2);
    c.invoke(addOp(1, 1), false, 0);
    c.invoke(addOp(2, 1), false, 1);
    c.run();
    for (let i = 0; i < 4; i++) {
      assert.deepEqual(committed(c, i), [1], `replica ${i}: batch 1 committed, batch 2 held`);
      assert.equal(c.replicas[i]!.stats.commitHeld, 1, `replica ${i}`);
    }
  });
});

describe('pbft replica: progress under loss (retransmission)', () => {
  it('recovers a lost COMMIT round through STATUS and re-sends', () => {
    const c = new Cluster(1, { tentative: false });
    let dropped = 0;
    c.filter = (e) => {
      if (e.to === 3 && e.bytes[1] === MsgType.Commit && dropped < 3) {
        dropped++;
        return false;
      }
      return true;
    };
    c.invoke(addOp(0, 1));
    c.run();
    assert.equal(c.replicas[3]!.lastCommitted, 0);
    c.tick(1000);
    c.run();
    assert.equal(c.replicas[3]!.lastCommitted, 1);
  });

  it('a replica whose keys changed while it lagged (a restart) catches up from the re-sent slots: the primary re-seals its pre-prepares and each replica its prepares under the current keys', () => {
    const c = new Cluster(1, { tentative: false });
    const r3 = c.replicas[3]!;
    c.filter = (e) => e.from !== 3 && e.to !== 3;
    for (let i = 0; i < 5; i++) {
      c.invoke(addOp(0, 1));
      c.run();
    }
    assert.equal(c.replicas[1]!.lastCommitted, 5);
    assert.equal(r3.lastCommitted, 0);
    // New keys for everything sent to replica 3: the frames the others keep (the primary's
    // pre-prepares, their own prepares) carry MACs for it that no longer check.
    refreshKeys(c, 3, 2);
    c.filter = () => true;
    for (let t = 0; t < 40 && r3.lastCommitted < 5; t++) {
      c.tick(50);
      c.run();
    }
    assert.equal(r3.lastCommitted, 5, JSON.stringify(r3.stats));
    assert.equal(r3.stats.stateTransferStarted, undefined, 'by messages, not state transfer');
  });

  it('client retransmits to all replicas after its timeout when the primary never got the request', () => {
    const c = new Cluster(1);
    let first = true;
    c.filter = (e) => {
      if (e.from === CLIENT && first) {
        first = false;
        return false;
      }
      return true;
    };
    c.invoke(addOp(0, 1));
    c.run();
    assert.equal(c.results.get(CLIENT)!.length, 0);
    c.tick(1000);
    c.run();
    assert.equal(c.results.get(CLIENT)!.length, 1);
    assert.equal(c.client().stats.retransmit, 1);
  });
});
