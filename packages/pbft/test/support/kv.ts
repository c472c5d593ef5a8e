/**
 * A small replicated service for tests: counters in the page store, with the agreed time.
 * op = u8 kind (1 add, 2 read) | u16 key | u32 delta | any padding (to make large requests).
 * Result = u32 value | u64 time.
 * Every add also stores max(proposed time, last time + 1), as BFS does for NFS times.
 */
import type { Service } from '../../src';
import type { ReferenceMachine } from '../../src/testing';
import { PageStore, type TransferableState } from '@bfs/page-store';

export const KEYS = 16;
const TIME_OFFSET = KEYS * 4;
/** Clock skew a backup tolerates in the primary's proposed time (virtual ms). */
export const SKEW_MS = 5_000;

export function addOp(key: number, delta: number, padding = 0): Uint8Array {
  const b = Buffer.alloc(7 + padding);
  b[0] = 1;
  b.writeUInt16BE(key, 1);
  b.writeUInt32BE(delta, 3);
  return b;
}

export function readOp(key: number): Uint8Array {
  const b = Buffer.alloc(7);
  b[0] = 2;
  b.writeUInt16BE(key, 1);
  return b;
}

function timeOf(nondet: Uint8Array): number {
  return nondet.length === 8 ? Buffer.from(nondet).readDoubleBE(0) : 0;
}

/** The counter logic over any byte store; shared by the service and the reference machine. */
function step(
  read: (off: number, len: number) => Uint8Array,
  write: ((off: number, data: Uint8Array) => void) | undefined,
  op: Uint8Array,
  nondet: Uint8Array,
): Uint8Array {
  const out = Buffer.alloc(12);
  if (op.length < 7 || (op[0] !== 1 && op[0] !== 2)) {
    out.writeUInt32BE(0xffffffff, 0);
    return out;
  }
  const o = Buffer.from(op);
  const key = o.readUInt16BE(1) % KEYS;
  let value = Buffer.from(read(key * 4, 4)).readUInt32BE(0);
  let time = Buffer.from(read(TIME_OFFSET, 8)).readDoubleBE(0);
  if (op[0] === 1 && write) {
    value = (value + o.readUInt32BE(3)) >>> 0;
    const v = Buffer.alloc(4);
    v.writeUInt32BE(value);
    write(key * 4, v);
    time = Math.max(timeOf(nondet), time + 1);
    const t = Buffer.alloc(8);
    t.writeDoubleBE(time);
    write(TIME_OFFSET, t);
  }
  out.writeUInt32BE(value, 0);
  out.writeDoubleBE(time, 4);
  return out;
}

export class KvService implements Service {
  constructor(readonly state: TransferableState = new PageStore({ size: 64 * 1024 })) {}
  execute(op: Uint8Array, _clientId: number, nondet: Uint8Array, readOnly: boolean): Uint8Array {
    return step(
      (o, l) => this.state.read(o, l),
      readOnly ? undefined : (o, d) => this.state.write(o, d),
      op,
      nondet,
    );
  }
  proposeNondet(now: number): Uint8Array {
    const b = Buffer.alloc(8);
    b.writeDoubleBE(now);
    return b;
  }
  checkNondet(nondet: Uint8Array, now: number): boolean {
    return nondet.length === 8 && Math.abs(timeOf(nondet) - now) <= SKEW_MS;
  }
}

/** Reference machine: the same logic on a plain buffer, with a history for read-only checks. */
export class KvReference implements ReferenceMachine {
  private readonly mem = Buffer.alloc(TIME_OFFSET + 8);
  /** Snapshot of the memory after each batch, by seq (0 = initial). */
  private readonly history: Buffer[] = [Buffer.alloc(TIME_OFFSET + 8)];
  apply(op: Uint8Array, _clientId: number, nondet: Uint8Array): Uint8Array {
    return step(
      (o, l) => this.mem.subarray(o, o + l),
      (o, d) => this.mem.set(d, o),
      op,
      nondet,
    );
  }
  endBatch(seq: number): void {
    this.history[seq] = Buffer.from(this.mem);
  }
  readOnlyValid(op: Uint8Array, result: Uint8Array, sinceSeq: number): boolean {
    for (let s = sinceSeq; s < this.history.length; s++) {
      const m = this.history[s];
      if (!m) continue;
      const r = step((o, l) => m.subarray(o, o + l), undefined, op, new Uint8Array(0));
      if (Buffer.compare(r, Buffer.from(result)) === 0) return true;
    }
    return false;
  }
}
