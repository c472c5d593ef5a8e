import { strict as assert } from 'node:assert';
import {
  BYZANTINE_MODES,
  type ByzantineMode,
  FIRST_CLIENT_ID,
  MacAuthenticator,
  MsgType,
  type Transport,
  decodeFrame,
  isByzantineMode,
} from '../src';
import { ByzantineTransport, testSessionKey } from '../src/testing';

const N = 4;
const CLIENT = FIRST_CLIENT_ID;
const peers = [0, 1, 2, 3, CLIENT];
const auth = (id: number) =>
  new MacAuthenticator(
    id,
    peers.filter((p) => p !== id).map((p) => [p, testSessionKey('byz', id, p)]),
  );

/** Captures what the wrapped transport would put on the wire. */
class Capture implements Transport {
  readonly ids = [3];
  sent: { to: number; bytes: Uint8Array }[] = [];
  send(to: number, bytes: Uint8Array): void {
    this.sent.push({ to, bytes });
  }
  onMessage(): void {}
  async close(): Promise<void> {}
}

const me = auth(3);
const reply = me.sealTo(
  {
    type: MsgType.Reply,
    view: 0,
    timestamp: 7,
    clientId: CLIENT,
    replica: 3,
    flags: 0,
    result: Buffer.from('right'),
  },
  CLIENT,
);
const prepare = me.sealMulticast(
  { type: MsgType.Prepare, view: 0, seq: 1, digest: Buffer.alloc(32, 1) },
  N,
);

/** What receiver `id` decodes from `bytes`, after checking the sender's MAC. */
function received(id: number, bytes: Uint8Array) {
  const f = decodeFrame(bytes);
  assert.ok(auth(id).verifyFrame(f.sender, f.signed, f.macs), 'still properly authenticated');
  return f.body;
}

describe('pbft: Byzantine replica behaviours (for tests and demonstrations)', () => {
  it('silent: sends nothing at all', () => {
    const c = new Capture();
    const t = new ByzantineTransport(c, 'silent', me, N);
    t.send(CLIENT, reply);
    t.send(1, prepare);
    assert.equal(c.sent.length, 0);
    assert.equal(t.lies, 2);
  });

  it('wrong-replies: authenticated replies with a wrong result, protocol messages untouched', () => {
    const c = new Capture();
    const t = new ByzantineTransport(c, 'wrong-replies', me, N);
    t.send(CLIENT, reply);
    t.send(1, prepare);
    const r = received(CLIENT, c.sent[0].bytes);
    assert.ok(
      r.type === MsgType.Reply && Buffer.compare(Buffer.from(r.result), Buffer.from('right')) !== 0,
    );
    assert.deepEqual(Buffer.from(c.sent[1].bytes), Buffer.from(prepare));
  });

  it('wrong-digests: authenticated prepares with a wrong digest, replies untouched', () => {
    const c = new Capture();
    const t = new ByzantineTransport(c, 'wrong-digests', me, N);
    t.send(1, prepare);
    t.send(CLIENT, reply);
    const p = received(1, c.sent[0].bytes);
    assert.ok(
      p.type === MsgType.Prepare &&
        Buffer.compare(Buffer.from(p.digest), Buffer.alloc(32, 1)) !== 0,
    );
    assert.deepEqual(Buffer.from(c.sent[1].bytes), Buffer.from(reply));
  });
});

