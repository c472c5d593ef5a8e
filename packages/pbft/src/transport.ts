/**
 * Transports move opaque frames between node ids. Authentication is end to end (MACs inside the
 * frames), so a transport only needs to deliver bytes, best effort: the protocol retransmits.
 */
/**
 * Handles one frame; may return a number of bytes to charge the connection it came by on top of
 * its size (a frame the receiver refused: TcpTransport's input scheduler then serves that
 * connection less). Transports without a scheduler ignore it.
 */
export type MessageHandler = (from: number, bytes: Uint8Array) => number | void;

export interface Transport {
  /** The node ids this endpoint answers to (a client process may hold several client ids). */
  readonly ids: readonly number[];
  send(to: number, bytes: Uint8Array): void;
  onMessage(handler: MessageHandler): void;
  close(): Promise<void>;
}

/** An in-process network: delivery on a later turn of the event loop, in send order. */
export class MemoryNetwork {
  private readonly endpoints = new Map<number, MemoryEndpoint>();
  /** Frames sent to ids nobody holds. */
  undeliverable = 0;

  endpoint(ids: number[]): MemoryEndpoint {
    const e = new MemoryEndpoint(this, ids);
    for (const id of ids) {
      if (this.endpoints.has(id)) throw new Error(`node id ${id} already attached`);
      this.endpoints.set(id, e);
    }
    return e;
  }

  /** @internal */
  deliver(from: number, to: number, bytes: Uint8Array): void {
    setImmediate(() => {
      const e = this.endpoints.get(to);
      if (e && !e.closed) e.handler?.(from, bytes);
      else this.undeliverable++;
    });
  }

  /** @internal */
  detach(e: MemoryEndpoint): void {
    for (const id of e.ids) if (this.endpoints.get(id) === e) this.endpoints.delete(id);
  }
}

export class MemoryEndpoint implements Transport {
  handler: MessageHandler | undefined;
  closed = false;
  constructor(
    private readonly net: MemoryNetwork,
    readonly ids: readonly number[],
  ) {}
  send(to: number, bytes: Uint8Array): void {
    if (!this.closed) this.net.deliver(this.ids[0]!, to, bytes);
  }
  onMessage(handler: MessageHandler): void {
    this.handler = handler;
  }
  close(): Promise<void> {
    this.closed = true;
    this.net.detach(this);
    return Promise.resolve();
  }
}
