/**
 * Byzantine behaviour of a replica, for tests and demonstrations: the replica runs the protocol
 * but falsifies what it sends. The frames stay properly authenticated with the replica's own
 * keys (a Byzantine replica has its own keys), so receivers must reject them on content, never
 * on MACs; only `impersonate` forges frames whose MACs cannot check (the keys of the node it
 * claims to be are not its own).
 */
import {
  Body,
  MsgType,
  PrePrepareMsg,
  REPLY_DIGEST_ONLY,
  decodeFrame,
  encodeUnsealed,
  setMac,
} from '../codec';
import { primaryOf } from '../constants';
import { type MacAuthenticator, multicastDigest, sha256 } from '../crypto';
import type { Transport } from '../transport';
import type { ByzantineMode } from '../byzantine-modes';

/** replay: chance that a frame sent is followed by an old one. */
export const REPLAY_PROBABILITY = 0.3;
/** replay: old frames kept (a uniform sample of everything sent and received, so old views stay). */
export const REPLAY_HISTORY = 256;
/** impersonate: how far ahead of the client's real timestamp a forged request claims to be. */
export const FORGED_TIMESTAMP_AHEAD = 1000;

/**
 * The frame a Byzantine replica sends instead of `bytes` to `to` (its first receiver for
 * point-to-point replies), or null to send nothing. `junk` supplies 32 wrong bytes. The modes
 * that add frames (replay, impersonate) or depend on the receiver (equivocate) need
 * `ByzantineBehaviour`; here they return what goes to `to` alone.
 */
export function falsify(
  mode: ByzantineMode,
  auth: MacAuthenticator,
  n: number,
  to: number,
  bytes: Uint8Array,
  junk: Uint8Array,
): Uint8Array | null {
  if (mode === 'silent') return null;
  if (mode === 'replay' || mode === 'impersonate') return bytes;
  let f;
  try {
    f = decodeFrame(bytes);
  } catch {
    return bytes;
  }
  const b = f.body;
  if (mode === 'equivocate') {
    if (b.type !== MsgType.PrePrepare || !equivocateTo(b, to)) return bytes;
    return auth.sealMulticast(equivocation(b), n);
  }
  if (mode === 'bad-nondet') {
    if (b.type !== MsgType.PrePrepare) return bytes;
    return auth.sealMulticast({ ...b, nondet: farFuture(b.nondet) }, n);
  }
  if (b.type === MsgType.Reply && mode !== 'wrong-digests')
    return auth.sealTo({ ...b, result: wrongResult(b.flags, b.result, junk) }, to);
  if (b.type === MsgType.ReplyBatch && mode !== 'wrong-digests') {
    const replies = b.replies.map((r) => ({ ...r, result: wrongResult(r.flags, r.result, junk) }));
    return auth.sealTo({ ...b, replies }, to);
  }
  if (
    (b.type === MsgType.Prepare || b.type === MsgType.Commit || b.type === MsgType.Checkpoint) &&
    mode !== 'wrong-replies'
  ) {
    return auth.sealMulticast({ ...b, digest: junk }, n);
  }
  return bytes;
}

/** A wrong reply result: junk for a digest, one more byte for a full result. */
function wrongResult(flags: number, result: Uint8Array, junk: Uint8Array): Uint8Array {
  return flags & REPLY_DIGEST_ONLY ? junk : Buffer.concat([result, junk.subarray(0, 1)]);
}

/** equivocate: which receivers get the other batch (about half, a different half per seq). */
function equivocateTo(pp: PrePrepareMsg, to: number): boolean {
  return (to + pp.view + pp.seq) % 2 === 1;
}

/**
 * A second, valid-looking batch for the same (view, seq): by seq, the nondet value changed in its
 * lowest bit (still within any clock-skew bound), the requests reversed, or the last one dropped.
 */
function equivocation(pp: PrePrepareMsg): PrePrepareMsg {
  const variant = pp.seq % 3;
  if (variant === 1 && pp.entries.length > 1) return { ...pp, entries: [...pp.entries].reverse() };
  if (variant === 2 && pp.entries.length > 1) return { ...pp, entries: pp.entries.slice(0, -1) };
  const nondet = Buffer.from(pp.nondet.length > 0 ? pp.nondet : [0]);
  nondet[nondet.length - 1]! ^= 1;
  return { ...pp, nondet };
}

