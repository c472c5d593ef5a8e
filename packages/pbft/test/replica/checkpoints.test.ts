import { strict as assert } from 'node:assert';
import { MsgType } from '../../src';
import { FaultLedger } from '../../src/faults';
import { Checkpoints } from '../../src/replica/checkpoints';
import { Outbox } from '../../src/replica/outbox';

const N = 4;
const K = 4;
const L = 8;
const A = Buffer.alloc(32, 0xa);
const B = Buffer.alloc(32, 0xb);

function fresh(): { cp: Checkpoints; io: Outbox; faults: FaultLedger } {
  const io = new Outbox(N, [1, 2, 3]);
  const faults = new FaultLedger(N);
  const cp = new Checkpoints(N, 1, 0, K, L, faults, io);
  cp.own.set(0, A);
  return { cp, io, faults };
}

const frame = (sender: number, seq: number): Uint8Array => Uint8Array.of(sender, seq);
const vote = (seq: number, digest: Buffer) => ({ type: MsgType.Checkpoint as const, seq, digest });

describe('pbft checkpoints and water marks (OSDI 1999 section 4.3)', () => {
  it('accepts sequence numbers up to H = h + L, and H moves with h', () => {
    const { cp } = fresh();
    assert.equal(cp.highWater, L);
    cp.advance(K, []);
    assert.equal(cp.lowWater, K);
    assert.equal(cp.highWater, K + L);
  });

  it('makes a checkpoint stable on 2f + 1 matching votes, ours among them, not on 2f', () => {
    const { cp } = fresh();
    cp.own.set(K, A);
    assert.equal(cp.record(0, K, A, frame(0, K)), undefined);
    assert.equal(cp.onVote(1, vote(K, A), frame(1, K)), undefined, 'two votes are not a quorum');
    const o = cp.onVote(2, vote(K, A), frame(2, K));
    assert.equal(o?.kind, 'stable');
    assert.deepEqual(o?.proof.map((p) => p.sender).sort(), [0, 1, 2]);
  });

  it('calls our state corrupt when 2f + 1 others agree on another digest than ours', () => {
    const { cp, faults } = fresh();
    cp.own.set(K, A);
    cp.record(0, K, A, frame(0, K));
    for (const s of [1, 2]) assert.equal(cp.onVote(s, vote(K, B), frame(s, K)), undefined);
    assert.equal(cp.onVote(3, vote(K, B), frame(3, K))?.kind, 'corrupt');
    assert.equal(
      faults.snapshot()[1]?.digestMismatch ?? 0,
      0,
      'the agreeing replicas are not blamed',
    );
  });

  it('knows it is behind on a quorum for a checkpoint it did not take', () => {
    const { cp } = fresh();
    cp.onVote(1, vote(K, B), frame(1, K));
    cp.onVote(2, vote(K, B), frame(2, K));
    assert.equal(cp.onVote(3, vote(K, B), frame(3, K))?.kind, 'ahead');
  });

  it('takes f + 1 votes at or beyond H for a checkpoint it did not take as a reason to fetch', () => {
    const { cp } = fresh();
    assert.equal(cp.onVote(1, vote(L, B), frame(1, L)), undefined);
    const o = cp.onVote(2, vote(L, B), frame(2, L));
    assert.equal(o?.kind, 'weak');
    assert.equal(cp.onVote(3, vote(K, B), frame(3, K)), undefined, 'below H one vote is nothing');
  });

  it('drops votes at or below h and off the checkpoint interval', () => {
    const { cp, io } = fresh();
    cp.advance(K, []);
    cp.own.set(K, A);
    cp.onVote(1, vote(0, A), frame(1, 0));
    cp.onVote(1, vote(K + 1, A), frame(1, K + 1));
    assert.equal(io.stats.dropOldCheckpoint, 1);
    assert.equal(io.stats.dropCheckpointOutOfRange, 1);
  });

  it('refreshes the stable proof with a fresher vote of the same replica, without growing it', () => {
    const { cp } = fresh();
    cp.own.set(K, A);
    cp.advance(K, [{ sender: 1, frame: frame(1, K) }]);
    cp.onVote(1, vote(K, A), Uint8Array.of(9));
    cp.onVote(2, vote(K, A), frame(2, K));
    assert.deepEqual(
      cp.stableProof.map((p) => [p.sender, p.frame[0]]),
      [
        [1, 9],
        [2, 2],
      ],
    );
  });

  it('bounds the pending votes of one sender, forgetting its lowest first', () => {
    const { cp, io } = fresh();
    for (let i = 1; i <= 20; i++) cp.onVote(1, vote(i * K, A), frame(1, i));
    const held = [...Array(21).keys()].filter((i) => cp.votesAt(i * K)?.has(1));
    assert.ok(held.length < 20, `held ${held.length}`);
    assert.ok(held[0]! > 1, 'the lowest went first');
    assert.ok((io.stats.evictCheckpointVote ?? 0) > 0);
  });

  it('notes a fork when every replica voted and no digest can reach 2f + 1', () => {
    const { cp, io } = fresh();
    cp.own.set(K, A);
    cp.record(0, K, A, frame(0, K));
    cp.onVote(1, vote(K, A), frame(1, K));
    cp.onVote(2, vote(K, B), frame(2, K));
    assert.equal(cp.splitAt, undefined);
    cp.onVote(3, vote(K, B), frame(3, K));
    assert.equal(cp.splitAt, K);
    assert.equal(io.stats.checkpointSplit, 1);
  });

  it('forgets votes and digests below a new stable checkpoint', () => {
    const { cp } = fresh();
    cp.onVote(1, vote(K, A), frame(1, K));
    cp.own.set(K, A);
    cp.advance(2 * K, []);
    assert.equal(cp.votesAt(K), undefined);
    assert.equal(cp.own.has(K), false);
  });
});
