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
  tryDecodeFrame,
  encodeUnsealed,
  setMac,
} from '../codec';
import {
  FIRST_CLIENT_ID,
  LARGE_REQUEST_BYTES,
  MAX_BATCH_BYTES,
  REQUEST_TIMEOUT_TIMEOUTS,
  VIEW_CHANGE_TIMEOUT_MS,
  primaryOf,
} from '../constants';
import { type MacAuthenticator, multicastDigest, sha256 } from '../crypto';
import type { ReplicaOptions } from '../replica';
import type { Transport } from '../transport';
import type { ByzantineMode } from '../byzantine-modes';

/** replay: chance that a frame sent is followed by an old one. */
export const REPLAY_PROBABILITY = 0.3;
/** replay: old frames kept (a uniform sample of everything sent and received, so old views stay). */
export const REPLAY_HISTORY = 256;
/** impersonate: how far ahead of the client's real timestamp a forged request claims to be. */
export const FORGED_TIMESTAMP_AHEAD = 1000;
/**
 * slow-primary: share of each of the backups' limits it waits before it releases a PRE-PREPARE
 * (the view-change timeout since the last commit; REQUEST_TIMEOUT_TIMEOUTS of them for the
 * oldest request the batch holds). The commit lands a few network delays after the release,
 * and a re-sent slot (loss) up to RESEND_INTERVAL_MS later: 0.8 leaves that margin at the
 * default timeout of 1 s (and at the simulator tests' 300 ms with delays up to 20 ms).
 */
export const SLOW_PRIMARY_SHARE = 0.8;
/** slow-primary: requests whose arrival times it keeps (the oldest are forgotten first). */
const ARRIVALS_KEPT = 65_536;
/** selective-primary: by default every client id this far apart from FIRST_CLIENT_ID is a victim. */
export const SELECTIVE_VICTIM_STRIDE = 4;
/** flood: a 1 Gbit/s link, the default rate (the sender's socket backlog caps it further). */
export const FLOOD_LINK_BYTES_PER_SEC = 125_000_000;
/** flood: client ids it sends junk replies to (the first ones it heard from). */
export const FLOOD_MAX_CLIENTS = 64;
/** flood: requests in one junk batch (their ops share the batch's bytes). */
export const FLOOD_BATCH_REQUESTS = 64;
/** Period of the timer a `ByzantineTransport` runs for the attacks that act on their own (ms). */
export const ATTACK_TICK_MS = 10;
/** slow-primary: released slots remembered, so that the core's re-sends of them pass at once. */
const RELEASED_KEPT = 1024;

/** What the performance attacks know and target. */
export interface AttackOptions {
  /**
   * slow-primary: the backups' view-change timeout it stays under (ms); an attacker that knows
   * the code reads VIEW_CHANGE_TIMEOUT_MS (the default) or the deployment's setting.
   */
  toleranceMs?: number;
  /** selective-primary: whose requests it leaves out (default: every SELECTIVE_VICTIM_STRIDE-th id). */
  victims?: (clientId: number) => boolean;
  /** flood: bytes per second to each receiver (default FLOOD_LINK_BYTES_PER_SEC). */
  floodBytesPerSec?: number;
  /** flood: bytes of one junk batch (default MAX_BATCH_BYTES, the most a backup accepts). */
  floodBatchBytes?: number;
}

/** selective-primary's default victims: a quarter of the ids, the first of each range among them. */
export function defaultVictim(clientId: number): boolean {
  return (clientId - FIRST_CLIENT_ID) % SELECTIVE_VICTIM_STRIDE === 0;
}

/**
 * Settings a Byzantine replica gives its own core. A slow primary proposes one PRE-PREPARE at a
 * time, and its core does not monitor (it would blame itself for the slots its transport
 * holds). The commit-timer strategy also proposes one request per PRE-PREPARE (the least work
 * per slot it could get away with before the per-request timer); the current one full
 * batches, since every request must commit within the per-request limit.
 */
export function attackerReplicaOptions(mode: ByzantineMode): Partial<ReplicaOptions> {
  const quiet = { maxOutstandingPrePrepares: 1, requestTimeoutMs: 0, monitorWindowMs: 0 };
  if (mode === 'slow-primary') return quiet;
  if (mode === 'slow-primary-commit-timer') return { ...quiet, maxBatchRequests: 1 };
  return {};
}

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
  if (mode !== 'equivocate' && mode !== 'bad-nondet' && !falsifiesVotes(mode)) return bytes;
  const f = tryDecodeFrame(bytes);
  if (!f) return bytes;
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

