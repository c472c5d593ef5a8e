import { strict as assert } from 'node:assert';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import {
  Body,
  DecodeError,
  HmacKey,
  JS_HASH_MAX_BYTES,
  JS_HMAC_MAX_BYTES,
  MAC_BYTES,
  hmacTag,
  MAX_BATCH_REQUESTS,
  MAX_FRAME_BYTES,
  MAX_REPLY_BATCH_BYTES,
  MAX_REQUEST_SIGNATURE_BYTES,
  MacAuthenticator,
  REPLY_DIGEST_ONLY,
  MsgType,
  decodeFrame,
  encodeUnsealed,
  prePrepareBatch,
  PrePrepareMsg,
  reframe,
  RequestMsg,
  receivedSigningBytes,
  requestSigningBytes,
  sha256,
  sha256Small,
} from '../src';
import { testSessionKey } from '../src/testing';

const d32 = Buffer.alloc(32, 7);

/** Replica `id` of four, with test session keys shared with the other three. */
function auth(id: number): MacAuthenticator {
  const peers = [0, 1, 2, 3].filter((p) => p !== id);
  return new MacAuthenticator(
    id,
    peers.map((p) => [p, testSessionKey('t', id, p)]),
  );
}
/** A signed read-write request with a replyTo: every optional field of a REQUEST. */
const signedRequest: RequestMsg = {
  type: MsgType.Request,
  clientId: 1002,
  timestamp: 5,
  readOnly: false,
  replier: 2,
  op: Buffer.from('write'),
  replyTo: 1001,
  signature: Buffer.alloc(MAX_REQUEST_SIGNATURE_BYTES, 9),
};
const samples: Body[] = [
  {
    type: MsgType.Request,
    clientId: 1001,
    timestamp: 2 ** 52 + 3,
    readOnly: true,
    replier: -1,
    op: Buffer.from('op'),
  },
  {
    type: MsgType.Reply,
    view: 3,
    timestamp: 9,
    clientId: 1001,
    replica: 2,
    flags: 1,
    result: Buffer.from('r'),
  },
  {
    type: MsgType.PrePrepare,
    view: 1,
    seq: 77,
    nondet: Buffer.from([1, 2]),
    entries: [{ inline: Buffer.from('frame') }, { digest: d32 }],
  },
  { type: MsgType.Prepare, view: 1, seq: 5, digest: d32 },
  { type: MsgType.Commit, view: 1, seq: 5, digest: d32 },
  { type: MsgType.Checkpoint, seq: 128, digest: d32 },
  { type: MsgType.Status, view: 0, lastExecuted: 12, stable: 8 },
  {
    type: MsgType.Request,
    clientId: 1002,
    timestamp: 4,
    readOnly: false,
    replier: 1,
    op: Buffer.from('op'),
    replyTo: 1001,
  },
  {
    type: MsgType.ReplyBatch,
    replica: 3,
    group: 1001,
    replies: [
      { view: 1, timestamp: 4, clientId: 1002, flags: 0, result: Buffer.from('full') },
      { view: 1, timestamp: 8, clientId: 1003, flags: REPLY_DIGEST_ONLY, result: d32 },
    ],
  },
  signedRequest,
];

function norm(x: unknown): unknown {
  return JSON.parse(
    JSON.stringify(x, (_k, v: unknown) =>
      v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v,
    ),
  );
}

