/**
 * The fetching side of state transfer (OSDI 1999 section 4.3, TOCS 2002 section 5.3.2): a
 * quorum-proved checkpoint above what we executed (`behind`), and the fetch of its state in
 * progress (`transfer`), every piece checked against the checkpoint digest on arrival. The
 * replica installs a finished transfer (`Replica.finishTransfer`): that touches every part.
 */
import { StateTransfer, decodeTransferMessage, encodeTransferMessage } from '@bfs/page-store';
import type { TransferableState } from '@bfs/page-store';
import { MAX_FETCH_PIECES, MAX_FETCH_TIMEOUT_MS } from '../constants';
import { FETCH_HAS_META, FETCH_MISSING, FetchMsg, FetchReplyMsg, MsgType } from '../codec';
import { MacAuthenticator, sha256 } from '../crypto';
import type { Checkpoints, ProofEntry } from './checkpoints';
import type { Outbox } from './outbox';
import { ClientRecord, decodeReplyTable } from './reply-table';

/** A state transfer in progress towards stable checkpoint `seq` (proved by `proof`). */
export interface Transfer {
  seq: number;
  digest: Buffer;
  proof: ProofEntry[];
  /** Replicas asked in turn: those that vouched for the checkpoint. */
  sources: number[];
  source: number;
  sentAt: number;
  /** Current wait for a reply: doubles on each timeout (a loaded server), back to the base on progress. */
  timeoutMs: number;
  startedAt: number;
  /** From the meta reply: page-store root and reply table. */
  root?: Buffer;
  table?: Map<number, ClientRecord>;
  st?: StateTransfer;
  /** Fetch from nothing instead of from our stable checkpoint (it failed to verify). */
  full: boolean;
  bytes: number;
  rejected: number;
}

/** A quorum-proved checkpoint above what we executed, and since when we know of it. */
export interface Behind {
  seq: number;
  digest: Buffer;
  proof: ProofEntry[];
  since: number;
}

export class StateFetcher {
  behind: Behind | undefined;
  transfer: Transfer | undefined;

  constructor(
    private readonly id: number,
    private readonly auth: MacAuthenticator,
    private readonly io: Outbox,
    private readonly state: TransferableState,
    private readonly cp: Checkpoints,
    private readonly fetchTimeoutMs: number,
    private readonly delayMs: number,
  ) {}

  /** Whether we know of, or fetch, a checkpoint beyond what we executed. */
  get busy(): boolean {
    return this.transfer !== undefined || this.behind !== undefined;
  }

  /**
   * A known stable checkpoint above what we executed: wait a little for the log to bring us
   * there (a replica slightly behind gets the slots re-sent), then fetch its state. Beyond our
   * high water mark the log cannot help, so fetch at once. An unanswered fetch goes to the next
   * replica that vouched for the checkpoint.
   */
  tick(lastCommitted: number): void {
    const b = this.behind;
    const now = this.io.now;
    if (b && !this.transfer) {
      if (b.seq <= lastCommitted) this.behind = undefined;
      else if (b.seq > this.cp.highWater || now - b.since >= this.delayMs) {
        this.behind = undefined;
        this.start(b.seq, b.digest, b.proof);
      }
    }
    if (b && this.transfer && b.seq > this.transfer.seq) {
      // The others moved on past the checkpoint we fetch (and may discard it): aim at the newer one.
      this.transfer = undefined;
      this.behind = undefined;
      this.io.count('stateTransferRetarget');
      this.start(b.seq, b.digest, b.proof);
    }
    const t = this.transfer;
    if (t && now - t.sentAt >= t.timeoutMs) {
      this.io.count('fetchTimeout');
      t.timeoutMs = Math.min(t.timeoutMs * 2, MAX_FETCH_TIMEOUT_MS);
      t.source = (t.source + 1) % t.sources.length;
      this.sendFetch();
    }
  }

  start(seq: number, digest: Buffer, proof: ProofEntry[], full = false): void {
    if (seq <= this.cp.lowWater) return;
    if (this.transfer && this.transfer.seq >= seq && !full) return;
    const sources = proof.map((p) => p.sender).filter((r) => r !== this.id);
    if (sources.length === 0) return;
    const now = this.io.now;
    this.transfer = {
      seq,
      digest,
      proof,
      sources,
      source: Math.floor(now) % sources.length,
      sentAt: now,
      timeoutMs: this.fetchTimeoutMs,
      startedAt: now,
      full,
      bytes: 0,
      rejected: 0,
    };
    this.io.count('stateTransferStarted');
    this.sendFetch();
  }

