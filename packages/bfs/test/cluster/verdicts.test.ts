import { strict as assert } from 'node:assert';
import { type FaultCounts, noFaults } from '@bfs/pbft';
import { FaultWindow } from '../../src/cluster/fault-window';
import {
  CallSeries,
  ProcedureLatencies,
  WriteBackSeries,
  quantile,
} from '../../src/cluster/monitor';
import type { ClusterStatus } from '../../src/cluster/status-page';
import type { ReplicaStatus } from '../../src/cluster/status';
import { formatStatus } from '../../src/cluster/status-command';
import { Timeline, diffEvents } from '../../src/cluster/timeline';
import { FAULT_THRESHOLDS, FAULT_WINDOW_MS, verdicts } from '../../src/cluster/verdicts';

/** Four replicas' counts, `target` having `count` faults of `kind`. */
function counts(target: number, kind: keyof FaultCounts, count: number): FaultCounts[] {
  return [0, 1, 2, 3].map((i) => ({ ...noFaults(), ...(i === target ? { [kind]: count } : {}) }));
}

function replica(
  id: number,
  over: Partial<ReplicaStatus> = {},
): ReplicaStatus & { address: string } {
  return {
    address: `127.0.0.1:${7100 + id}`,
    id,
    view: 0,
    primary: 0,
    lastExecuted: 10,
    lastCommitted: 10,
    stable: 0,
    stableDigest: null,
    active: true,
    recovering: false,
    stats: {},
    keys: {},
    transport: {},
    ...over,
  };
}

function cluster(over: Partial<ClusterStatus> = {}): ClusterStatus {
  return {
    f: 1,
    replicas: [0, 1, 2, 3].map((i) => replica(i)),
    disagreeing: [],
    split: null,
    diskFailing: [],
    exportsDiffer: [],
    healthy: true,
    primary: 0,
    relayFaults: null,
    verdicts: [],
    ...over,
  };
}

describe('fault verdicts (cluster/verdicts.ts)', () => {
  const base = { n: 4, f: 1, down: [], diskFailing: [] };

  it('names a replica whose wrong replies the relay saw past the threshold, and no other', () => {
    const below = verdicts({
      ...base,
      observations: [
        { observer: 'relay', recent: counts(2, 'wrongReply', FAULT_THRESHOLDS.wrongReply - 1) },
      ],
    });
    assert.deepEqual(below, []);
    const v = verdicts({
      ...base,
      observations: [{ observer: 'relay', recent: counts(2, 'wrongReply', 7) }],
    });
    assert.equal(v.length, 1);
    assert.equal(v[0]!.replica, 2);
    assert.equal(v[0]!.kind, 'wrongReply');
    assert.match(
      v[0]!.text,
      /^replica 2 is sending wrong replies: 7 in the last 60 s, seen by relay$/,
    );
  });

  it('needs f + 1 replicas to agree: one replica alone cannot get another named', () => {
    const accuse = (observers: number[]) =>
      verdicts({
        ...base,
        observations: observers.map((o) => ({
          observer: o,
          recent: counts(1, 'digestMismatch', 5),
        })),
      });
    assert.deepEqual(accuse([3]), []);
    const v = accuse([0, 3]);
    assert.equal(v.length, 1);
    assert.equal(v[0]!.count, 10);
    assert.deepEqual(v[0]!.observers, ['replica 0', 'replica 3']);
    assert.deepEqual(accuse([1, 3]), [], 'what a replica says of itself does not count');
  });

  it('says which replicas are down or failing their disk', () => {
    const v = verdicts({
      ...base,
      observations: [],
      down: [{ replica: 3, error: 'ECONNREFUSED' }],
      diskFailing: [1],
    });
    assert.deepEqual(
      v.map((x) => [x.replica, x.kind]),
      [
        [1, 'diskFailing'],
        [3, 'down'],
      ],
    );
    assert.equal(v[1]!.text, 'replica 3 is down (ECONNREFUSED)');
  });
});

