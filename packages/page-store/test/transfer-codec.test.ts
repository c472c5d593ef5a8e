import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import {
  PageStore,
  StateTransfer,
  decodeTransferMessage,
  encodeTransferMessage,
  serveFetch,
} from '../src';
import type { TransferMessage } from '../src';

function history(store: PageStore, upTo: number): void {
  for (let seq = 1; seq <= upTo; seq++) {
    for (let i = 0; i < 10; i++)
      store.write(((seq * 7919 + i * 104729) % 500) * 256, Uint8Array.of(seq, i));
    store.checkpoint(seq);
  }
}

function decoded(bytes: Uint8Array): TransferMessage {
  const r = decodeTransferMessage(bytes);
  assert.ok(r.ok, r.ok ? '' : r.reason);
  return r.message;
}

describe('page-store: state-transfer wire encoding', () => {
  it('carries a whole transfer: every request and reply survives encoding unchanged', () => {
    const source = new PageStore({ size: 500 * 256, pageSize: 256, fanout: 4 });
    history(source, 12);
    const behind = new PageStore({ size: 500 * 256, pageSize: 256, fanout: 4 });
    history(behind, 3);
    const t = new StateTransfer(behind, { seq: 12, digest: source.digestAt(12)! });
    while (!t.done) {
      for (const req of t.pending()) {
        const wireReq = decoded(encodeTransferMessage(req));
        assert.deepEqual(wireReq, req);
        const reply = serveFetch(source, wireReq as typeof req);
        const wireReply = decoded(encodeTransferMessage(reply));
        assert.deepEqual(wireReply, reply);
        assert.ok(t.receive(wireReply).ok);
      }
    }
    t.apply();
    assert.deepEqual(behind.digestAt(12), source.digestAt(12));
  });

  it('encodes checkpoint numbers of -1 (untouched, from nothing)', () => {
    const req: TransferMessage = { kind: 'partition', seq: 5, level: 2, index: 0, since: -1 };
    assert.deepEqual(decoded(encodeTransferMessage(req)), req);
    const page: TransferMessage = {
      kind: 'page',
      seq: 5,
      index: 3,
      lm: -1,
      data: new Uint8Array(64),
    };
    assert.deepEqual(decoded(encodeTransferMessage(page)), page);
  });

  it('never throws on arbitrary bytes, truncations or extensions of valid messages', () => {
    const valid = encodeTransferMessage({
      kind: 'partition',
      seq: 9,
      level: 1,
      index: 2,
      lm: 9,
      children: [{ index: 8, lm: 9, digest: new Uint8Array(32).fill(1) }],
    });
    for (let n = 0; n < valid.length; n++)
      assert.equal(decodeTransferMessage(valid.subarray(0, n)).ok, false);
    assert.equal(decodeTransferMessage(Uint8Array.from([...valid, 0])).ok, false);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const r = decodeTransferMessage(bytes);
        if (r.ok) assert.deepEqual(encodeTransferMessage(r.message), bytes);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.uint8Array({ maxLength: 120 }),
        (tag, rest) => {
          decodeTransferMessage(Uint8Array.from([tag, ...rest]));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('refuses counts and lengths beyond the limits before allocating', () => {
    const huge = new Uint8Array(1 + 8 + 1 + 8 + 8 + 4);
    huge[0] = 3;
    new DataView(huge.buffer).setUint32(26, 0xffffffff);
    assert.deepEqual(decodeTransferMessage(huge), { ok: false, reason: 'too many children' });
    const page = new Uint8Array(1 + 8 + 8 + 8 + 4);
    page[0] = 4;
    new DataView(page.buffer).setUint32(25, 0xffffffff);
    assert.deepEqual(decodeTransferMessage(page), { ok: false, reason: 'page too large' });
    const big = new Uint8Array(17);
    big[0] = 2;
    big.fill(0xff, 1, 9);
    assert.deepEqual(decodeTransferMessage(big), { ok: false, reason: 'number too large' });
  });
});
