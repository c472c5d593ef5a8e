import { strict as assert } from 'node:assert';
import {
  ByzantineTransport,
  FIRST_CLIENT_ID,
  MacAuthenticator,
  MsgType,
  type Transport,
  decodeFrame,
  testSessionKey,
} from '../src';

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