describe('fault window (cluster/fault-window.ts)', () => {
  it('counts what happened in the last window only, and survives counters reset', () => {
    const w = new FaultWindow(FAULT_WINDOW_MS, 1000);
    w.sample(0, counts(2, 'badMac', 5));
    for (let t = 1000; t <= 30_000; t += 1000) w.sample(t, counts(2, 'badMac', 5));
    assert.equal(w.report(30_500, counts(2, 'badMac', 8)).recent[2]!.badMac, 3);
    for (let t = 31_000; t <= 120_000; t += 1000) w.sample(t, counts(2, 'badMac', 8));
    const r = w.report(120_000, counts(2, 'badMac', 8));
    assert.equal(r.recent[2]!.badMac, 0, 'older than the window');
    assert.equal(r.total[2]!.badMac, 8);
    assert.equal(r.windowSeconds, 60);
    // A new core starts from zero.
    assert.equal(w.report(121_000, counts(2, 'badMac', 1)).recent[2]!.badMac, 0);
    assert.equal(w.report(122_000, counts(2, 'badMac', 4)).recent[2]!.badMac, 3);
  });

  it('keeps a bounded number of samples', () => {
    const w = new FaultWindow(10_000, 1000);
    for (let t = 0; t < 1_000_000; t += 100) w.sample(t, counts(0, 'badMac', t));
    const samples = (w as unknown as { samples: unknown[] }).samples;
    assert.ok(samples.length <= 12, `${samples.length} samples`);
  });
});

describe('events timeline (cluster/timeline.ts)', () => {
  it('derives down, up, view changes with their cause, state transfers, recoveries, key refreshes, disk failures and verdicts', () => {
    const first = cluster();
    assert.deepEqual(diffEvents(undefined, first, 0), []);
    const down = cluster({
      replicas: [{ address: 'a:1', error: 'ECONNREFUSED' }, replica(1), replica(2), replica(3)],
    });
    const changed = cluster({
      replicas: [
        { address: 'a:1', error: 'ECONNREFUSED' },
        replica(1, { view: 1, primary: 1, stats: { stateTransferDone: 1 } }),
        replica(2, { view: 1, primary: 1, keys: { keyRefresh: 2 }, recovering: true }),
        replica(3, {
          view: 1,
          primary: 1,
          disk: {
            failed: {
              what: 'commit-log',
              error: 'no space',
              code: 'ENOSPC',
              at: 'now',
              corrupt: false,
            },
            failures: 1,
            restarts: 0,
            restarting: false,
          },
        }),
      ],
      primary: 1,
      verdicts: [
        { replica: 2, kind: 'wrongReply', count: 4, observers: ['relay'], text: 'replica 2 lies' },
      ],
    });
    const e1 = diffEvents(first, down, 1000);
    assert.deepEqual(
      e1.map((e) => [e.kind, e.replica]),
      [['down', 0]],
    );
    const e2 = diffEvents(down, changed, 2000);
    const kinds = e2.map((e) => `${e.kind}:${e.replica}`);
    for (const k of [
      'state-transfer:1',
      'key-refresh:2',
      'recovery:2',
      'disk:3',
      'view-change:null',
      'verdict:2',
    ])
      assert.ok(kinds.includes(k), `${k} in ${kinds.join(' ')}`);
    const vc = e2.find((e) => e.kind === 'view-change')!;
    assert.match(vc.text, /view 1, primary 1 \(primary 0 unreachable\)/);
    assert.deepEqual(diffEvents(changed, changed, 3000), [], 'nothing new, nothing said');
    const up = diffEvents(changed, cluster(), 4000).map((e) => `${e.kind}:${e.replica}`);
    assert.ok(
      up.includes('up:0') && up.includes('recovery:2') && up.includes('disk:3'),
      up.join(' '),
    );
  });

  it('keeps the last events only', () => {
    const t = new Timeline(3);
    for (let i = 0; i < 10; i++) t.push([{ at: i, kind: 'up', replica: 0, text: String(i) }]);
    assert.deepEqual(
      t.list().map((e) => e.text),
      ['7', '8', '9'],
    );
  });
});

