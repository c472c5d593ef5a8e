import { strict as assert } from 'node:assert';
import {
  ClientCore,
  FIRST_CLIENT_ID,
  MacAuthenticator,
  MsgType,
  decodeFrame,
  receivedSigningBytes,
} from '../src';
import { REQUEST_TIMEOUT_TIMEOUTS } from '../src/constants';
import {
  ByzantineBehaviour,
  FaultyClientBehaviour,
  type FaultyClientMode,
  TestRequestSignatures,
  faultySigner,
  PRESUMED_VIEW_CHANGE_TIMEOUTS,
  SLOW_PRIMARY_SHARE,
  attackerReplicaOptions,
  testSessionKey,
} from '../src/testing';

const N = 4;
const CLIENT = FIRST_CLIENT_ID;
const peers = [0, 1, 2, 3, CLIENT, CLIENT + 1];
const auth = (id: number) =>
  new MacAuthenticator(
    id,
    peers.filter((p) => p !== id).map((p) => [p, testSessionKey('attacks', id, p)]),
  );
const TOLERANCE = 1000;

function request(clientId: number, timestamp: number): Buffer {
  return auth(clientId).sealMulticast(
    {
      type: MsgType.Request,
      clientId,
      timestamp,
      readOnly: false,
      replier: -1,
      op: Buffer.from('op'),
    },
    N,
  );
}

function prePrepareWith(seq: number, requests: Buffer[]): Buffer {
  return auth(0).sealMulticast(
    {
      type: MsgType.PrePrepare,
      view: 0,
      seq,
      nondet: Buffer.alloc(0),
      entries: requests.map((inline) => ({ inline })),
    },
    N,
  );
}

function prePrepare(seq: number): Buffer {
  return auth(0).sealMulticast(
    { type: MsgType.PrePrepare, view: 0, seq, nondet: Buffer.alloc(0), entries: [] },
    N,
  );
}

/** Whether replica `id` accepts the MACs of `bytes`. */
function checksAt(id: number, bytes: Uint8Array): boolean {
  const f = decodeFrame(bytes);
  return auth(id).verifyFrame(f.sender, f.signed, f.macs);
}