function falsifiesVotes(mode: ByzantineMode): boolean {
  return mode === 'wrong-replies' || mode === 'wrong-digests' || mode === 'lie';
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

/** slow-primary: a PRE-PREPARE held, with what goes to whom once released. */
interface Held {
  view: number;
  seq: number;
  /** Made, or the previous release if later (the backups' commit timer restarted then). */
  since: number;
  made: number;
  /** Its inline requests ("client:timestamp"), and whether it carries separately sent ones. */
  keys: string[];
  large: boolean;
  sends: ByzantineSend[];
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
  /** slow-primary: PRE-PREPAREs held, by "view:seq", with what goes to whom once released. */
  private readonly held = new Map<string, Held>();
  private readonly released = new Set<string>();
  /**
   * slow-primary: when the backups learned of each request ("client:timestamp"), as far as it
   * can tell: a large request, or one its client marks as sent to all, went to every replica
   * with its first copy, another with its second (the client's retransmission to all, or a
   * backup's relay). Undefined: only seen once.
   */
  private readonly arrivals = new Map<string, { first: number; learned?: number }>();
  /** flood: client ids heard of, the junk frames (built once), the rate's budget. */
  private readonly clients = new Set<number>();
  private floodFrames: Uint8Array[] | undefined;
  private readonly floodReplies = new Map<number, Uint8Array>();
  private floodNext = 0;
  private floodAt: number | undefined;
  private readonly attack: Required<AttackOptions>;

  constructor(
    readonly mode: ByzantineMode,
    private readonly auth: MacAuthenticator,
    private readonly n: number,
    private readonly random: () => number = Math.random,
    attack: AttackOptions = {},
  ) {
    this.attack = {
      toleranceMs: attack.toleranceMs ?? VIEW_CHANGE_TIMEOUT_MS,
      victims: attack.victims ?? defaultVictim,
      floodBytesPerSec: attack.floodBytesPerSec ?? FLOOD_LINK_BYTES_PER_SEC,
      floodBatchBytes: attack.floodBatchBytes ?? MAX_BATCH_BYTES,
    };
  }

  /** Whether this mode sends frames of its own accord: `due` must be called every tick. */
  get acts(): boolean {
    return this.slow || this.mode === 'flood';
  }

  private get slow(): boolean {
    return this.mode === 'slow-primary' || this.mode === 'slow-primary-commit-timer';
  }

  /** What goes out instead of `bytes` to `to` (a replica's multicast or a reply to a client). */
  send(to: number[], bytes: Uint8Array, now = 0): ByzantineSend[] {
    if (to.length === 0) return [];
    const m = this.mode;
    if (m === 'replay') return this.replay(to, bytes);
    if (m === 'impersonate') return this.impersonate(to, bytes);
    if (this.slow) return this.hold(to, bytes, now);
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

  /**
   * A frame this replica received: `replay` and `flood` keep frames any replica can verify,
   * `flood` learns client ids. Returns whether the frame may reach the core: selective-primary
   * keeps the victims' requests (direct or forwarded) from it.
   */
  observe(bytes: Uint8Array, now = 0): boolean {
    const m = this.mode;
    if (m !== 'replay' && m !== 'flood' && m !== 'selective-primary' && m !== 'slow-primary')
      return true;
    const f = tryDecodeFrame(bytes);
    if (!f) return true;
    if (m === 'slow-primary') {
      if (f.body.type === MsgType.Request && !f.body.readOnly)
        this.arrived(
          `${f.body.clientId}:${f.body.timestamp}`,
          bytes.length > LARGE_REQUEST_BYTES || f.body.toAll === true,
          now,
        );
      return true;
    }
    if (m === 'selective-primary') {
      if (f.body.type !== MsgType.Request || !this.attack.victims(f.body.clientId)) return true;
      this.lies++;
      return false;
    }
    if (m === 'flood' && f.body.type === MsgType.Request && this.clients.size < FLOOD_MAX_CLIENTS)
      this.clients.add(f.body.replyTo ?? f.body.clientId);
    // Only multicast authenticators check at other replicas; `to` is filled in when replayed.
    if (f.macs.length === this.n) this.remember({ to: [], bytes });
    return true;
  }

  /** Frames this replica sends of its own accord at `now`: released PRE-PREPAREs, flood frames. */
  due(now: number): ByzantineSend[] {
    if (this.slow) return this.release(now);
    if (this.mode === 'flood') return this.flood(now);
    return [];
  }

  /** slow-primary: holds its own proposals (multicast PRE-PREPAREs of views it leads). */
  private hold(to: number[], bytes: Uint8Array, now: number): ByzantineSend[] {
    const f = tryDecodeFrame(bytes);
    if (!f) return [{ to, bytes }];
    const b = f.body;
    // BATCH-FETCH answers are sealed to one peer; NEW-VIEWs carry their pre-prepares inside.
    if (b.type !== MsgType.PrePrepare || f.macs.length !== this.n) return [{ to, bytes }];
    const key = `${b.view}:${b.seq}`;
    if (this.released.has(key)) return [{ to, bytes }];
    let h = this.held.get(key);
    if (!h) {
      // A later view: what it held for earlier ones is useless now.
      for (const [k, o] of this.held) if (o.view < b.view) this.held.delete(k);
      const keys: string[] = [];
      for (const e of b.entries) {
        const r = 'inline' in e ? tryDecodeFrame(e.inline)?.body : undefined;
        if (r?.type === MsgType.Request) keys.push(`${r.clientId}:${r.timestamp}`);
      }
      const large = b.entries.some((e) => !('inline' in e));
      this.held.set(
        key,
        (h = { view: b.view, seq: b.seq, since: now, made: now, keys, large, sends: [] }),
      );
      this.lies++;
    }
    // The core re-sends a stuck slot: the latest frame per receiver goes out on release.
    for (const t of to) {
      const i = h.sends.findIndex((s) => s.to[0] === t);
      if (i >= 0) h.sends[i] = { to: [t], bytes };
      else h.sends.push({ to: [t], bytes });
    }
    return [];
  }

  /** slow-primary: the arrival of a request's copy (see `arrivals`). */
  private arrived(key: string, sentToAll: boolean, now: number): void {
    const a = this.arrivals.get(key);
    if (a) a.learned ??= now;
    else {
      this.arrivals.set(key, { first: now, learned: sentToAll ? now : undefined });
      if (this.arrivals.size > ARRIVALS_KEPT)
        this.arrivals.delete(this.arrivals.keys().next().value as string);
    }
  }

  /**
   * slow-primary: when `h` must go out. Just before the backups' commit timer fires (a share of
   * the timeout after the last release) and, unless this is the commit-timer strategy, just
   * before their per-request timer fires for the oldest request in it that they know of (a
   * batch with a separately sent request, which every backup knew at once: from when it was
   * made).
   */
  private releaseAt(h: Held): number {
    const t = this.attack.toleranceMs;
    const commitTimer = h.since + SLOW_PRIMARY_SHARE * t;
    if (this.mode === 'slow-primary-commit-timer') return commitTimer;
    let learned = h.large ? h.made : Infinity;
    for (const k of h.keys) learned = Math.min(learned, this.arrivals.get(k)?.learned ?? Infinity);
    return Math.min(commitTimer, learned + SLOW_PRIMARY_SHARE * REQUEST_TIMEOUT_TIMEOUTS * t);
  }

  /** slow-primary: the oldest held proposal, once it is due (`releaseAt`). */
  private release(now: number): ByzantineSend[] {
    let first: Held | undefined;
    for (const h of this.held.values())
      if (!first || h.view < first.view || (h.view === first.view && h.seq < first.seq)) first = h;
    if (!first || now < this.releaseAt(first)) return [];
    const key = `${first.view}:${first.seq}`;
    this.held.delete(key);
    this.released.add(key);
    if (this.released.size > RELEASED_KEPT)
      this.released.delete(this.released.values().next().value as string);
    // The next one waits its own share from now: the backups' timers restart at this commit.
    for (const h of this.held.values()) h.since = Math.max(h.since, now);
    return first.sends;
  }

  /** flood: the next junk frames within the rate's budget since the last call. */
  private flood(now: number): ByzantineSend[] {
    const last = this.floodAt ?? now - ATTACK_TICK_MS;
    this.floodAt = now;
    // Budget for one tick at most: a stalled sender does not burst.
    let budget = (this.attack.floodBytesPerSec * Math.min(now - last, ATTACK_TICK_MS)) / 1000;
    const frames = (this.floodFrames ??= this.buildFlood());
    const me = this.auth.self;
    const replicas = Array.from({ length: this.n }, (_, i) => i).filter((i) => i !== me);
    const out: ByzantineSend[] = [];
    while (budget > 0) {
      // Replays of what it heard (stale views, old sequence numbers), then its own junk.
      const k = this.floodNext++ % (frames.length + 1);
      const bytes =
        k < frames.length
          ? frames[k]!
          : (this.history[Math.floor(this.random() * this.history.length)]?.bytes ?? frames[0]!);
      out.push({ to: replicas, bytes });
      budget -= bytes.length;
      for (const c of this.clients) {
        let r = this.floodReplies.get(c);
        if (!r) this.floodReplies.set(c, (r = this.junkReply(c)));
        out.push({ to: [c], bytes: r });
      }
      this.lies++;
    }
    return out;
  }

  /** flood: a stale PREPARE and a junk batch in its own name, MAC'd so that they check. */
  private buildFlood(): Uint8Array[] {
    const junk = (len: number) => {
      const b = Buffer.alloc(len);
      for (let i = 0; i < len; i++) b[i] = Math.floor(this.random() * 256);
      return b;
    };
    const opBytes = Math.max(
      1,
      Math.floor(this.attack.floodBatchBytes / FLOOD_BATCH_REQUESTS) - 64,
    );
    const entries = Array.from({ length: FLOOD_BATCH_REQUESTS }, (_, i) => {
      const clientId = FIRST_CLIENT_ID + i;
      const body: Body = {
        type: MsgType.Request,
        clientId,
        timestamp: 1,
        readOnly: false,
        replier: -1,
        op: junk(opBytes),
      };
      return { inline: encodeUnsealed(clientId, body, this.n).frame };
    });
    return [
      this.auth.sealMulticast({ type: MsgType.Prepare, view: 0, seq: 1, digest: junk(32) }, this.n),
      this.auth.sealMulticast(
        { type: MsgType.PrePrepare, view: 0, seq: 1, nondet: new Uint8Array(0), entries },
        this.n,
      ),
    ];
  }

  /** flood: a REPLY for a request the client never made, MAC'd so that it checks. */
  private junkReply(clientId: number): Uint8Array {
    return this.auth.sealTo(
      {
        type: MsgType.Reply,
        view: 0,
        timestamp: 1,
        clientId,
        replica: this.auth.self,
        flags: 0,
        result: new Uint8Array(32),
      },
      clientId,
    );
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
    const f = tryDecodeFrame(bytes);
    if (!f) return out;
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
  private readonly timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly inner: Transport,
    mode: ByzantineMode,
    auth: MacAuthenticator,
    n: number,
    random: () => number = Math.random,
    attack: AttackOptions = {},
  ) {
    this.behaviour = new ByzantineBehaviour(mode, auth, n, random, attack);
    if (this.behaviour.acts) {
      this.timer = setInterval(() => {
        for (const s of this.behaviour.due(Date.now()))
          for (const t of s.to) this.inner.send(t, s.bytes);
      }, ATTACK_TICK_MS);
      this.timer.unref();
    }
  }

  /** Frames falsified, withheld, replayed or forged. */
  get lies(): number {
    return this.behaviour.lies;
  }

  get ids(): readonly number[] {
    return this.inner.ids;
  }

  send(to: number, bytes: Uint8Array): void {
    for (const s of this.behaviour.send([to], bytes, Date.now()))
      for (const t of s.to) this.inner.send(t, s.bytes);
  }

  onMessage(handler: Parameters<Transport['onMessage']>[0]): void {
    this.inner.onMessage((from, bytes) => {
      return this.behaviour.observe(bytes, Date.now()) ? handler(from, bytes) : undefined;
    });
  }

  close(): Promise<void> {
    clearInterval(this.timer);
    return this.inner.close();
  }
}