describe('pbft: Byzantine primaries, replays and impersonation on the wire', () => {
  const primary = auth(0);
  const clientAuth = auth(CLIENT);
  const request = (ts: number) =>
    clientAuth.sealMulticast(
      {
        type: MsgType.Request,
        clientId: CLIENT,
        timestamp: ts,
        readOnly: false,
        replier: -1,
        op: Buffer.from([ts]),
      },
      N,
    );
  const time = Buffer.alloc(8);
  time.writeDoubleBE(1000);
  const prePrepare = primary.sealMulticast(
    {
      type: MsgType.PrePrepare,
      view: 0,
      seq: 1,
      nondet: time,
      entries: [{ inline: request(1) }, { inline: request(2) }],
    },
    N,
  );
  const batch = (id: number, bytes: Uint8Array) => {
    const b = received(id, bytes);
    assert.ok(b.type === MsgType.PrePrepare);
    return b;
  };

  it('lists every mode for the bfs CLI', () => {
    const attacks = ['slow-primary', 'slow-primary-commit-timer', 'selective-primary', 'flood'];
    for (const m of ['equivocate', 'bad-nondet', 'replay', 'impersonate', ...attacks])
      assert.ok(isByzantineMode(m) && BYZANTINE_MODES.includes(m as ByzantineMode));
    assert.ok(!isByzantineMode('twins'), 'twins exist only in the simulator');
  });

  it('equivocate: backups get different authenticated pre-prepares for the same (view, seq)', () => {
    const c = new Capture();
    const t = new ByzantineTransport(c, 'equivocate', primary, N);
    for (const to of [1, 2, 3]) t.send(to, prePrepare);
    t.send(1, prepare);
    const got = c.sent.slice(0, 3).map((s) => batch(s.to, s.bytes));
    assert.ok(got.every((b) => b.view === 0 && b.seq === 1));
    const sig = got.map((b) =>
      JSON.stringify(
        b.entries.map((e) => Buffer.from((e as { inline: Uint8Array }).inline).toString('hex')),
      ),
    );
    assert.equal(sig[0], sig[2], 'replicas 1 and 3 get the real batch');
    assert.notEqual(sig[0], sig[1], 'replica 2 gets the requests in another order');
    assert.deepEqual(Buffer.from(c.sent[0]!.bytes), Buffer.from(prePrepare));
    assert.deepEqual(Buffer.from(c.sent[3]!.bytes), Buffer.from(prepare), 'other frames untouched');
    assert.equal(t.lies, 1);
  });

  it('bad-nondet: the proposed time is far in the future, the frame still authenticated', () => {
    const c = new Capture();
    const t = new ByzantineTransport(c, 'bad-nondet', primary, N);
    t.send(1, prePrepare);
    const b = batch(1, c.sent[0]!.bytes);
    assert.ok(Buffer.from(b.nondet).readDoubleBE(0) > 1e300, 'a double of ms');
    assert.ok(Buffer.from(b.nondet).readUInt32BE(0) >= 0x7f000000, 'u32 seconds: year 2037 on');
    assert.equal(b.entries.length, 2);
  });

  it('replay: old frames, its own and received ones, go out again unchanged', () => {
    const c = new Capture();
    const inbox: Uint8Array[] = [];
    const inner = Object.assign(c, {
      handler: undefined as undefined | ((from: number, bytes: Uint8Array) => void),
      onMessage(h: (from: number, bytes: Uint8Array) => void) {
        this.handler = h;
      },
    });
    // random() = 0: every send is followed by a replay of the first frame kept.
    const t = new ByzantineTransport(inner, 'replay', me, N, () => 0);
    t.onMessage((_f, b) => inbox.push(b));
    inner.handler!(0, prePrepare);
    assert.equal(inbox.length, 1, 'received frames still reach the replica');
    t.send(1, prepare);
    assert.deepEqual(
      c.sent.map((s) => [s.to, Buffer.from(s.bytes).toString('hex')]),
      [
        [1, Buffer.from(prepare).toString('hex')],
        [1, Buffer.from(prePrepare).toString('hex')],
      ],
      "the primary's pre-prepare replayed by a backup: its MACs still check",
    );
    assert.equal(received(1, c.sent[1]!.bytes).type, MsgType.PrePrepare);
    assert.equal(t.lies, 1);
  });

  it('impersonate: forged frames claim another node and fail its MACs; the real ones still go out', () => {
    const c = new Capture();
    const t = new ByzantineTransport(c, 'impersonate', me, N, () => 0);
    t.send(1, prepare);
    t.send(CLIENT, reply);
    assert.deepEqual(Buffer.from(c.sent[0]!.bytes), Buffer.from(prepare));
    const forgedPp = decodeFrame(c.sent[1]!.bytes);
    assert.equal(forgedPp.sender, 0, "a pre-prepare in the primary's name");
    assert.ok(!auth(1).verifyFrame(forgedPp.sender, forgedPp.signed, forgedPp.macs));
    const realReply = c.sent.find((s) => s.to === CLIENT && Buffer.from(s.bytes).equals(reply));
    assert.ok(realReply, 'the real reply goes out');
    const forged = c.sent.slice(2).filter((s) => !Buffer.from(s.bytes).equals(reply));
    assert.ok(forged.length > 0);
    for (const s of forged) {
      const f = decodeFrame(s.bytes);
      assert.notEqual(f.sender, 3, 'claims someone else');
      assert.ok(!auth(s.to).verifyFrame(f.sender, f.signed, f.macs), 'its MAC does not check');
    }
    const req = forged
      .map((s) => decodeFrame(s.bytes))
      .find((f) => f.body.type === MsgType.Request);
    assert.ok(req && req.sender === CLIENT, "a request in the client's name");
  });
});