describe('pbft: performance attacks on the wire', () => {
  it("slow-primary-commit-timer: a PRE-PREPARE is held for SLOW_PRIMARY_SHARE of the backups' timeout, the next one as long again after that release, and the core proposes one request at a time", () => {
    const b = new ByzantineBehaviour('slow-primary-commit-timer', auth(0), N, () => 0, {
      toleranceMs: TOLERANCE,
    });
    const hold = SLOW_PRIMARY_SHARE * TOLERANCE;
    assert.deepEqual(b.send([1, 2, 3], prePrepare(1), 0), []);
    assert.deepEqual(b.send([1, 2, 3], prePrepare(2), 10), []);
    assert.deepEqual(b.due(hold - 1), []);
    const first = b.due(hold);
    assert.deepEqual(
      first.flatMap((x) => x.to),
      [1, 2, 3],
    );
    for (const x of first) assert.equal((decodeFrame(x.bytes).body as { seq: number }).seq, 1);
    // A re-send of a released slot passes at once.
    assert.equal(b.send([2], prePrepare(1), hold + 1).length, 1);
    assert.deepEqual(b.due(2 * hold - 1), []);
    assert.equal(b.due(2 * hold).length, 3, 'seq 2, to each backup');
    assert.deepEqual(attackerReplicaOptions('slow-primary-commit-timer'), {
      maxBatchRequests: 1,
      maxOutstandingPrePrepares: 1,
      requestTimeoutMs: 0,
      monitorWindowMs: 0,
    });
  });

  it("slow-primary: a full batch is held until just before the backups' per-request timer fires for the oldest request in it they know of (its second copy), or their commit timer, whichever is first", () => {
    const b = new ByzantineBehaviour('slow-primary', auth(0), N, () => 0, {
      toleranceMs: TOLERANCE,
    });
    const commitTimer = SLOW_PRIMARY_SHARE * TOLERANCE;
    const perRequest = SLOW_PRIMARY_SHARE * REQUEST_TIMEOUT_TIMEOUTS * TOLERANCE;
    // Client 1's request: first copy at 0, the retransmission to all (the backups learn) at 100.
    const r = request(CLIENT + 1, 1);
    b.observe(r, 0);
    b.observe(r, 100);
    assert.deepEqual(b.send([1, 2, 3], prePrepareWith(1, [r]), 150), []);
    assert.deepEqual(b.due(150 + commitTimer - 1), []);
    assert.equal(b.due(150 + commitTimer).length, 3, 'the commit timer comes first');
    // The next one holds a request the backups learned of long ago: the per-request timer first.
    const old = request(CLIENT + 2, 1);
    b.observe(old, 0);
    b.observe(old, 10);
    const at = 150 + commitTimer;
    assert.deepEqual(b.send([1, 2, 3], prePrepareWith(2, [old]), at), []);
    assert.deepEqual(b.due(10 + perRequest - 1), []);
    assert.equal(b.due(10 + perRequest).length, 3);
    assert.ok(10 + perRequest < at + commitTimer);
    assert.deepEqual(attackerReplicaOptions('slow-primary'), {
      maxOutstandingPrePrepares: 1,
      requestTimeoutMs: 0,
      monitorWindowMs: 0,
    });
  });

  it("selective-primary: the victims' requests never reach its core, the others' do", () => {
    const b = new ByzantineBehaviour('selective-primary', auth(0), N, () => 0, {
      victims: (id) => id === CLIENT,
    });
    assert.equal(b.observe(request(CLIENT, 1)), false);
    assert.equal(b.observe(request(CLIENT + 1, 1)), true);
    assert.equal(b.observe(prePrepare(1)), true);
    assert.equal(b.lies, 1);
  });

  it('flood: well-formed frames whose MACs check, to every other replica and every client heard of, about the rate asked per tick', () => {
    const rate = 1_000_000;
    const b = new ByzantineBehaviour('flood', auth(3), N, () => 0.5, {
      floodBytesPerSec: rate,
      floodBatchBytes: 8192,
    });
    b.observe(request(CLIENT, 1));
    b.due(0);
    const out = b.due(10);
    const toReplicas = out.filter((s) => s.to.length === 3);
    const bytes = toReplicas.reduce((a, s) => a + s.bytes.length, 0);
    assert.ok(bytes >= rate / 100 && bytes < rate / 100 + 9000, `${bytes} bytes in 10 ms`);
    for (const s of toReplicas) assert.deepEqual(s.to, [0, 1, 2]);
    assert.ok(out.some((s) => s.to[0] === CLIENT && checksAt(CLIENT, s.bytes)));
    const kinds = new Set(toReplicas.map((s) => decodeFrame(s.bytes).body.type));
    assert.ok(kinds.has(MsgType.PrePrepare) && kinds.has(MsgType.Prepare));
    for (const s of toReplicas) assert.ok(checksAt(1, s.bytes), 'MACs check at receivers');
  });

  it('partial-mac client: MACs check at the presumed primary and f - 1 others and fail at the f + 1 after it; the presumed view moves on after PRESUMED_VIEW_CHANGE_TIMEOUTS unanswered', () => {
    const c = new FaultyClientBehaviour('partial-mac', N, TOLERANCE);
    const r = request(CLIENT, 1);
    const out = c.send(r, 0);
    assert.deepEqual(
      [0, 1, 2, 3].map((i) => checksAt(i, out)),
      [true, false, false, true],
    );
    const later = c.send(r, PRESUMED_VIEW_CHANGE_TIMEOUTS * TOLERANCE);
    assert.deepEqual(
      [0, 1, 2, 3].map((i) => checksAt(i, later)),
      [true, true, false, false],
      'view 1: replica 1 the primary',
    );
  });

  it("partial-mac, bad-mac and bad-signature clients sign with a spoiled signer (their signatures fail everywhere), a retransmit client with the correct one; bad-signature's MACs check everywhere", () => {
    const sigs = new TestRequestSignatures();
    const replicas = [0, 1, 2, 3];
    const frameOf = (mode: FaultyClientMode) => {
      const core = new ClientCore(
        { n: N, id: CLIENT, initialTimestamp: 0, signer: faultySigner(mode, sigs) },
        auth(CLIENT),
      );
      return new FaultyClientBehaviour(mode, N).send(
        core.start(Buffer.from('op'), false, 0).sends[0]!.bytes,
        0,
      );
    };
    const signatureChecks = (bytes: Uint8Array) => {
      const f = decodeFrame(bytes);
      const b = f.body;
      assert.ok(b.type === MsgType.Request && b.signature);
      return sigs.verify(b.clientId, receivedSigningBytes(f.signed, b), b.signature);
    };
    for (const mode of ['partial-mac', 'bad-mac', 'bad-signature'] as const)
      assert.equal(signatureChecks(frameOf(mode)), false, mode);
    assert.equal(signatureChecks(frameOf('retransmit')), true);
    const badSig = frameOf('bad-signature');
    assert.deepEqual(
      replicas.map((i) => checksAt(i, badSig)),
      [true, true, true, true],
    );
    assert.equal(faultySigner('partial-mac', undefined), undefined, 'no signatures, none to spoil');
  });

  it('bad-mac client: MACs fail everywhere; retransmit client: its latest request, unchanged, again to every replica on each call', () => {
    const bad = new FaultyClientBehaviour('bad-mac', N).send(request(CLIENT, 1), 0);
    assert.deepEqual(
      [0, 1, 2, 3].map((i) => checksAt(i, bad)),
      [false, false, false, false],
    );
    const rt = new FaultyClientBehaviour('retransmit', N);
    assert.deepEqual(rt.due(), []);
    const r = request(CLIENT, 2);
    assert.equal(rt.send(r, 0), r);
    const again = rt.due();
    assert.ok(again.length > 0);
    for (const s of again) {
      assert.deepEqual(s.to, [0, 1, 2, 3]);
      assert.equal(s.bytes, r);
    }
  });
});
