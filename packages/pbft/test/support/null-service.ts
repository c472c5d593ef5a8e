/**
 * The paper's null service for micro-benchmarks: op = u32 result size | argument bytes; the
 * result is that many zero bytes. Its state is an untouched page store.
 */
import type { Service } from '../../src';
import { PageStore } from '@bfs/page-store';

export function nullOp(argBytes: number, resultBytes: number): Uint8Array {
  const b = Buffer.alloc(4 + argBytes);
  b.writeUInt32BE(resultBytes, 0);
  return b;
}

export class NullService implements Service {
  readonly state = new PageStore({ size: 4096 });
  execute(op: Uint8Array): Uint8Array {
    if (op.length < 4) return new Uint8Array(0);
    return new Uint8Array(Math.min(Buffer.from(op).readUInt32BE(0), 64 * 1024));
  }
  proposeNondet(): Uint8Array {
    return new Uint8Array(0);
  }
  checkNondet(nondet: Uint8Array): boolean {
    return nondet.length === 0;
  }
}
