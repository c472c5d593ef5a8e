/**
 * Faulty clients, for the attack measurements (docs/pbft.md, "Attacks"): a correct client core
 * whose frames are spoiled on the way out. A client holds only its own keys, so what it can do
 * is spoil its own authenticators and send too often.
 */
import { MsgType, tryDecodeFrame, macOffset } from '../codec';
import { MAC_BYTES, VIEW_CHANGE_TIMEOUT_MS, maxFaulty, primaryOf } from '../constants';
import type { RequestSigner } from '../request-signatures';
import type { Transport } from '../transport';
import { SpoiledRequestSigner } from './request-signatures';

export const FAULTY_CLIENT_MODES = [
  'partial-mac',
  'bad-mac',
  'bad-signature',
  'retransmit',
] as const;
/**
 * partial-mac: each request's authenticator checks at the primary it presumes and at f - 1 other
 * replicas, and fails at the f + 1 after the primary: the primary orders it, too few backups can
 * accept the batch (the MAC attack of Aardvark, NSDI 2009, section 2); and its signature fails
 * everywhere (`faultySigner`), or its requests would simply be valid where signatures are on;
 * bad-mac: every MAC of every request fails, and its signature;
 * bad-signature: every MAC checks, the signature fails: backups that got it directly must not
 * time out on it, since no correct primary orders it;
 * retransmit: correct requests, re-sent to every replica as often as it can (`due`).
 */
export type FaultyClientMode = (typeof FAULTY_CLIENT_MODES)[number];

export function isFaultyClientMode(s: string): s is FaultyClientMode {
  return (FAULTY_CLIENT_MODES as readonly string[]).includes(s);
}

/**
 * partial-mac: a request unanswered this many view-change timeouts after the view presumed last
 * changed presumes the next view (the request it spoiled made the replicas change views; the
 * replies that would say so never come to it).
 */
export const PRESUMED_VIEW_CHANGE_TIMEOUTS = 1.5;
/** retransmit: copies of its latest request per `due` call, to every replica. */
export const RETRANSMIT_COPIES = 4;

/**
 * The signer a faulty client's core signs with: one whose signatures fail, but for `retransmit`
 * (correct requests). Undefined where the cluster runs without request signatures.
 */
export function faultySigner(
  mode: FaultyClientMode,
  inner: RequestSigner | undefined,
): RequestSigner | undefined {
  if (!inner || mode === 'retransmit') return inner;
  return new SpoiledRequestSigner(inner);
}

/** What one faulty client does to its frames. The simulator and `FaultyClientTransport` share it. */
export class FaultyClientBehaviour {
  /** Requests spoiled or re-sent. */
  spoiled = 0;
  private view = 0;
  private viewSince = 0;
  /** Per client id: the timestamp of its latest request, and when it was first sent. */
  private readonly current = new Map<number, { timestamp: number; since: number }>();
  private latest: Uint8Array | undefined;

  constructor(
    readonly mode: FaultyClientMode,
    private readonly n: number,
    private readonly toleranceMs: number = VIEW_CHANGE_TIMEOUT_MS,
  ) {}

  /** The frame that goes to a replica instead of `bytes`. */
  send(bytes: Uint8Array, now: number): Uint8Array {
    const f = tryDecodeFrame(bytes);
    if (!f) return bytes;
    if (f.body.type !== MsgType.Request) return bytes;
    this.latest = bytes;
    if (this.mode === 'retransmit') return bytes;
    if (this.mode === 'bad-signature') {
      this.spoiled++;
      return bytes;
    }
    if (this.mode === 'partial-mac') {
      // A new request: the view presumed stands until this one goes unanswered.
      const c = this.current.get(f.body.clientId);
      if (c?.timestamp !== f.body.timestamp)
        this.current.set(f.body.clientId, { timestamp: f.body.timestamp, since: now });
      const waited = now - Math.max(this.viewSince, this.current.get(f.body.clientId)!.since);
      if (waited >= PRESUMED_VIEW_CHANGE_TIMEOUTS * this.toleranceMs) {
        this.view++;
        this.viewSince = now;
      }
    }
    const out = Buffer.from(bytes);
    for (let i = 0; i < f.macs.length; i++) {
      if (!this.spoils(i)) continue;
      const at = macOffset(f.signed.length, i);
      for (let k = 0; k < MAC_BYTES; k++) out[at + k]! ^= 0xa5;
    }
    this.spoiled++;
    return out;
  }

  /** A frame the client received: replies tell partial-mac the view. */
  observe(bytes: Uint8Array, now: number): void {
    const f = tryDecodeFrame(bytes);
    if (!f) return;
    const b = f.body;
    const view =
      b.type === MsgType.Reply
        ? b.view
        : b.type === MsgType.ReplyBatch
          ? Math.max(...b.replies.map((r) => r.view))
          : -1;
    if (view > this.view) {
      this.view = view;
      this.viewSince = now;
    }
  }

  /** retransmit: frames to send now (its latest request to every replica). */
  due(): { to: number[]; bytes: Uint8Array }[] {
    if (this.mode !== 'retransmit' || !this.latest) return [];
    const to = Array.from({ length: this.n }, (_, i) => i);
    this.spoiled += RETRANSMIT_COPIES;
    return Array.from({ length: RETRANSMIT_COPIES }, () => ({ to, bytes: this.latest! }));
  }

  private spoils(replica: number): boolean {
    if (this.mode === 'bad-mac') return true;
    const after = (replica - primaryOf(this.view, this.n) + this.n) % this.n;
    return after >= 1 && after <= maxFaulty(this.n) + 1;
  }
}

/** Wraps a client's transport so that its requests go through a `FaultyClientBehaviour`. */
export class FaultyClientTransport implements Transport {
  readonly behaviour: FaultyClientBehaviour;

  constructor(
    private readonly inner: Transport,
    mode: FaultyClientMode,
    n: number,
    toleranceMs?: number,
  ) {
    this.behaviour = new FaultyClientBehaviour(mode, n, toleranceMs);
  }

  get ids(): readonly number[] {
    return this.inner.ids;
  }

  send(to: number, bytes: Uint8Array): void {
    this.inner.send(to, this.behaviour.send(bytes, Date.now()));
  }

  onMessage(handler: Parameters<Transport['onMessage']>[0]): void {
    this.inner.onMessage((from, bytes) => {
      this.behaviour.observe(bytes, Date.now());
      handler(from, bytes);
    });
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