describe('pbft MACs: HMAC-SHA256 truncated to 128 bits (RFC 2104)', () => {
  it('equals node:crypto createHmac for keys and messages of every length class', () => {
    for (const keyLen of [16, 32, 64, 100])
      for (const len of [0, 1, 55, 64, 65, 1000]) {
        const k = Buffer.alloc(keyLen, keyLen);
        const d = Buffer.alloc(len, len);
        const want = createHmac('sha256', k).update(d).digest().subarray(0, MAC_BYTES);
        assert.deepEqual(hmacTag(k, d), want, `key ${keyLen}, data ${len}`);
      }
  });

  it('gives the same bytes on the JavaScript path and the node:crypto path, at every padding boundary', () => {
    const key = randomBytes(32);
    const k = new HmacKey(key);
    // 0..JS_HMAC_MAX_BYTES + 70 crosses 55/56 and 119/120 (one or two padding blocks) and the
    // switch to node:crypto.
    for (let len = 0; len <= JS_HMAC_MAX_BYTES + 70; len++) {
      const d = randomBytes(len);
      const want = createHmac('sha256', key).update(d).digest().subarray(0, MAC_BYTES);
      assert.deepEqual(k.tag(d), want, `data ${len}`);
      assert.ok(k.matches(d, want));
    }
  });

  it('hashes short inputs in JavaScript to the same SHA-256 as node:crypto, at every padding boundary and past the switch', () => {
    for (let len = 0; len <= JS_HASH_MAX_BYTES + 70; len++) {
      const d = randomBytes(len);
      const want = createHash('sha256').update(d).digest();
      if (len <= JS_HASH_MAX_BYTES) assert.deepEqual(sha256Small(d), want, `data ${len}`);
      assert.deepEqual(sha256(d), want, `sha256, data ${len}`);
    }
    assert.throws(() => sha256Small(Buffer.alloc(JS_HASH_MAX_BYTES + 1)), RangeError);
  });

  it('writes a tag in place and rejects a tag with any one bit flipped', () => {
    const k = new HmacKey(randomBytes(16));
    const d = randomBytes(100);
    const out = Buffer.alloc(MAC_BYTES + 7);
    k.tagInto(d, out, 7);
    const tag = out.subarray(7);
    assert.deepEqual(tag, k.tag(d));
    for (let bit = 0; bit < MAC_BYTES * 8; bit++) {
      const bad = Buffer.from(tag);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      assert.equal(k.matches(d, bad), false, `bit ${bit}`);
    }
    assert.equal(k.matches(d, tag.subarray(1)), false, 'a short tag');
  });

  it("authenticates a multicast frame's digest for each receiver and a point-to-point frame's bytes (OSDI 1999 section 3)", () => {
    const keys = [0, 1, 2, 3, 9].map((i) => [i, randomBytes(32)] as const);
    const sender = new MacAuthenticator(
      9,
      keys.filter(([i]) => i !== 9).map(([i, k]) => [i, k]),
    );
    const body = { type: MsgType.Status, view: 1, lastExecuted: 2, stable: 0 } as const;
    const multi = decodeFrame(sender.sealMulticast(body, 4));
    for (const [i, key] of keys.filter(([i]) => i < 4)) {
      const want = createHmac('sha256', key).update(sha256(multi.signed)).digest();
      assert.deepEqual(multi.macs.at(i), want.subarray(0, MAC_BYTES), `receiver ${i}`);
      const receiver = new MacAuthenticator(i, [[9, key]]);
      assert.ok(receiver.verifyFrame(9, multi.signed, multi.macs));
      assert.ok(receiver.verifyFrame(9, multi.signed, multi.macs, sha256(multi.signed)));
      assert.equal(
        receiver.verifyFrame(9, multi.signed, multi.macs, sha256(Buffer.from('x'))),
        false,
      );
    }
    const one = decodeFrame(sender.sealTo(body, 2));
    const want = createHmac('sha256', keys[2]![1]).update(one.signed).digest();
    assert.deepEqual(one.macs.at(0), want.subarray(0, MAC_BYTES));
  });
});

