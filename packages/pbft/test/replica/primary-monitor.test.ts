import { strict as assert } from 'node:assert';
import {
  AwaitedLoad,
  MonitorSettings,
  PrimaryMonitor,
  Verdict,
  score,
} from '../../src/replica/primary-monitor';

/**
 * The primary monitor's rules (Aardvark, Clement et al., NSDI 2009, section 4.3), on an injected
 * clock: ticks every 10 ms, windows of 100 ms, a per-request limit of 200 ms.
 */
const SETTINGS: MonitorSettings = {
  requestTimeoutMs: 200,
  requestTimeoutMsPerMiB: 100,
  windowMs: 100,
  graceWindows: 2,
  minScore: 0.3,
  risePerWindow: 0.05,
  views: 4,
  demandShare: 0.9,
  strikes: 2,
  // Off but where a test turns it on: the other rules' tests start from an empty history.
  yardstickAgreements: 0,
  yardstickMinMs: 5,
};
const TICK = 10;
const MIB = 1024 * 1024;
const idle: AwaitedLoad = { count: 0, bytes: 0, oldestSince: undefined };

/** A monitor driven tick by tick; each tick commits `perTick` requests of `bytes` each. */
class Run {
  now = 0;
  /** Each committed batch's time from pre-prepare to commit (ms). */
  agreementMs: number | undefined = 10;
  readonly m: PrimaryMonitor;
  constructor(settings: Partial<MonitorSettings> = {}) {
    this.m = new PrimaryMonitor({ ...SETTINGS, ...settings });
    this.m.tick(0, idle, true);
  }

  /** Ticks for `ms`; returns the first verdict and when it came. */
  run(
    ms: number,
    load: (now: number) => AwaitedLoad,
    perTick = 0,
    served = perTick,
    bytes = 100,
    judge = true,
  ): { verdict: Verdict; at: number } | undefined {
    const end = this.now + ms;
    while (this.now < end) {
      this.now += TICK;
      if (perTick > 0) this.m.onCommitted(perTick, perTick * bytes, served, this.agreementMs);
      const v = this.m.tick(this.now, load(this.now), judge);
      if (v) return { verdict: v, at: this.now };
    }
    return undefined;
  }
}

/** `count` requests awaited all along, the oldest since `since`. */
const steady =
  (count: number, since: (now: number) => number = (now) => now - 20) =>
  (now: number): AwaitedLoad => ({ count, bytes: 0, oldestSince: since(now) });

