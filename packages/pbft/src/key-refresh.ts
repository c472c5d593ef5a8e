/**
 * Session key refresh (TOCS 2002 section 4.3.1): a replica periodically chooses new keys for the
 * messages sent *to* it and announces them in a NEW-KEY message signed with its long-term
 * signing key, so that session keys an attacker learned stop working. Here the new keys are not
 * carried encrypted: each is HKDF(ECDH secret of the pair, from, to, epoch), so the announcement
 * only names the epoch. The refreshing node keeps accepting the previous key until its next
 * refresh (frames in flight, certificates quoted in view changes).
 *
 * Replicas and client processes (relays) both refresh. A client process has a range of node
 * ids under one long-term key: one NEW-KEY names the whole range, and a receiver accepts it only
 * if every id of the range belongs to the signer.
 *
 * This runs in the host, outside the pure core (signatures and ECDH are asynchronous): a
 * transport wrapper takes NEW-KEY frames out of the stream before the core sees them.
 *
 * NEW-KEY frame: u8 NEW_KEY_MAGIC, u32 first node, u32 count, u64 epoch, u16 length, ECDSA P-256
 * signature over "bfs-pbft new-key" || first node || count || epoch.
 */
import type { MacAuthenticator, NodeKeys, PublicIdentity } from './crypto';
import { SharedSecrets, directionalKey, sign, verifySignature } from './crypto';
import { FIRST_CLIENT_ID, MAX_QUOTED_KEY_EPOCHS } from './constants';
import type { Transport } from './transport';

/** First byte of a NEW-KEY frame (PBFT frames start with MAGIC 0xb1). */
export const NEW_KEY_MAGIC = 0xb2;
/** Largest NEW-KEY frame accepted (a DER or raw P-256 signature is far smaller). */
export const MAX_NEW_KEY_BYTES = 256;
/** Most node ids one NEW-KEY may name (a client process's id range). */
export const MAX_NEW_KEY_IDS = 4096;
const HEAD_BYTES = 1 + 4 + 4 + 8 + 2;
/** Default period of a replica's key refresh (ms). */
export const KEY_REFRESH_INTERVAL_MS = 60_000;
/** How often a replica repeats its current NEW-KEY for peers that missed it (ms). */
export const KEY_ANNOUNCE_INTERVAL_MS = 1_000;

const LABEL = Buffer.from('bfs-pbft new-key');

function signedBytes(node: number, count: number, epoch: number): Buffer {
  const b = Buffer.alloc(LABEL.length + 16);
  LABEL.copy(b);
  b.writeUInt32BE(node, LABEL.length);
  b.writeUInt32BE(count, LABEL.length + 4);
  b.writeUInt32BE(Math.floor(epoch / 0x100000000), LABEL.length + 8);
  b.writeUInt32BE(epoch >>> 0, LABEL.length + 12);
  return b;
}

export function encodeNewKey(
  node: number,
  count: number,
  epoch: number,
  signature: Uint8Array,
): Buffer {
  const b = Buffer.alloc(HEAD_BYTES + signature.length);
  b[0] = NEW_KEY_MAGIC;
  b.writeUInt32BE(node, 1);
  b.writeUInt32BE(count, 5);
  b.writeUInt32BE(Math.floor(epoch / 0x100000000), 9);
  b.writeUInt32BE(epoch >>> 0, 13);
  b.writeUInt16BE(signature.length, 17);
  Buffer.from(signature).copy(b, HEAD_BYTES);
  return b;
}

export function decodeNewKey(
  bytes: Uint8Array,
): { node: number; count: number; epoch: number; signature: Uint8Array } | undefined {
  if (bytes.length < HEAD_BYTES || bytes.length > MAX_NEW_KEY_BYTES || bytes[0] !== NEW_KEY_MAGIC)
    return undefined;
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = b.readUInt32BE(5);
  const hi = b.readUInt32BE(9);
  const len = b.readUInt16BE(17);
  if (count < 1 || count > MAX_NEW_KEY_IDS) return undefined;
  if (hi > 0x1fffff || HEAD_BYTES + len !== b.length) return undefined;
  return {
    node: b.readUInt32BE(1),
    count,
    epoch: hi * 0x100000000 + b.readUInt32BE(13),
    signature: b.subarray(HEAD_BYTES),
  };
}