/**
 * A far-future time in the 8-byte big-endian encodings services use (a double of milliseconds,
 * u64 milliseconds, or u32 seconds and u32 nanoseconds): top byte 0x7f, the next 0.
 */
function farFuture(nondet: Uint8Array): Buffer {
  const out = Buffer.alloc(Math.max(nondet.length, 8));
  out.set(nondet);
  out[0] = 0x7f;
  out[1] = 0;
  return out;
}

/** Frames to put on the wire: the same bytes to every id of `to`. */
export interface ByzantineSend {
  to: number[];
  bytes: Uint8Array;
}

/**
 * One Byzantine replica's behaviour across frames: what it sends instead of each frame, keeping
 * what `replay` needs to remember. The simulator and `ByzantineTransport` share it.
 */
export class ByzantineBehaviour {
  /** Frames falsified, withheld, replayed or forged. */
  lies = 0;
  private readonly history: ByzantineSend[] = [];
  private seen = 0;

  constructor(
    readonly mode: ByzantineMode,
    private readonly auth: MacAuthenticator,
    private readonly n: number,
    private readonly random: () => number = Math.random,
  ) {}

  /** What goes out instead of `bytes` to `to` (a replica's multicast or a reply to a client). */
  send(to: number[], bytes: Uint8Array): ByzantineSend[] {
    if (to.length === 0) return [];
    const m = this.mode;
    if (m === 'replay') return this.replay(to, bytes);
    if (m === 'impersonate') return this.impersonate(to, bytes);
    const junk = Buffer.alloc(32);
    for (let i = 0; i < 32; i++) junk[i] = Math.floor(this.random() * 256);
    const out: ByzantineSend[] = [];
    if (m === 'equivocate') {
      // Depends on the receiver: each gets its own version.
      for (const t of to)
        out.push({ to: [t], bytes: falsify(m, this.auth, this.n, t, bytes, junk)! });
      if (out.some((o) => o.bytes !== bytes)) this.lies++;
      return out;
    }
    const f = falsify(m, this.auth, this.n, to[0]!, bytes, junk);
    if (f !== bytes) this.lies++;
    return f ? [{ to, bytes: f }] : [];
  }

  /** A frame this replica received: `replay` keeps frames any replica can verify. */
  observe(bytes: Uint8Array): void {
    if (this.mode !== 'replay') return;
    let macs: number;
    try {
      macs = decodeFrame(bytes).macs.length;
    } catch {
      return;
    }
    // Only multicast authenticators check at other replicas; `to` is filled in when replayed.
    if (macs === this.n) this.remember({ to: [], bytes });
  }

  private replay(to: number[], bytes: Uint8Array): ByzantineSend[] {
    const out: ByzantineSend[] = [{ to, bytes }];
    if (this.history.length > 0 && this.random() < REPLAY_PROBABILITY) {
      const old = this.history[Math.floor(this.random() * this.history.length)]!;
      // Own frames go back to whom they went; received ones to this frame's receivers.
      out.push({ to: old.to.length > 0 ? old.to : to, bytes: old.bytes });
      this.lies++;
    }
    this.remember({ to, bytes });
    return out;
  }

  /** Reservoir sampling: every frame ever seen is equally likely to be kept. */
  private remember(s: ByzantineSend): void {
    this.seen++;
    if (this.history.length < REPLAY_HISTORY) this.history.push(s);
    else {
      const i = Math.floor(this.random() * this.seen);
      if (i < REPLAY_HISTORY) this.history[i] = s;
    }
  }