describe('relay call series (cluster/monitor.ts)', () => {
  it('buckets calls per second with nearest-rank percentiles, zeros for idle seconds', () => {
    assert.equal(quantile([], 0.5), null);
    assert.equal(quantile([1, 2, 3, 4], 0.5), 2);
    assert.equal(quantile([1, 2, 3, 4], 0.99), 4);
    const s = new CallSeries(5);
    for (let i = 1; i <= 100; i++) s.observe(10_000 + i, i % 2 === 0, i, i !== 50);
    const pts = s.list(13_500);
    assert.equal(pts.length, 3);
    assert.deepEqual(
      { ...pts[0]! },
      { t: 10_000, ops: 100, errors: 1, readOnly: 50, p50: 50, p90: 90, p99: 99 },
    );
    assert.equal(pts[1]!.ops, 0);
    assert.equal(pts[1]!.p50, null);
    assert.equal(s.list(1_000_000).length, 5, 'bounded');
  });
});

describe('write-back series (cluster/monitor.ts)', () => {
  const sample = (
    buffered: number,
    flushOps: number,
    flushedBytes: number,
    dirtyBytes: number,
  ) => ({
    stats: {
      buffered,
      flushOps,
      flushedExtents: flushOps,
      flushedBytes,
      flushErrors: 0,
      waitedForRoom: 0,
      barriers: 0,
      retries: 0,
    },
    gauges: { dirtyBytes, dirtyFiles: dirtyBytes > 0 ? 1 : 0, flushesInFlight: 0 },
  });
  it('turns the counters of successive samples into rates per second, with what the buffer held', () => {
    const w = new WriteBackSeries(2);
    w.sample(1000, sample(0, 0, 0, 0));
    assert.deepEqual(w.list(), [], 'one sample has no rate yet');
    w.sample(3000, sample(40, 4, 8192, 4096));
    assert.deepEqual(w.list(), [
      {
        t: 3000,
        buffered: 20,
        flushes: 2,
        flushedBytes: 4096,
        flushErrors: 0,
        dirtyBytes: 4096,
        dirtyFiles: 1,
      },
    ]);
    w.sample(4000, sample(40, 5, 9216, 0));
    w.sample(5000, sample(40, 5, 9216, 0));
    assert.deepEqual(
      w.list().map((p) => [p.t, p.flushes, p.dirtyBytes]),
      [
        [4000, 1, 0],
        [5000, 0, 0],
      ],
      'bounded to the last seconds',
    );
  });
});

describe('latency per procedure (cluster/monitor.ts)', () => {
  it('keeps the window only, busiest first', () => {
    const p = new ProcedureLatencies(10_000);
    for (let i = 1; i <= 10; i++) p.observe(1000 + i, 'GETATTR', i, true);
    p.observe(2000, 'WRITE', 5, false);
    p.observe(9000, 'LOOKUP', 1, true);
    p.observe(9001, 'LOOKUP', 3, true);
    assert.deepEqual(p.list(10_000), [
      { procedure: 'GETATTR', calls: 10, errors: 0, p50: 5, p90: 9, p99: 10 },
      { procedure: 'LOOKUP', calls: 2, errors: 0, p50: 1, p90: 3, p99: 3 },
      { procedure: 'WRITE', calls: 1, errors: 1, p50: 5, p90: 5, p99: 5 },
    ]);
    assert.deepEqual(
      p.list(15_000).map((x) => x.procedure),
      ['LOOKUP'],
    );
  });
});

describe('bfs status text', () => {
  it('prints the verdicts of faults and says when only the replicas were asked', () => {
    const text = formatStatus(
      cluster({
        verdicts: [
          {
            replica: 2,
            kind: 'digestMismatch',
            count: 3,
            observers: [],
            text: 'replica 2 is sending mismatching digests',
          },
          { replica: 3, kind: 'down', count: 0, observers: [], text: 'replica 3 is down (x)' },
        ],
      }),
    );
    assert.match(text, /^FAULTY: replica 2 is sending mismatching digests$/m);
    assert.doesNotMatch(text, /FAULTY: replica 3/);
    assert.match(
      formatStatus(cluster()),
      /no replica is attributed a fault \(replicas' observations only/,
    );
  });
});
