/** Latency measurement shared by the benchmarks: percentiles and a warmed-up sequential loop. */

/** Calls made before a latency case is measured (JIT, connections). */
export const WARMUP_CALLS = 200;

/** The paper's three null-operation cases: name, argument bytes, result bytes. */
export const CASES = [
  ['00', 0, 0],
  ['40', 4096, 0],
  ['04', 0, 4096],
] as const;

export function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

export const r3 = (x: number): number => Math.round(x * 1000) / 1000;

/** Runs `run` sequentially: min(WARMUP_CALLS, ops) warm-up calls, then `ops` timed ones (ms). */
export async function latency(
  run: () => Promise<unknown>,
  ops: number,
): Promise<{ p50: number; p99: number }> {
  for (let i = 0; i < Math.min(WARMUP_CALLS, ops); i++) await run();
  const xs: number[] = [];
  for (let i = 0; i < ops; i++) {
    const t = performance.now();
    await run();
    xs.push(performance.now() - t);
  }
  return { p50: r3(pct(xs, 50)), p99: r3(pct(xs, 99)) };
}

/**
 * Keeps `outstanding` calls of `call` in flight, each starting the next as it completes, until
 * `stop()` holds; resolves with the number of completed calls once the last one is back.
 */
export async function keepOutstanding(
  outstanding: number,
  call: () => Promise<unknown>,
  stop: () => boolean,
): Promise<number> {
  let done = 0;
  await Promise.all(
    Array.from({ length: outstanding }, async () => {
      while (!stop()) {
        await call();
        done++;
      }
    }),
  );
  return done;
}

/** `keepOutstanding` for `seconds` from now. */
export function keepOutstandingFor(
  outstanding: number,
  call: () => Promise<unknown>,
  seconds: number,
): Promise<number> {
  const t0 = performance.now();
  return keepOutstanding(outstanding, call, () => performance.now() - t0 > seconds * 1000);
}

/** The label of a case, as the paper writes it: argument / result in KiB ("0/4"). */
export function caseLabel(argBytes: number, resultBytes: number): string {
  return `${argBytes / 1024}/${resultBytes / 1024}`;
}

/** BENCH_REQUESTS_TO_ALL=off: the benchmark clients send read-write requests to the primary alone. */
export const REQUESTS_TO_ALL = process.env.BENCH_REQUESTS_TO_ALL !== 'off';