  private impersonate(to: number[], bytes: Uint8Array): ByzantineSend[] {
    const out: ByzantineSend[] = [{ to, bytes }];
    let f;
    try {
      f = decodeFrame(bytes);
    } catch {
      return out;
    }
    const b = f.body;
    const me = this.auth.self;
    const others = Array.from({ length: this.n }, (_, i) => i).filter((i) => i !== me);
    const victim = others[Math.floor(this.random() * others.length)]!;
    let forged: ByzantineSend;
    if (b.type === MsgType.ReplyBatch && b.replies.length > 0) {
      // A batch in another replica's name with wrong results for the same clients.
      out.push({
        to,
        bytes: this.forgeTo(victim, to[0]!, {
          ...b,
          replica: victim,
          replies: b.replies.map((r) => ({
            ...r,
            result: wrongResult(r.flags, r.result, sha256(r.result)),
          })),
        }),
      });
      this.lies++;
      return out;
    } else if (b.type === MsgType.Reply) {
      // A request in the client's name, far ahead of its timestamps: accepted, it would run a
      // junk operation and make the client's real requests look old.
      const op = Buffer.alloc(8);
      for (let i = 0; i < 8; i++) op[i] = Math.floor(this.random() * 256);
      forged = {
        to: others,
        bytes: this.forgeMulticast(b.clientId, {
          type: MsgType.Request,
          clientId: b.clientId,
          timestamp: b.timestamp + FORGED_TIMESTAMP_AHEAD,
          readOnly: false,
          replier: -1,
          op,
        }),
      };
      // And a reply in another replica's name with a wrong result.
      out.push({
        to,
        bytes: this.forgeTo(victim, to[0]!, {
          ...b,
          replica: victim,
          result: Buffer.concat([b.result, op.subarray(0, 1)]),
        }),
      });
      this.lies++;
    } else if (b.type === MsgType.Prepare && primaryOf(b.view, this.n) !== me) {
      // A pre-prepare in the primary's name for the same slot with an empty batch: accepted
      // first, it would displace the real one.
      const claimed = primaryOf(b.view, this.n);
      forged = {
        to,
        bytes: this.forgeMulticast(claimed, {
          type: MsgType.PrePrepare,
          view: b.view,
          seq: b.seq,
          nondet: new Uint8Array(0),
          entries: [],
        }),
      };
    } else {
      // The same vote in another replica's name: accepted, it would inflate a quorum.
      forged = { to, bytes: this.forgeMulticast(victim, b) };
    }
    out.push(forged);
    this.lies++;
    return out;
  }

  /** A multicast-authenticated frame claiming `claimed` as sender, MAC'd with our own keys. */
  private forgeMulticast(claimed: number, body: Body): Buffer {
    const { frame, signedLength } = encodeUnsealed(claimed, body, this.n);
    // Authenticators MAC the digest of the signed part, a pre-prepare's its batch digest
    // (crypto.ts, multicastDigest).
    const digest = multicastDigest(frame.subarray(0, signedLength))!;
    for (let i = 0; i < this.n; i++) {
      const m = this.auth.mac(i, digest);
      if (m) setMac(frame, signedLength, i, m);
    }
    return frame;
  }

  /** A point-to-point frame claiming `claimed` as sender, MAC'd with our key for `to`. */
  private forgeTo(claimed: number, to: number, body: Body): Buffer {
    const { frame, signedLength } = encodeUnsealed(claimed, body, 1);
    const m = this.auth.mac(to, frame.subarray(0, signedLength));
    if (m) setMac(frame, signedLength, 0, m);
    return frame;
  }
}

/** Wraps a replica's transport so that everything it sends goes through a `ByzantineBehaviour`. */
export class ByzantineTransport implements Transport {
  private readonly behaviour: ByzantineBehaviour;

  constructor(
    private readonly inner: Transport,
    mode: ByzantineMode,
    auth: MacAuthenticator,
    n: number,
    random: () => number = Math.random,
  ) {
    this.behaviour = new ByzantineBehaviour(mode, auth, n, random);
  }

  /** Frames falsified, withheld, replayed or forged. */
  get lies(): number {
    return this.behaviour.lies;
  }

  get ids(): readonly number[] {
    return this.inner.ids;
  }

  send(to: number, bytes: Uint8Array): void {
    for (const s of this.behaviour.send([to], bytes))
      for (const t of s.to) this.inner.send(t, s.bytes);
  }

  onMessage(handler: Parameters<Transport['onMessage']>[0]): void {
    this.inner.onMessage((from, bytes) => {
      this.behaviour.observe(bytes);
      handler(from, bytes);
    });
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
