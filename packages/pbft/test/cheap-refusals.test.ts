import { strict as assert } from 'node:assert';
import {
  FIRST_CLIENT_ID,
  MsgType,
  RETRANSMISSION_INTERVAL_MS,
  RETRANSMISSION_MAX_INTERVAL_MS,
  type Replica,
} from '../src';
import { Cluster } from './support/cluster';
import { addOp } from './support/kv';

const CLIENT = FIRST_CLIENT_ID;

/** Counts the MAC checks `r` makes from now on. */
function countMacChecks(r: Replica): { checks: number } {
  const seen = { checks: 0 };
  const verify = r.auth.verifyFrame.bind(r.auth);
  r.auth.verifyFrame = (...args) => {
    seen.checks++;
    return verify(...args);
  };
  return seen;
}

/** The first frame of `type` replica `from` sent. */
function sentBy(c: Cluster, from: number, type: MsgType): Uint8Array {
  for (const a of c.actions)
    if (a.replica === from && a.action.kind === 'send' && a.action.bytes[1] === type)
      return a.action.bytes;
  throw new Error(`replica ${from} sent no frame of type ${type}`);
}

/** The client's read-write request `op` at `timestamp`, designating replica 0, sealed for all. */
function request(c: Cluster, timestamp: number, op: Uint8Array): Buffer {
  return Buffer.from(
    c
      .client()
      .auth.sealMulticast(
        { type: MsgType.Request, clientId: CLIENT, timestamp, readOnly: false, replier: 0, op },
        4,
      ),
  );
}

/** A cluster that executed the client's `ops`, one after the other. */
function executed(...ops: Uint8Array[]): Cluster {
  const c = new Cluster(1);
  for (const op of ops) {
    c.invoke(op);
    c.run();
  }
  return c;
}

