/**
 * XDR (RFC 4506) reader and writer. Every length read from the wire is checked against the bytes
 * that remain before anything is allocated, so a hostile length can never make us allocate more
 * than the packet we already hold.
 */

/** Malformed or truncated XDR input; the RPC layer answers it with GARBAGE_ARGS. */
export class XdrError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'XdrError';
  }
}

const TWO_32 = 0x1_0000_0000;

export class XdrReader {
  private readonly view: DataView;
  offset: number;

  constructor(
    readonly bytes: Uint8Array,
    offset = 0,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.offset = offset;
  }

  get remaining(): number {
    return this.bytes.length - this.offset;
  }

  private need(n: number, what: string): void {
    if (n > this.bytes.length - this.offset) {
      throw new XdrError(`truncated ${what}: need ${n} bytes, ${this.remaining} left`);
    }
  }

  u32(): number {
    this.need(4, 'uint32');
    const v = this.view.getUint32(this.offset);
    this.offset += 4;
    return v;
  }

  i32(): number {
    this.need(4, 'int32');
    const v = this.view.getInt32(this.offset);
    this.offset += 4;
    return v;
  }

  /** uint64 as a number; values above 2^53 lose precision, which no size here reaches. */
  u64(): number {
    this.need(8, 'uint64');
    const hi = this.view.getUint32(this.offset);
    const lo = this.view.getUint32(this.offset + 4);
    this.offset += 8;
    return hi * TWO_32 + lo;
  }

  bool(): boolean {
    const v = this.u32();
    if (v > 1) throw new XdrError(`bad boolean ${v}`);
    return v === 1;
  }

  /** Fixed-length opaque (a view into the packet, not a copy). */
  fixed(n: number): Uint8Array {
    // Arithmetic, not bit operations: lengths near 2^32 must not wrap to negative numbers.
    const padded = n + ((4 - (n % 4)) % 4);
    this.need(padded, 'fixed opaque');
    const v = this.bytes.subarray(this.offset, this.offset + n);
    this.offset += padded;
    return v;
  }

  /** Variable-length opaque with a declared maximum (a view into the packet). */
  opaque(max = 0xffffffff): Uint8Array {
    const n = this.u32();
    if (n > max) throw new XdrError(`opaque length ${n} exceeds maximum ${max}`);
    return this.fixed(n);
  }

  string(max = 0xffffffff): string {
    return Buffer.from(this.opaque(max)).toString('utf8');
  }

  /** Optional-data (XDR `*T`). */
  optional<T>(read: (r: XdrReader) => T): T | undefined {
    return this.bool() ? read(this) : undefined;
  }

  /** Throws unless every byte was consumed; trailing bytes mean a malformed call. */
  end(): void {
    if (this.offset !== this.bytes.length) {
      throw new XdrError(`${this.bytes.length - this.offset} unexpected trailing bytes`);
    }
  }
}

const INITIAL_CAPACITY = 256;

export class XdrWriter {
  private buf: Uint8Array;
  private dv: DataView;
  offset = 0;

  constructor(capacity = INITIAL_CAPACITY) {
    this.buf = new Uint8Array(capacity);
    this.dv = new DataView(this.buf.buffer);
  }

  private ensure(n: number): void {
    if (this.offset + n <= this.buf.length) return;
    // Doubling, or just what a large item needs: a 1 MiB READ or WRITE payload doubled to a
    // zero-filled 2 MiB buffer, an allocation as costly as a copy of the payload.
    const cap = Math.max(this.buf.length * 2, this.offset + n);
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.offset));
    this.buf = next;
    this.dv = new DataView(next.buffer);
  }

  u32(v: number): this {
    this.ensure(4);
    this.dv.setUint32(this.offset, v >>> 0);
    this.offset += 4;
    return this;
  }

  i32(v: number): this {
    this.ensure(4);
    this.dv.setInt32(this.offset, v | 0);
    this.offset += 4;
    return this;
  }

  u64(v: number): this {
    this.ensure(8);
    const n = Math.max(0, Math.floor(v));
    this.dv.setUint32(this.offset, Math.floor(n / TWO_32) >>> 0);
    this.dv.setUint32(this.offset + 4, n >>> 0);
    this.offset += 8;
    return this;
  }

  bool(v: boolean): this {
    return this.u32(v ? 1 : 0);
  }

  fixed(data: Uint8Array): this {
    const padded = data.length + ((4 - (data.length % 4)) % 4);
    this.ensure(padded);
    this.buf.set(data, this.offset);
    this.buf.fill(0, this.offset + data.length, this.offset + padded);
    this.offset += padded;
    return this;
  }

  opaque(data: Uint8Array): this {
    this.u32(data.length);
    return this.fixed(data);
  }

  string(s: string): this {
    return this.opaque(Buffer.from(s, 'utf8'));
  }

  /** Starts over, keeping the buffer (a writer reused across calls allocates only the copy). */
  reset(): this {
    this.offset = 0;
    return this;
  }

  /** The bytes written so far, without copying: valid only until the writer is written again. */
  view(): Uint8Array {
    return this.buf.subarray(0, this.offset);
  }

  /** A copy of the bytes written so far. */
  bytes(): Uint8Array {
    return this.buf.slice(0, this.offset);
  }
}