  /**
   * `seq` became stable: a transfer towards an older checkpoint, or one built on the base we now
   * discard, is moot (a newer target it had is remembered).
   */
  onStable(seq: number): void {
    if (this.behind && this.behind.seq <= seq) this.behind = undefined;
    const t = this.transfer;
    if (t && (t.seq <= seq || t.st)) {
      if (t.seq > seq)
        this.behind ??= { seq: t.seq, digest: t.digest, proof: t.proof, since: -Infinity };
      this.transfer = undefined;
      this.io.count('stateTransferAbandoned');
    }
  }

  private sendFetch(): void {
    const t = this.transfer!;
    t.sentAt = this.io.now;
    const requests = t.st
      ? t.st
          .pending()
          .slice(0, MAX_FETCH_PIECES)
          .map((r) => encodeTransferMessage(r))
      : [];
    const msg: FetchMsg = { type: MsgType.Fetch, seq: t.seq, meta: !t.st, requests };
    const to = t.sources[t.source]!;
    this.io.send([to], this.auth.sealTo(msg, to));
  }

  /**
   * A FETCH-REPLY: checks its pieces and asks for more. Returns the transfer once every piece
   * is in, for the replica to install (it is no longer in progress then).
   */
  onReply(sender: number, msg: FetchReplyMsg, view: number): Transfer | undefined {
    const t = this.transfer;
    if (!t || msg.seq !== t.seq || !t.sources.includes(sender))
      return void this.io.count('dropUnexpectedFetchReply');
    if (msg.flags & FETCH_MISSING) {
      // That replica moved past the checkpoint: ask another; newer proofs will come our way.
      t.source = (t.sources.indexOf(sender) + 1) % t.sources.length;
      return void this.sendFetch();
    }
    let progressed = false;
    if (!t.st) {
      if (!(msg.flags & FETCH_HAS_META)) return void this.io.count('dropUnexpectedFetchReply');
      const table =
        msg.meta.length >= 32 ? decodeReplyTable(msg.meta.subarray(32), view) : undefined;
      // The checkpoint digest is SHA-256(root ‖ reply table): the meta must hash to it.
      if (!table || !sha256(msg.meta).equals(t.digest)) return void this.rejectPiece(t, sender);
      t.root = Buffer.from(msg.meta.subarray(0, 32));
      t.table = table;
      t.bytes += msg.meta.length;
      const store = this.state;
      const h = this.cp.lowWater;
      const base = t.full || !store.checkpoints().includes(h) ? undefined : h;
      t.st = new StateTransfer(store, { seq: t.seq, digest: t.root }, base ?? -1);
      progressed = true;
    }
    for (const raw of msg.pieces) {
      const d = decodeTransferMessage(raw);
      const v = d.ok ? t.st.receive(d.message) : { ok: false as const, reason: 'malformed' };
      if (!v.ok) {
        // A piece we already have (a late reply to an earlier fetch) is no fault.
        if (v.reason.endsWith('not requested')) {
          this.io.count('transferPieceDuplicate');
          continue;
        }
        // Stale or forged: another replica is asked for it on the next fetch.
        this.rejectPiece(t, sender);
        if (this.transfer !== t) return undefined;
        continue;
      }
      progressed = true;
      t.bytes += raw.length;
    }
    if (t.st.done) {
      this.transfer = undefined;
      return t;
    }
    // A late reply from a replica asked before still counts; ask again only if it made progress
    // or came from the replica we wait for (else that one's answer is still on its way).
    if (progressed || sender === t.sources[t.source]) {
      t.timeoutMs = this.fetchTimeoutMs;
      t.source = t.sources.indexOf(sender);
      this.sendFetch();
    }
    return undefined;
  }

  private rejectPiece(t: Transfer, sender: number): void {
    this.io.count('transferPieceRejected');
    t.rejected++;
    t.source = (t.sources.indexOf(sender) + 1) % t.sources.length;
    // Pieces that fail against every replica's copy: our own base checkpoint is what is wrong
    // (its pages were damaged in place). Fetch everything instead.
    if (!t.full && t.rejected > 2 * t.sources.length) {
      this.io.count('stateTransferFull');
      this.transfer = undefined;
      this.start(t.seq, t.digest, t.proof, true);
    }
  }
}