describe('pbft codec: compact binary frames with strict bounds', () => {
  it('round-trips every message type with its sender and authenticator', () => {
    for (const body of samples) {
      const { frame } = encodeUnsealed(5, body, 4);
      const f = decodeFrame(frame);
      assert.equal(f.sender, 5);
      assert.equal(f.macs.length, 4);
      assert.deepEqual(norm(f.body), norm(body));
    }
  });

  it('authenticates a multicast frame separately for each receiver', () => {
    const frame = auth(0).sealMulticast(samples[3]!, 4);
    const f = decodeFrame(frame);
    for (const r of [1, 2, 3]) assert.ok(auth(r).verifyFrame(0, f.signed, f.macs), `receiver ${r}`);
    frame[12] = frame[12]! ^ 1; // flip a bit of the signed part
    const g = decodeFrame(frame);
    for (const r of [1, 2, 3]) assert.ok(!auth(r).verifyFrame(0, g.signed, g.macs));
  });

  it('a PRE-PREPARE authenticator covers its batch digest: the stripped form keeps the MACs, another body breaks them', () => {
    const request = (ts: number) =>
      encodeUnsealed(1001, { ...(samples[0] as RequestMsg), timestamp: ts, readOnly: false }, 4)
        .frame;
    const pp: PrePrepareMsg = {
      type: MsgType.PrePrepare,
      view: 1,
      seq: 9,
      nondet: Buffer.from([1, 2]),
      entries: [{ inline: request(1) }, { digest: d32 }],
    };
    const full = auth(0).sealMulticast(pp, 4);
    const batch = prePrepareBatch(pp)!;
    const strip: PrePrepareMsg = { ...pp, nondet: Buffer.alloc(0), entries: [], batch };
    const stripped = reframe(full, strip);
    assert.equal(stripped.length, 125, 'header, view, seq, digest, four MACs');
    const s = decodeFrame(stripped);
    assert.deepEqual(Buffer.from((s.body as PrePrepareMsg).batch!), batch);
    const other = decodeFrame(reframe(full, { ...pp, entries: [{ inline: request(2) }] }));
    const otherBatch = decodeFrame(reframe(full, { ...strip, batch: Buffer.alloc(32) }));
    for (const r of [1, 2, 3]) {
      const f = decodeFrame(full);
      assert.ok(auth(r).verifyFrame(0, f.signed, f.macs), `full, receiver ${r}`);
      assert.ok(auth(r).verifyFrame(0, s.signed, s.macs), `stripped, receiver ${r}`);
      assert.ok(!auth(r).verifyFrame(0, other.signed, other.macs), `other body, receiver ${r}`);
      assert.ok(!auth(r).verifyFrame(0, otherBatch.signed, otherBatch.macs));
    }
    // The stripped form has no nondet value and no entries.
    assert.throws(() => encodeUnsealed(0, { ...strip, nondet: Buffer.from([1]) }, 4), RangeError);
  });

  it('rejects truncated frames, trailing bytes, bad magic and unknown types with DecodeError', () => {
    const { frame } = encodeUnsealed(1, samples[3]!, 4);
    assert.throws(() => decodeFrame(frame.subarray(0, frame.length - 1)), DecodeError);
    assert.throws(() => decodeFrame(Buffer.concat([frame, Buffer.alloc(1)])), DecodeError);
    const bad = Buffer.from(frame);
    bad[0] = 0;
    assert.throws(() => decodeFrame(bad), DecodeError);
    const unk = Buffer.from(frame);
    unk[1] = 99;
    assert.throws(() => decodeFrame(unk), DecodeError);
    assert.throws(() => decodeFrame(Buffer.alloc(MAX_FRAME_BYTES + 1)), DecodeError);
  });

  it('rejects length fields beyond their bounds without allocating them', () => {
    const { frame } = encodeUnsealed(1001, samples[0]!, 4);
    const b = Buffer.from(frame);
    b.writeUInt32BE(0xfffffff0, 10 + 4 + 8 + 1 + 4); // op length
    assert.throws(() => decodeFrame(b), DecodeError);
  });

  it('rejects request flags beyond read-only, replyTo, signed and sent-to-all', () => {
    const b = Buffer.from(encodeUnsealed(1001, samples[0]!, 4).frame);
    b[10 + 4 + 8] = 16;
    assert.throws(() => decodeFrame(b), /bad request flags/);
  });

  it("carries a request's sent-to-all mark (flag 8), absent when unset", () => {
    const req = samples[0]! as RequestMsg;
    const marked = decodeFrame(encodeUnsealed(1001, { ...req, toAll: true }, 4).frame).body;
    assert.ok(marked.type === MsgType.Request && marked.toAll === true);
    const plain = decodeFrame(encodeUnsealed(1001, req, 4).frame).body;
    assert.ok(plain.type === MsgType.Request && !('toAll' in plain));
  });

  it('refuses a request whose signature is truncated, empty or longer than MAX_REQUEST_SIGNATURE_BYTES, and encodes none such', () => {
    const signed = signedRequest;
    const { frame, signedLength } = encodeUnsealed(1002, signed, 4);
    const lengthAt = signedLength - 1 - MAX_REQUEST_SIGNATURE_BYTES;
    assert.equal(frame[lengthAt], MAX_REQUEST_SIGNATURE_BYTES);
    const withLength = (len: number) => {
      const b = Buffer.from(frame);
      b[lengthAt] = len;
      return b;
    };
    assert.throws(
      () => decodeFrame(withLength(MAX_REQUEST_SIGNATURE_BYTES + 1)),
      /request signature of 65 bytes/,
    );
    assert.throws(() => decodeFrame(withLength(0)), /request signature of 0 bytes/);
    // The body length still says 64 bytes of signature: a shorter one leaves trailing bytes.
    assert.throws(() => decodeFrame(withLength(MAX_REQUEST_SIGNATURE_BYTES - 1)), DecodeError);
    // A body cut inside the signature, its length fields made to agree.
    const cut = Buffer.concat([frame.subarray(0, signedLength - 10), frame.subarray(signedLength)]);
    cut.writeUInt32BE(signedLength - 10 - 10, 6);
    assert.throws(() => decodeFrame(cut), /truncated message/);
    const tooLong = { ...signed, signature: Buffer.alloc(MAX_REQUEST_SIGNATURE_BYTES + 1) };
    assert.throws(() => encodeUnsealed(1002, tooLong, 4), RangeError);
    assert.throws(
      () => encodeUnsealed(1002, { ...signed, signature: Buffer.alloc(0) }, 4),
      RangeError,
    );
  });

  it("a request's signature covers its body up to the signature, the signed flag set: what the client signs is what a replica reads back", () => {
    const signed = signedRequest;
    const f = decodeFrame(encodeUnsealed(1002, signed, 4).frame);
    assert.ok(f.body.type === MsgType.Request);
    const read = receivedSigningBytes(f.signed, f.body);
    assert.deepEqual(Buffer.from(read), requestSigningBytes(signed));
    // The same request unsigned is a different body: its flags lack the signed bit.
    const { signature: _, ...unsigned } = signed;
    const plain = decodeFrame(encodeUnsealed(1002, unsigned, 4).frame);
    assert.notDeepEqual(Buffer.from(plain.signed.subarray(10)), requestSigningBytes(signed));
  });

  it('rejects a REPLY-BATCH above MAX_REPLY_BATCH_BYTES or MAX_BATCH_REQUESTS, and digest replies of the wrong length in one', () => {
    const reply = { view: 0, timestamp: 1, clientId: 1001, flags: 0, result: Buffer.alloc(0) };
    const batch = (replies: (typeof reply)[]) =>
      encodeUnsealed(0, { type: MsgType.ReplyBatch, replica: 0, group: 1001, replies }, 1).frame;
    const big = { ...reply, result: Buffer.alloc(MAX_REPLY_BATCH_BYTES) };
    assert.throws(() => decodeFrame(batch([big, reply])), /exceeds MAX_REPLY_BATCH_BYTES/);
    const many = Array.from({ length: MAX_BATCH_REQUESTS + 1 }, () => reply);
    assert.throws(() => decodeFrame(batch(many)), /reply batch of/);
    const short = { ...reply, flags: REPLY_DIGEST_ONLY, result: Buffer.alloc(31) };
    assert.throws(() => decodeFrame(batch([reply, short])), /digest reply of wrong length/);
    assert.equal(decodeFrame(batch([reply, reply])).body.type, MsgType.ReplyBatch);
  });

  it('never throws anything but DecodeError on arbitrary or mutated input (property)', () => {
    const valid = samples.map((s) => encodeUnsealed(2, s, 4).frame);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc
            .tuple(fc.nat(valid.length - 1), fc.nat(), fc.integer({ min: 0, max: 255 }))
            .map(([i, at, v]) => {
              const b = Buffer.from(valid[i]!);
              b[at % b.length] = v;
              return new Uint8Array(b);
            }),
        ),
        (bytes) => {
          try {
            decodeFrame(bytes);
          } catch (e) {
            if (!(e instanceof DecodeError)) throw e;
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
