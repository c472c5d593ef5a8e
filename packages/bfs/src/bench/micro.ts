/**
 * The paper's micro-benchmark as NFS calls: 0/0 (GETATTR on the read-only path, SETATTR with
 * nothing to set on the read-write path), 4/0 (WRITE 4 KB), 0/4 (READ 4 KB). Latency median and
 * p99 of sequential calls, then throughput with many calls outstanding.
 */
import { connect, median, percentile, type Session, type Target } from './target';

export const MICRO_CASES = ['getattr', 'setattr', 'write4k', 'read4k'] as const;
export type MicroCase = (typeof MICRO_CASES)[number];

export interface MicroResult {
  latencyMs: Record<MicroCase, { p50: number; p99: number }>;
  /** Calls per second with `outstanding` calls in flight. */
  throughput: { getattr: number; setattr: number; outstanding: number };
}

async function prepare(s: Session, name: string) {
  const dir = (await s.nfs.mkdir(s.root, name, { mode: 0o755 })).handle;
  const { handle } = await s.nfs.create(dir, 'f', {
    mode: 'unchecked',
    attributes: { mode: 0o644 },
  });
  const block = Buffer.alloc(4096, 0x61);
  await s.nfs.write(handle, 0, block);
  return {
    getattr: () => s.nfs.getattr(handle),
    setattr: () => s.nfs.setattr(handle, {}),
    write4k: () => s.nfs.write(handle, 0, block),
    read4k: () => s.nfs.read(handle, 0, 4096),
  } satisfies Record<MicroCase, () => Promise<unknown>>;
}

export async function micro(
  target: Target,
  o: { ops?: number; seconds?: number; outstanding?: number; progress?: (l: string) => void } = {},
): Promise<MicroResult> {
  const ops = o.ops ?? 500;
  const outstanding = o.outstanding ?? 32;
  const s = await connect(target);
  try {
    const calls = await prepare(s, `micro-${process.pid}-${Date.now().toString(36)}`);
    const latencyMs = {} as MicroResult['latencyMs'];
    for (const c of MICRO_CASES) {
      for (let i = 0; i < Math.min(50, ops); i++) await calls[c](); // warm-up
      const t: number[] = [];
      for (let i = 0; i < ops; i++) {
        const t0 = performance.now();
        await calls[c]();
        t.push(performance.now() - t0);
      }
      latencyMs[c] = { p50: median(t), p99: percentile(t, 99) };
      o.progress?.(
        `micro ${c}: p50 ${latencyMs[c].p50.toFixed(3)} ms, p99 ${latencyMs[c].p99.toFixed(3)} ms`,
      );
    }
    const rate = async (call: () => Promise<unknown>) => {
      const until = performance.now() + (o.seconds ?? 3) * 1000;
      let done = 0;
      await Promise.all(
        Array.from({ length: outstanding }, async () => {
          while (performance.now() < until) {
            await call();
            done++;
          }
        }),
      );
      return done / (o.seconds ?? 3);
    };
    const throughput = {
      getattr: await rate(calls.getattr),
      setattr: await rate(calls.setattr),
      outstanding,
    };
    o.progress?.(
      `micro throughput (${outstanding} outstanding): getattr ${throughput.getattr.toFixed(0)}/s, setattr ${throughput.setattr.toFixed(0)}/s`,
    );
    return { latencyMs, throughput };
  } finally {
    s.close();
  }
}
