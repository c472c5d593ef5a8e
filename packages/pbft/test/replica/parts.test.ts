import { strict as assert } from 'node:assert';
import { BatchFetch } from '../../src/replica/batch-fetch';
import { ClientTable } from '../../src/replica/client-table';
import type { CheckedViewChange } from '../../src/replica/new-view';
import { ClientRecord, decodeReplyTable } from '../../src/replica/reply-table';
import { emptySlot } from '../../src/replica/slot';
import { ViewChangeSet } from '../../src/replica/view-changes';

function record(lastTimestamp: number): ClientRecord {
  const result = Uint8Array.of(lastTimestamp);
  return {
    lastTimestamp,
    result,
    resultDigest: Buffer.alloc(32, lastTimestamp),
    view: 0,
    tentative: false,
  };
}

function vc(sender: number, view: number): CheckedViewChange {
  return {
    sender,
    view,
    stable: 0,
    stableDigest: Buffer.alloc(32),
    proof: [],
    certs: new Map(),
    frame: Uint8Array.of(sender, view),
  };
}

describe('pbft client table (the last-reply table, part of the checkpointed state)', () => {
  it('rolls back to the latest kept checkpoint at or below a sequence number', () => {
    const t = new ClientTable();
    t.snapshot(0);
    t.set(100, record(1));
    t.snapshot(4);
    t.set(100, record(2));
    t.snapshot(8);
    t.set(100, record(3));
    assert.equal(t.latestAtOrBelow(7), 4);
    t.restore(4);
    assert.equal(t.get(100)?.lastTimestamp, 1);
    t.get(100)!.lastTimestamp = 99;
    t.restore(4);
    assert.equal(t.get(100)?.lastTimestamp, 1, 'a restore copies: the snapshot stays intact');
  });

  it('persists the table as of a checkpoint, not as it is now, and its digest covers the table', () => {
    const t = new ClientTable();
    t.set(100, record(1));
    t.snapshot(4);
    const at4 = t.stateDigest(Buffer.alloc(32));
    t.set(100, record(2));
    assert.notDeepEqual(t.stateDigest(Buffer.alloc(32)), at4);
    const p = t.persisted(4);
    assert.equal(decodeReplyTable(p.replyTable, 0)?.get(100)?.lastTimestamp, 1);
    assert.deepEqual(p.results, [{ clientId: 100, result: Uint8Array.of(1) }]);
  });
});

describe('pbft BATCH-FETCH rounds', () => {
  it('asks a replica that prepared the batch, another one each round, never itself', () => {
    const bf = new BatchFetch();
    const slot = emptySlot(5, 1, 0);
    slot.header = { frame: new Uint8Array(0), digest: Buffer.alloc(32, 1), sources: [0, 2, 3] };
    const asked = [0, 1, 2].map((t) => [...bf.plan([slot], 1, 0, [1, 2, 3], t).keys()][0]);
    assert.deepEqual(new Set(asked), new Set([2, 3]));
    assert.notEqual(asked[0], asked[1]);
    assert.deepEqual([...bf.missing], [5]);
  });

  it('wants nothing once the body is in, and answers a peer at most once per interval', () => {
    const bf = new BatchFetch();
    const slot = emptySlot(5, 1, 0);
    slot.header = { frame: new Uint8Array(0), digest: Buffer.alloc(32, 1), sources: [2] };
    bf.plan([slot], 1, 0, [1, 2, 3], 0);
    assert.equal(bf.due(10, 10), true);
    slot.header = undefined;
    assert.equal(bf.plan([slot], 1, 0, [1, 2, 3], 10).size, 0);
    assert.equal(bf.due(100, 10), false);
    assert.equal(bf.mayAnswer(2, 0, 50), true);
    assert.equal(bf.mayAnswer(2, 49, 50), false);
    assert.equal(bf.mayAnswer(2, 50, 50), true);
  });
});

describe('pbft VIEW-CHANGE set (OSDI 1999 section 4.4)', () => {
  it('keeps the highest view per replica and counts who asks for a view', () => {
    const s = new ViewChangeSet();
    s.record(vc(1, 2));
    s.record(vc(2, 2));
    s.record(vc(3, 3));
    assert.equal(s.holds(1, 2), true);
    assert.equal(s.holds(1, 3), false);
    assert.equal(s.asking(2), 2);
    assert.deepEqual(
      s.beyond(2).map((c) => c.sender),
      [3],
    );
    assert.equal(s.forView(2, 1).length, 1, 'at most a quorum of them');
  });

  it('spends the VIEW-CHANGEs up to a view it enters, and counts vouches per NEW-VIEW', () => {
    const s = new ViewChangeSet();
    s.record(vc(1, 2));
    s.record(vc(3, 3));
    s.own = Uint8Array.of(1);
    s.enter(2, Uint8Array.of(9));
    assert.equal(s.own, undefined);
    assert.equal(s.asking(2), 0);
    assert.equal(s.holds(3, 3), true);
    assert.equal(s.vouch(1, 3, 'aa'), 1);
    assert.equal(s.vouch(2, 3, 'aa'), 2);
    assert.equal(s.vouch(1, 3, 'bb'), 1, 'a replica vouches for one NEW-VIEW at a time');
  });
});
