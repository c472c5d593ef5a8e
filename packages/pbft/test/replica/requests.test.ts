import { strict as assert } from 'node:assert';
import { MsgType, RequestMsg } from '../../src';
import {
  MAX_OP_BYTES,
  MAX_STORED_REQUEST_BYTES,
  MAX_STORED_REQUESTS,
  REQUEST_RELAYS,
} from '../../src/constants';
import { Outbox } from '../../src/replica/outbox';
import { RequestQueue, requestKey } from '../../src/replica/requests';
import { ResolvedRequest } from '../../src/replica/slot';

function req(clientId: number, timestamp: number, frame?: Uint8Array): ResolvedRequest {
  const msg: RequestMsg = {
    type: MsgType.Request,
    clientId,
    timestamp,
    readOnly: false,
    replier: -1,
    op: new Uint8Array(0),
  };
  const digest = Buffer.alloc(32, timestamp);
  digest.writeUInt32BE(timestamp, 0);
  return new ResolvedRequest(msg, frame ?? Uint8Array.of(clientId, timestamp), digest);
}

describe('pbft request queue and client bookkeeping', () => {
  it('queues a request once, and never one already ordered', () => {
    const q = new RequestQueue(new Outbox(4, [1, 2, 3]));
    const r = req(10, 1);
    assert.equal(q.enqueue(requestKey(r.msg), r), 'queued');
    assert.equal(q.enqueue(requestKey(r.msg), r), 'duplicate');
    assert.equal(q.take(), r);
    q.markOrdered(requestKey(r.msg));
    assert.equal(q.enqueue(requestKey(r.msg), r), 'duplicate', 'ordered, not executed yet');
    q.executed(r);
    assert.equal(q.enqueue(requestKey(r.msg), r), 'queued', 'executed: the client table decides');
  });

  it('drops queued requests that a re-proposed batch turned out to hold', () => {
    const q = new RequestQueue(new Outbox(4, [1, 2, 3]));
    const [a, b] = [req(10, 1), req(11, 1)];
    q.enqueue(requestKey(a.msg), a);
    q.enqueue(requestKey(b.msg), b);
    q.unqueue(new Set([requestKey(a.msg)]));
    assert.equal(q.queued, 1);
    assert.equal(q.peek(), b);
    assert.equal(q.enqueue(requestKey(a.msg), a), 'queued', 'its key left the queue too');
  });

  it('relays an awaited request every interval while it is awaited, REQUEST_RELAYS times at most, and not once it committed', () => {
    const out = new Outbox(4, [1, 2, 3]);
    const q = new RequestQueue(out);
    const [a, b] = [req(10, 1), req(11, 1)];
    for (const r of [a, b]) {
      q.await(requestKey(r.msg), r);
      q.relayWhileAwaited(requestKey(r.msg));
    }
    const due = (now: number) => {
      out.begin(now);
      return q.relayDue(100).map((r) => requestKey(r.msg));
    };
    assert.deepEqual(due(99), []);
    assert.deepEqual(due(100), ['10:1', '11:1']);
    q.committed(b);
    assert.deepEqual(due(150), []);
    assert.deepEqual(due(200), ['10:1']);
    assert.deepEqual(due(300), ['10:1'], `relay ${REQUEST_RELAYS} of ${REQUEST_RELAYS}`);
    assert.deepEqual(due(1000), [], 'no more');
  });

  it('relays a small request to the primary once, a large one never', () => {
    const q = new RequestQueue(new Outbox(4, [1, 2, 3]));
    assert.equal(q.relayOnce('10:1', true), true);
    assert.equal(q.relayOnce('10:1', true), false);
    assert.equal(q.relayOnce('10:2', false), false);
  });

  it('keeps at most MAX_STORED_REQUESTS bodies, evicting the oldest', () => {
    const io = new Outbox(4, [1, 2, 3]);
    const q = new RequestQueue(io);
    const first = req(10, 0);
    q.storeBody(first);
    for (let t = 1; t <= MAX_STORED_REQUESTS; t++) {
      const r = req(10, t);
      r.digest.writeUInt32BE(t, 0);
      q.storeBody(r);
    }
    assert.equal(q.body(first.hex), undefined);
    assert.equal(io.stats.evictStoredRequest, 1);
  });

  it('keeps at most MAX_STORED_REQUEST_BYTES of bodies and of awaited requests, evicting the oldest', () => {
    const io = new Outbox(4, [1, 2, 3]);
    const q = new RequestQueue(io);
    // One buffer for all: only the frames' lengths count.
    const frame = new Uint8Array(MAX_OP_BYTES);
    const fit = Math.floor(MAX_STORED_REQUEST_BYTES / MAX_OP_BYTES);
    assert.ok(fit < MAX_STORED_REQUESTS, 'the byte bound binds first for the largest requests');
    const all = Array.from({ length: fit + 2 }, (_, t) => req(10, t, frame));
    for (const r of all) {
      q.storeBody(r);
      q.await(requestKey(r.msg), r);
    }
    assert.equal(q.body(all[0]!.hex), undefined);
    assert.equal(q.body(all[1]!.hex), undefined);
    assert.equal(q.body(all[2]!.hex), all[2]);
    assert.equal(io.stats.evictStoredRequest, 2);
    assert.equal(q.waitedFor.size, fit);
    assert.equal(io.stats.evictAwaitedRequest, 2);
    // Storing a body again does not count it twice.
    q.storeBody(all[5]!);
    assert.equal(io.stats.evictStoredRequest, 2);
  });

  it('stops waiting for a request once it committed', () => {
    const q = new RequestQueue(new Outbox(4, [1, 2, 3]));
    const r = req(10, 1);
    q.await(requestKey(r.msg), r);
    assert.equal(q.waitedFor.size, 1);
    q.committed(r);
    assert.equal(q.waitedFor.size, 0);
  });
});
