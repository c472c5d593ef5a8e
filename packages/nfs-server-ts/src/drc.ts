/**
 * Duplicate-request cache (RFC 5531 leaves it to implementations; knfsd's is the model): replies
 * to non-idempotent calls are kept, keyed by client address, xid, program, version, procedure and
 * a checksum of the arguments, so a retransmitted CREATE or REMOVE is answered, not re-executed.
 * LRU-bounded by entry count.
 */
import type { RpcCall } from './rpc';

/** Bytes of arguments folded into the key's checksum (enough to tell different calls apart). */
export const DRC_CHECKSUM_BYTES = 256;

export class DuplicateRequestCache {
  private readonly entries = new Map<string, Uint8Array | 'in-progress'>();

  constructor(readonly maxEntries: number) {}

  static key(
    address: string,
    call: Pick<RpcCall, 'xid' | 'program' | 'version' | 'procedure' | 'args'>,
  ): string {
    // FNV-1a over the first bytes of the arguments, plus their length.
    let h = 0x811c9dc5;
    const n = Math.min(call.args.length, DRC_CHECKSUM_BYTES);
    for (let i = 0; i < n; i++) h = Math.imul(h ^ call.args[i], 0x01000193) >>> 0;
    return `${address}|${call.xid}|${call.program}|${call.version}|${call.procedure}|${call.args.length}|${h}`;
  }

  lookup(key: string): Uint8Array | 'in-progress' | undefined {
    const v = this.entries.get(key);
    if (v !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, v);
    }
    return v;
  }

  begin(key: string): void {
    this.set(key, 'in-progress');
  }

  complete(key: string, reply: Uint8Array): void {
    this.set(key, reply);
  }

  get size(): number {
    return this.entries.size;
  }

  private set(key: string, v: Uint8Array | 'in-progress'): void {
    this.entries.delete(key);
    this.entries.set(key, v);
    while (this.entries.size > this.maxEntries) {
      this.entries.delete(this.entries.keys().next().value as string);
    }
  }
}