export interface KeyRefreshOptions {
  /**
   * This process's node ids and their authenticators (a relay has many client ids): a contiguous
   * range, in order.
   */
  selves: { id: number; auth: MacAuthenticator }[];
  /** This process's long-term keys. */
  own: NodeKeys;
  /** Public identity of every node we exchange MACs with, by node id. */
  peers: Map<number, PublicIdentity>;
  /** ECDH secrets of `own` (pass the cache the initial session keys came from). */
  secrets?: SharedSecrets;
  /**
   * Key epochs of before a restart (what `onEpochs` last saw): their keys are re-derived and
   * accepted again for frames quoted in certificates, so a prepared certificate persisted
   * before the restart still convinces the others (and they ours).
   */
  pastEpochs?: KeyEpochs;
  /**
   * Called with the epochs to persist, synchronously, whenever they change: after our refresh,
   * before its announcement leaves, and after a replica peer's NEW-KEY is installed.
   */
  onEpochs?: (epochs: KeyEpochs) => void;
}

/**
 * The key epochs a node keeps across restarts, newest first, at most MAX_QUOTED_KEY_EPOCHS each:
 * its own (the keys of what is sent to it) and each replica peer's (what it sends them).
 */
export interface KeyEpochs {
  own: number[];
  peers: Record<number, number[]>;
}

/** Parses persisted KeyEpochs; undefined if the value is not one. */
export function parseKeyEpochs(v: unknown): KeyEpochs | undefined {
  const ok = (a: unknown): a is number[] =>
    Array.isArray(a) && a.every((e) => Number.isSafeInteger(e) && (e as number) > 0);
  if (typeof v !== 'object' || v === null) return undefined;
  const { own, peers } = v as { own?: unknown; peers?: unknown };
  if (!ok(own) || typeof peers !== 'object' || peers === null) return undefined;
  const out: KeyEpochs = { own: own.slice(0, MAX_QUOTED_KEY_EPOCHS), peers: {} };
  for (const [k, list] of Object.entries(peers)) {
    const id = Number(k);
    if (!Number.isSafeInteger(id) || id < 0 || !ok(list)) return undefined;
    out.peers[id] = list.slice(0, MAX_QUOTED_KEY_EPOCHS);
  }
  return out;
}

/** Installs refreshed keys: ours on `refresh()`, peers' on their NEW-KEY frames. */
export class KeyRefresher {
  /** Counters: refreshes, accepted and rejected announcements by reason. */
  readonly stats: Record<string, number> = {};
  private readonly secrets: SharedSecrets;
  private readonly lastEpoch = new Map<number, number>();
  private epoch = 0;
  private announcement: Uint8Array | undefined;
  private readonly epochs: KeyEpochs;

  constructor(private readonly o: KeyRefreshOptions) {
    this.secrets = o.secrets ?? new SharedSecrets(o.own);
    const first = o.selves[0]?.id;
    if (first === undefined || o.selves.some((s, i) => s.id !== first + i))
      throw new RangeError('a key refresher needs a contiguous range of node ids');
    if (o.selves.length > MAX_NEW_KEY_IDS)
      throw new RangeError('too many node ids for one NEW-KEY');
    this.epochs = { own: [...(o.pastEpochs?.own ?? [])], peers: {} };
    for (const [k, list] of Object.entries(o.pastEpochs?.peers ?? {}))
      this.epochs.peers[Number(k)] = [...list];
  }

  /**
   * Accepts the keys of `pastEpochs` again for quoted frames: call once, before the first
   * refresh. Epochs are what make the keys (HKDF of the pair's secret), so nothing secret was
   * persisted.
   */
  async restorePastEpochs(): Promise<void> {
    for (const [peer, pub] of this.o.peers) {
      const secret = await this.secrets.get(pub);
      const theirs = peer < FIRST_CLIENT_ID ? (this.epochs.peers[peer] ?? []) : [];
      for (const self of this.o.selves) {
        const n = Math.max(this.epochs.own.length, theirs.length);
        for (let i = 0; i < n; i++) {
          const own = this.epochs.own[i];
          const their = theirs[i];
          self.auth.archiveRestored(
            peer,
            own === undefined ? undefined : directionalKey(secret, peer, self.id, own),
            their === undefined ? undefined : directionalKey(secret, self.id, peer, their),
          );
        }
      }
    }
  }

  private noteEpoch(list: number[], epoch: number): void {
    list.unshift(epoch);
    if (list.length > MAX_QUOTED_KEY_EPOCHS) list.length = MAX_QUOTED_KEY_EPOCHS;
    this.o.onEpochs?.(this.epochs);
  }