describe('pbft primary monitor (Aardvark section 4.3)', () => {
  describe('rule 1: a timer per awaited request that other commits do not restart', () => {
    it('the oldest awaited request reaching the limit is a verdict, however much else commits', () => {
      const r = new Run();
      // 50 requests commit every tick, yet one awaited since time 0 is never among them.
      const got = r.run(
        1000,
        steady(5, () => 0),
        50,
      );
      assert.deepEqual(got, { verdict: 'requestTimeout', at: 200 });
    });

    it('counts from when the replica learned of the request, not from its arrival elsewhere', () => {
      const r = new Run();
      const got = r.run(
        1000,
        steady(1, () => 150),
        50,
      );
      assert.equal(got?.at, 350);
    });

    it('requests awaited from before a view change get a whole limit in the new view', () => {
      const r = new Run();
      r.run(
        150,
        steady(1, () => 0),
        50,
      );
      r.m.enterView(r.now);
      const got = r.run(
        1000,
        steady(1, () => 0),
        50,
      );
      assert.equal(got?.at, 150 + 200);
    });

    it('a pause (host stall, installed checkpoint, catching up) restarts the ages', () => {
      const r = new Run();
      r.run(
        150,
        steady(1, () => 0),
        50,
      );
      r.m.pause(r.now);
      assert.equal(
        r.run(
          1000,
          steady(1, () => 0),
          50,
        )?.at,
        350,
      );
    });

    it('each awaited MiB adds its allowance: large requests queue behind each other', () => {
      const r = new Run();
      const big = (): AwaitedLoad => ({ count: 4, bytes: 4 * MIB, oldestSince: 0 });
      assert.equal(r.run(1000, big, 1, 1, MIB)?.at, 200 + 400);
    });

    it('0 turns it off', () => {
      const r = new Run({ requestTimeoutMs: 0, windowMs: 0 });
      assert.equal(
        r.run(
          5000,
          steady(1, () => 0),
        ),
        undefined,
      );
    });
  });

  describe('rule 2: adaptive expectations from the recent views', () => {
    it('a window scores the best of its throughput, byte and latency ratios', () => {
      const e = { rate: 1000, byteRate: 1e6, latencyMs: 10 };
      assert.equal(score({ rate: 500, byteRate: 1e5, latencyMs: 100 }, e), 0.5);
      assert.equal(score({ rate: 10, byteRate: 1e5, latencyMs: 100 }, e), 0.1);
      // A lone sequential client: little throughput, expected latency.
      assert.equal(score({ rate: 10, byteRate: 1e4, latencyMs: 10 }, e), 1);
      // A bulk load of large requests: few requests, the bytes expected.
      assert.equal(score({ rate: 10, byteRate: 1e6, latencyMs: 500 }, e), 1);
      // Nothing awaited committed: the latency ratio is 0.
      assert.equal(score({ rate: 100, byteRate: 1e5, latencyMs: Infinity }, e), 0.1);
    });

    it('replaces a primary that delivers less than minScore of what the previous view delivered in `strikes` windows in a row, once its grace is over', () => {
      const r = new Run();
      // View 0: 10 requests a tick (1000/s), 5 awaited all along.
      assert.equal(r.run(1000, steady(5), 10), undefined);
      r.m.enterView(r.now);
      const start = r.now;
      // View 1 delivers a fifth of it, with 20 awaited (latency 20x).
      const got = r.run(1000, steady(20), 2);
      assert.deepEqual(
        got,
        { verdict: 'slowPrimary', at: start + 400 },
        'after 2 grace windows, 2 judged ones',
      );
    });

    it('a primary that delivers half the expectation is kept', () => {
      const r = new Run();
      r.run(1000, steady(5), 10);
      r.m.enterView(r.now);
      assert.equal(r.run(500, steady(10), 5), undefined);
    });

    it('windows without demand (no request awaited for most of the window) are not judged', () => {
      const r = new Run();
      r.run(1000, steady(5), 10);
      r.m.enterView(r.now);
      // Low load: a request awaited a third of the time, little throughput.
      const sometimes = (now: number): AwaitedLoad =>
        now % 30 === 0 ? { count: 1, bytes: 100, oldestSince: now - 5 } : idle;
      assert.equal(r.run(2000, sometimes, 1, 0), undefined);
    });

    it('the primary only measures: it never blames itself', () => {
      const r = new Run();
      r.run(1000, steady(5), 10);
      r.m.enterView(r.now);
      assert.equal(r.run(1000, steady(20), 2, 2, 100, false), undefined);
    });

    it('the expectation is the best window of the last `views` views, this one included', () => {
      const r = new Run({ views: 2 });
      r.run(1000, steady(5), 10);
      r.m.enterView(r.now);
      assert.equal(r.m.expectation?.rate, 1000);
      r.run(1000, steady(5), 4);
      assert.equal(r.m.expectation?.rate, 1000, 'view 0 and this view 1');
      r.m.enterView(r.now);
      assert.equal(r.m.expectation?.rate, 400, 'views 1 and 2: view 0 is forgotten');
    });

    it('grace windows are not remembered (the backlog of a view change drains then)', () => {
      const r = new Run();
      r.run(200, steady(5), 100);
      assert.equal(r.m.expectation, undefined);
      r.run(100, steady(5), 10);
      assert.equal(r.m.expectation!.rate, 1000);
    });
  });

  describe("rule 2's yardstick, where no view set an expectation: the backups' own agreement time", () => {
    const yardstick = { yardstickAgreements: 3 };

    it('a primary of the first view whose awaited requests take twenty agreements is replaced once its grace is over', () => {
      const r = new Run(yardstick);
      // One commit a tick, 20 awaited: 200 ms awaited each, against 3 x 10 ms.
      assert.deepEqual(r.run(1000, steady(20), 1), { verdict: 'slowPrimary', at: 400 });
    });

    it('a correct primary of the first view passes it: requests wait about one batch in flight', () => {
      const r = new Run(yardstick);
      // 2 awaited, one commit a tick: 20 ms each, two agreements.
      assert.equal(r.run(1000, steady(2), 1), undefined);
    });

    it('it never asks for less than yardstickMinMs: one tick or a signature check is not slowness', () => {
      const r = new Run({ ...yardstick, yardstickMinMs: 100 });
      r.agreementMs = 1;
      // 50 ms awaited against 3 x 1 ms: below the yardstick's floor.
      assert.equal(r.run(1000, steady(5), 1), undefined);
    });

    it('batches with no agreement time seen here (replayed) leave only the floor', () => {
      const r = new Run({ ...yardstick, yardstickMinMs: 30 });
      r.agreementMs = undefined;
      assert.deepEqual(r.run(1000, steady(20), 1), { verdict: 'slowPrimary', at: 400 });
    });

    it('once an earlier view set an expectation, the expectation alone is the measure', () => {
      const r = new Run(yardstick);
      r.agreementMs = 1;
      // View 0 delivered 1000/s at 5 ms; view 1 the same, 5x the yardstick (3 x 1 ms) in latency.
      r.run(1000, steady(5), 10);
      r.m.enterView(r.now);
      assert.equal(r.run(1000, steady(5), 10), undefined);
    });

    it("a window in which no awaited request committed is not judged: a primary ordering nothing is the commit timer's and rule 1's, and a faulty client's requests no correct primary orders must not make quiet windows strikes", () => {
      const r = new Run(yardstick);
      // A request awaited all along, each a new one (rule 1 never fires), none ever committed.
      assert.equal(r.run(1000, steady(1)), undefined);
    });

    it('requests forgotten for a bad signature before a window closes are taken out of its measure (verify before blaming)', () => {
      /** 2 correct requests awaited and 18 a faulty client sent anew each window; one commit a tick. */
      const run = (forget: boolean): Verdict | undefined => {
        const r = new Run(yardstick);
        let badSince = 0;
        for (let now = TICK; now <= 1000; now += TICK) {
          r.m.onCommitted(1, 100, 1, 10);
          let count = 20;
          if (r.m.windowDue(now) && forget) {
            for (let i = 0; i < 18; i++) r.m.forget(badSince);
            badSince = now;
            count = 2;
          }
          const v = r.m.tick(now, { count, bytes: 0, oldestSince: now - 20 }, true);
          if (v) return v;
        }
        return undefined;
      };
      assert.equal(run(false), 'slowPrimary', 'counted, they make the primary look 10x slow');
      assert.equal(run(true), undefined);
    });

    it('0 turns it off: the first view is its own expectation', () => {
      const r = new Run();
      assert.equal(r.run(1000, steady(20), 1), undefined);
    });
  });

  describe('rule 3: the bar rises while a view lasts, so views change regularly', () => {
    it('a primary that delivers just what the best recent window did is replaced once the bar exceeds 1 in `strikes` judged windows in a row', () => {
      const r = new Run();
      // Two grace windows, one that makes the expectation, then judged ones at bars 0.3, 0.35,
      // ..., 1.0 (15 of them) pass and the 16th and 17th (1.05, 1.1) fail.
      const got = r.run(10_000, steady(5), 10);
      assert.equal(got?.verdict, 'termEnded');
      assert.equal(got?.at, 100 * (2 + 1 + 17));
    });

    it('one window below the bar between good ones is forgiven', () => {
      const r = new Run();
      r.run(1000, steady(5), 10);
      r.m.enterView(r.now);
      r.run(300, steady(5), 10);
      assert.equal(r.run(100, steady(20), 1), undefined, 'one window of a tenth');
      assert.equal(r.run(100, steady(5), 10), undefined);
      assert.equal(r.run(100, steady(20), 1), undefined, 'and another, not in a row');
    });

    it('no rise, no term', () => {
      const r = new Run({ risePerWindow: 0 });
      assert.equal(r.run(10_000, steady(5), 10), undefined);
    });

    it('a new view starts at minScore again', () => {
      const r = new Run();
      r.run(1000, steady(5), 10);
      assert.ok(r.m.bar > SETTINGS.minScore);
      r.m.enterView(r.now);
      assert.equal(r.m.bar, SETTINGS.minScore);
    });
  });
});
