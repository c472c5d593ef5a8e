/**
 * State transfer cost (issue 6): four replicas in one process over an in-memory queue, a service
 * whose operations each overwrite one 4 KiB page of a 64 MiB page store. The store is populated,
 * then replica 3 is cut off while N operations modify M distinct pages, then it is reconnected and
 * catches up by state transfer. Reported: pages and bytes fetched against M pages' bytes, and the
 * wall time from reconnection to its stable checkpoint matching the others'.
 *
 * `npm run bench:transfer -w @bfs/pbft`; BENCH_TRANSFER_POPULATE (pages, default 4000).
 */
import { PageStore } from '@bfs/page-store';
import { ClientCore, FIRST_CLIENT_ID, MacAuthenticator, Replica, type Service } from '../src';
import { testSessionKey } from '../src/testing';

const PAGE = 4096;
const STATE = 64 * 2 ** 20;
const N = 4;
const CLIENTS = 16;
const POPULATE = Number(process.env.BENCH_TRANSFER_POPULATE ?? 4000);

/** op = u32 page, u32 fill byte: overwrites the page. */
class PageWriter implements Service {
  readonly state = new PageStore({ size: STATE });
  execute(op: Uint8Array): Uint8Array {
    const v = Buffer.from(op.buffer, op.byteOffset, op.byteLength);
    this.state.write(v.readUInt32BE(0) * PAGE, Buffer.alloc(PAGE, v.readUInt32BE(4) & 0xff));
    return Uint8Array.of(1);
  }
  proposeNondet(): Uint8Array {
    return new Uint8Array(0);
  }
  checkNondet(): boolean {
    return true;
  }
}

function op(page: number, fill: number): Uint8Array {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(page, 0);
  b.writeUInt32BE(fill, 4);
  return b;
}

class Harness {
  readonly replicas: Replica[] = [];
  readonly clients: ClientCore[] = [];
  private queue: { from: number; to: number; bytes: Uint8Array }[] = [];
  cut = -1;
  now = 0;
  private done = 0;

  constructor() {
    const ids = [
      ...Array.from({ length: N }, (_, i) => i),
      ...Array.from({ length: CLIENTS }, (_, i) => FIRST_CLIENT_ID + i),
    ];
    const auth = (id: number) =>
      new MacAuthenticator(
        id,
        ids.filter((p) => p !== id).map((p) => [p, testSessionKey('bench', id, p)]),
      );
    for (let i = 0; i < N; i++)
      this.replicas.push(new Replica({ n: N, id: i }, new PageWriter(), auth(i)));
    for (let c = 0; c < CLIENTS; c++)
      this.clients.push(
        new ClientCore(
          { n: N, id: FIRST_CLIENT_ID + c, initialTimestamp: 0 },
          auth(FIRST_CLIENT_ID + c),
        ),
      );
  }

  private post(from: number, to: number[], bytes: Uint8Array): void {
    for (const t of to)
      if (t !== this.cut && from !== this.cut) this.queue.push({ from, to: t, bytes });
  }

  private step(): void {
    const q = this.queue;
    this.queue = [];
    for (const e of q) {
      if (e.to < N) {
        for (const a of this.replicas[e.to]!.handleMessage(e.from, e.bytes, this.now))
          if (a.kind === 'send') this.post(e.to, a.to, a.bytes);
      } else {
        const c = this.clients[e.to - FIRST_CLIENT_ID]!;
        const out = c.handleMessage(e.bytes, this.now);
        for (const s of out.sends) this.post(c.id, s.to, s.bytes);
        if (out.result) this.done++;
      }
    }
  }

  tick(ms = 5): void {
    this.now += ms;
    this.replicas.forEach((r, i) => {
      for (const a of r.tick(this.now)) if (a.kind === 'send') this.post(i, a.to, a.bytes);
    });
    for (const c of this.clients)
      for (const s of c.tick(this.now).sends) this.post(c.id, s.to, s.bytes);
  }

  /** Runs `ops` operations, CLIENTS at a time. */
  run(ops: Uint8Array[]): void {
    let next = 0;
    const target = this.done + ops.length;
    const idle = () => this.clients.filter((c) => !c.busy);
    while (this.done < target) {
      for (const c of idle()) {
        if (next >= ops.length) break;
        for (const s of c.start(ops[next++]!, false, this.now).sends)
          this.post(c.id, s.to, s.bytes);
      }
      this.step();
      if (this.queue.length === 0) this.tick();
    }
  }

  settle(until: () => boolean, maxVirtualMs = 120_000): void {
    const end = this.now + maxVirtualMs;
    while (!until() && this.now < end) {
      this.step();
      this.tick();
    }
  }
}

function main(): void {
  console.log(`state transfer bench: ${STATE / 2 ** 20} MiB state, ${POPULATE} pages populated`);
  const results: Record<string, number> = {};
  for (const m of [64, 512]) {
    const h = new Harness();
    h.run(Array.from({ length: POPULATE }, (_, i) => op(i, 1)));
    // Let a checkpoint after the population become stable everywhere (rewriting page 0 meanwhile),
    // so that replica 3's base is the populated store and M counts what changed after it.
    const populated = Math.max(...h.replicas.map((r) => r.lastCommitted));
    while (!h.replicas.every((r) => r.lowWater > populated)) h.run([op(0, 9)]);
    h.cut = 3;
    // N = 3M operations over M distinct pages, enough to leave replica 3 beyond the others' log.
    const n = Math.max(3 * m, 1200);
    h.run(Array.from({ length: n }, (_, i) => op((i * 7919) % m, i + 2)));
    h.cut = -1;
    const t0 = performance.now();
    const r3 = h.replicas[3]!;
    const others = h.replicas[0]!;
    h.settle(
      () =>
        r3.lowWater >= others.lowWater && r3.lowWater > 0 && (r3.stats.stateTransferDone ?? 0) > 0,
    );
    const ms = performance.now() - t0;
    const pages = r3.stats.transferPagesFetched ?? 0;
    const bytes = r3.stats.transferBytes ?? 0;
    const ratio = bytes / (m * PAGE);
    console.log(
      `  M = ${m} pages modified by ${n} ops while cut off: fetched ${pages} pages, ${bytes} bytes ` +
        `= ${ratio.toFixed(3)} x M pages' bytes, caught up ${ms.toFixed(0)} ms after reconnection`,
    );
    results[`transferPages${m}`] = pages;
    results[`transferBytes${m}`] = bytes;
    results[`transferBytesRatio${m}`] = Math.round(ratio * 1000) / 1000;
    results[`transferCatchUpMs${m}`] = Math.round(ms);
  }
  console.log(JSON.stringify(results));
}

main();