  /** Our current key epoch (0: the initial symmetric keys). */
  get currentEpoch(): number {
    return this.epoch;
  }

  /** The NEW-KEY frame of our current epoch, to (re)send to peers. */
  get currentAnnouncement(): Uint8Array | undefined {
    return this.announcement;
  }

  /**
   * Chooses new keys for everything sent to us (to each of our ids) and returns the NEW-KEY
   * frame to send. Epochs are wall-clock milliseconds (strictly increasing), so they grow across
   * restarts without being persisted.
   */
  async refresh(): Promise<Uint8Array> {
    try {
      return await this.refreshOnce();
    } catch (e) {
      this.count('keyRefreshFailed');
      throw e;
    }
  }

  private async refreshOnce(): Promise<Uint8Array> {
    const selves = this.o.selves;
    const epoch = Math.max(Date.now(), this.epoch + 1);
    const keys: [MacAuthenticator, number, Buffer][] = [];
    for (const [peer, pub] of this.o.peers) {
      const secret = await this.secrets.get(pub);
      for (const self of selves)
        keys.push([self.auth, peer, directionalKey(secret, peer, self.id, epoch)]);
    }
    const first = selves[0]!.id;
    const signature = await sign(this.o.own, signedBytes(first, selves.length, epoch));
    // On disk before any peer can use the new keys: frames they seal with them may be quoted
    // back to us after a restart.
    this.noteEpoch(this.epochs.own, epoch);
    for (const [auth, peer, key] of keys) auth.setInKey(peer, key);
    this.epoch = epoch;
    this.announcement = encodeNewKey(first, selves.length, epoch, signature);
    this.count('keyRefresh');
    return this.announcement;
  }

  /** Handles a NEW-KEY frame; true if it installed new keys. Never throws on bad input. */
  async onNewKey(bytes: Uint8Array): Promise<boolean> {
    const m = decodeNewKey(bytes);
    if (!m) return this.reject('newKeyMalformed');
    const pub = this.o.peers.get(m.node);
    if (!pub) return this.reject('newKeyUnknownNode');
    // Every id named must be the signer's: one client process cannot re-key another's ids.
    const owner = Buffer.from(pub.signing);
    for (let id = m.node + 1; id < m.node + m.count; id++) {
      const other = this.o.peers.get(id);
      if (!other || !owner.equals(other.signing)) return this.reject('newKeyForeignIds');
    }
    // Replays of older announcements (and repeats of the current one) change nothing.
    if (m.epoch <= (this.lastEpoch.get(m.node) ?? 0)) return this.reject('newKeyOld');
    let ok: boolean;
    try {
      ok = await verifySignature(pub, signedBytes(m.node, m.count, m.epoch), m.signature);
    } catch {
      ok = false;
    }
    if (!ok) return this.reject('newKeyBadSignature');
    if (m.epoch <= (this.lastEpoch.get(m.node) ?? 0)) return this.reject('newKeyOld');
    this.lastEpoch.set(m.node, m.epoch);
    const secret = await this.secrets.get(pub);
    for (let id = m.node; id < m.node + m.count; id++)
      for (const s of this.o.selves)
        s.auth.setOutKey(id, directionalKey(secret, s.id, id, m.epoch));
    if (m.node < FIRST_CLIENT_ID) this.noteEpoch((this.epochs.peers[m.node] ??= []), m.epoch);
    this.count('newKeyAccepted');
    if (m.node >= FIRST_CLIENT_ID) this.count('clientNewKeyAccepted');
    return true;
  }

  private reject(reason: string): false {
    this.count(reason);
    return false;
  }

  private count(k: string): void {
    this.stats[k] = (this.stats[k] ?? 0) + 1;
  }
}

/**
 * A transport whose NEW-KEY frames go to `refresher` instead of the receiver: wrap the
 * transport of a replica or a client with it.
 */
export function withKeyRefresh(inner: Transport, refresher: KeyRefresher): Transport {
  return {
    get ids() {
      return inner.ids;
    },
    send: (to, bytes) => inner.send(to, bytes),
    close: () => inner.close(),
    onMessage(cb) {
      inner.onMessage((from, bytes) => {
        if (bytes.length > 0 && bytes[0] === NEW_KEY_MAGIC) void refresher.onNewKey(bytes);
        else return cb(from, bytes);
      });
    },
  } as Transport;
}