describe('pbft replica: cheap refusals before costly work (Aardvark, Clement et al. NSDI 2009)', () => {
  it("refuses a PRE-PREPARE from a replica that is not its view's primary on its header: no MAC checked, its batch never hashed", () => {
    const c = new Cluster(1);
    const r = c.replicas[1]!;
    const macs = countMacChecks(r);
    // A junk entry: hashing the batch would have found it malformed (dropMalformed).
    const junk = c.replicas[2]!.auth.sealMulticast(
      {
        type: MsgType.PrePrepare,
        view: 0,
        seq: 1,
        nondet: Buffer.alloc(8),
        entries: [{ inline: Buffer.from('not a request') }],
      },
      4,
      Buffer.alloc(32), // what the MACs cover: no batch digest exists
    );
    r.handleMessage(2, junk, 0);
    assert.equal(r.stats.dropPrePrepareNotFromPrimary, 1);
    assert.equal(r.stats.dropMalformed, undefined, 'the batch was not hashed');
    assert.equal(macs.checks, 0);
  });

  it('refuses frames of another view and sequence numbers outside h < n <= h + L on their header (OSDI 1999 section 4.2)', () => {
    const c = new Cluster(1, { checkpointInterval: 4, logWindow: 8 });
    const r = c.replicas[1]!;
    const macs = countMacChecks(r);
    const prepare = (view: number, seq: number) =>
      c.replicas[2]!.auth.sealMulticast(
        { type: MsgType.Prepare, view, seq, digest: Buffer.alloc(32) },
        4,
      );
    const prePrepare = (view: number, seq: number) =>
      c.replicas[view % 4]!.auth.sealMulticast(
        { type: MsgType.PrePrepare, view, seq, nondet: Buffer.alloc(8), entries: [] },
        4,
      );
    r.handleMessage(2, prepare(7, 1), 0);
    r.handleMessage(0, prePrepare(4, 1), 0);
    r.handleMessage(2, prepare(0, 9), 0);
    r.handleMessage(0, prePrepare(0, 9), 0);
    r.handleMessage(2, prepare(0, 0), 0);
    assert.equal(r.stats.dropWrongView, 2);
    assert.equal(r.stats.dropOutsideWaterMarks, 3);
    assert.equal(macs.checks, 0);
    // Within the window the same frames are checked and taken as before.
    r.handleMessage(2, prepare(0, 8), 0);
    assert.equal(macs.checks, 1);
    assert.equal(r.stats.dropOutsideWaterMarks, 3);
  });

  it('refuses a replayed PRE-PREPARE identical to the one its slot holds after comparing bytes, without checking a MAC', () => {
    const c = executed(addOp(1, 5));
    const pp = sentBy(c, 0, MsgType.PrePrepare);
    const r = c.replicas[1]!;
    const macs = countMacChecks(r);
    const before = r.stats.dupPrePrepare ?? 0;
    for (let i = 0; i < 3; i++) r.handleMessage(0, pp, c.now);
    assert.equal((r.stats.dupPrePrepare ?? 0) - before, 3);
    assert.equal(macs.checks, 0);
    assert.equal(c.executed(1).length, 1);
  });

  it("handles copies of a client's executed request at most once per RETRANSMISSION_INTERVAL_MS (doubling with each): the rest are refused on their header, with no timer started", () => {
    const c = executed(addOp(2, 7));
    const req = request(c, 1, addOp(2, 7));
    const r = c.replicas[1]!;
    const macs = countMacChecks(r);
    const t0 = c.now + 1000;
    const replies = (actions: ReturnType<Replica['handleMessage']>) =>
      actions.filter((a) => a.kind === 'send' && a.bytes[1] === MsgType.Reply).length;
    assert.equal(replies(r.handleMessage(CLIENT, req, t0)), 1, 'the first copy is answered');
    for (let k = 1; k < 10; k++)
      assert.equal(
        replies(r.handleMessage(CLIENT, req, t0 + (k * RETRANSMISSION_INTERVAL_MS) / 10)),
        0,
      );
    assert.equal(r.stats.resendReply, 1);
    assert.equal(r.stats.dropRetransmissionTooSoon, 9);
    assert.equal(macs.checks, 1, 'the refused copies cost no MAC check');
    // The client's original copy was the first handled, this the second: the interval doubled.
    const next = t0 + 2 * RETRANSMISSION_INTERVAL_MS;
    assert.equal(replies(r.handleMessage(CLIENT, req, next - 1)), 0);
    assert.equal(replies(r.handleMessage(CLIENT, req, next)), 1);
    assert.equal(r.stats.resendReply, 2);
    // A committed request is not waited for again: no view-change timer runs on it.
    for (let t = 0; t < 10; t++) r.tick(next + 500 * t);
    assert.equal(r.stats.viewChangeTimeout, undefined);
    assert.equal(r.view, 0);
  });

  it('doubles the interval with each copy it handles, as a correct client backs off, up to RETRANSMISSION_MAX_INTERVAL_MS: a client re-sending every millisecond gets 11 replies in 3 s, not 600', () => {
    const c = executed(addOp(2, 7));
    const req = request(c, 1, addOp(2, 7));
    const r = c.replicas[1]!;
    const t0 = c.now + 1000;
    let replies = 0;
    for (let t = 0; t < 3000; t++)
      replies += r
        .handleMessage(CLIENT, req, t0 + t)
        .filter((a) => a.kind === 'send' && a.bytes[1] === MsgType.Reply).length;
    // The client's original copy was handled first (interval 5 ms after it), so from t0: 0, 10,
    // 30, 70, 150, 310, 630 ms, then every 500 ms: 1130 ... 2630.
    assert.equal(RETRANSMISSION_INTERVAL_MS, 5);
    assert.equal(RETRANSMISSION_MAX_INTERVAL_MS, 500);
    assert.equal(replies, 11);
    assert.equal(r.stats.dropRetransmissionTooSoon, 3000 - 11);
    // A new request starts at the first interval again.
    const next = request(c, 2, addOp(2, 1));
    r.handleMessage(CLIENT, next, t0 + 3000);
    assert.equal(r.lastInputRefused, false, 'handled: its connection is charged its bytes only');
    r.handleMessage(CLIENT, next, t0 + 3000 + 1);
    assert.equal(r.lastInputRefused, true, 'refused: the host charges REFUSED_INPUT_PENALTY_BYTES');
    r.handleMessage(CLIENT, next, t0 + 3000 + RETRANSMISSION_INTERVAL_MS);
    assert.equal(r.stats.dropRetransmissionTooSoon, 3000 - 11 + 1);
  });

  it('a forged copy does not use up the allowance: only authenticated requests count as handled', () => {
    const c = executed(addOp(2, 7));
    const seal = () => request(c, 1, addOp(2, 7));
    const forged = seal();
    forged[forged.length - 1 - 16 * 2] ^= 1; // replica 1's MAC entry
    const r = c.replicas[1]!;
    const t0 = c.now + 1000;
    r.handleMessage(CLIENT, forged, t0);
    assert.equal(r.stats.dropBadMac, 1);
    r.handleMessage(CLIENT, seal(), t0 + 1);
    assert.equal(r.stats.resendReply, 1, 'the genuine copy right after is answered');
  });

  it("refuses a request older than the client's last executed one on its header", () => {
    const c = executed(addOp(2, 7), addOp(2, 1));
    const old = request(c, 1, addOp(2, 7));
    const r = c.replicas[2]!;
    const macs = countMacChecks(r);
    r.handleMessage(CLIENT, old, c.now + 1000);
    assert.equal(r.stats.dropOldTimestamp, 1);
    assert.equal(macs.checks, 0);
  });
});
