import {
  DIGEST_BYTES,
  UNTOUCHED,
  addMod,
  bytesEqual,
  digestTerm,
  leafDigest,
  nodeDigest,
} from './hash';
import type { CheckpointInfo, TransferableState } from './types';

/**
 * State transfer, after section 3 of the design brief: a replica that is behind walks the target
 * checkpoint's partition tree from the root, asking only for partitions and pages modified after
 * a checkpoint it already has (`base`), and checks every piece against a digest it already trusts
 * before it asks for the next one. Nothing touches the current state until `apply()`.
 *
 * Messages are plain objects; the PBFT library owns their wire encoding and may hand received
 * objects over as they are: every field is checked here, and a bad piece is rejected with a
 * reason, counted, and left pending so that it can be asked of another replica.
 */

/** A request for one partition's children modified after `since`, or for one page. */
export type FetchRequest =
  | { kind: 'partition'; seq: number; level: number; index: number; since: number }
  | { kind: 'page'; seq: number; index: number };

/** One child of a partition in a reply: a page (level 0) or a partition one level down. */
export interface ChildDigest {
  index: number;
  lm: number;
  digest: Uint8Array;
}

/** A partition as of checkpoint `seq`: its last-modified checkpoint and its newer children. */
export interface PartitionReply {
  kind: 'partition';
  seq: number;
  level: number;
  index: number;
  lm: number;
  /** The children modified after the request's `since`, ascending by index. */
  children: ChildDigest[];
}

/** A page as of checkpoint `seq`. */
export interface PageReply {
  kind: 'page';
  seq: number;
  index: number;
  lm: number;
  data: Uint8Array;
}

export type TransferVerdict = { ok: true } | { ok: false; reason: string };

/** Answers a fetch request from kept checkpoint `req.seq` of `store` (the serving side). */
export function serveFetch(
  store: TransferableState,
  req: FetchRequest,
): PartitionReply | PageReply {
  if (req.kind === 'page') {
    const p = store.pageAt(req.seq, req.index);
    return { kind: 'page', seq: req.seq, index: p.index, lm: p.lm, data: p.data };
  }
  const self = store.partitionAt(req.seq, req.level, req.index);
  const children = store
    .modifiedChildren(req.seq, req.level, req.index, req.since)
    .map((c) => ({ index: c.index, lm: c.lm, digest: c.digest }));
  return {
    kind: 'partition',
    seq: req.seq,
    level: req.level,
    index: req.index,
    lm: self.lm,
    children,
  };
}

interface Expected {
  req: FetchRequest;
  digest: Uint8Array;
}

interface VerifiedNode {
  level: number;
  index: number;
  lm: number;
  sum: bigint;
  digest: Uint8Array;
}

interface VerifiedPage {
  index: number;
  lm: number;
  data: Uint8Array;
  digest: Uint8Array;
}

function key(level: number, index: number): string {
  return `${level}/${index}`;
}

function isSafeInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v);
}

/**
 * Brings a store to checkpoint `target.seq` whose root digest is `target.digest` (agreed by a
 * quorum), starting from kept checkpoint `base` of the store (its stable checkpoint) or from
 * nothing (UNTOUCHED). Drive it with `pending()` / `receivePartition()` / `receivePage()` until
 * `done`, then `apply()`. The store must keep `base` until then.
 */
export class StateTransfer {
  readonly base: number;
  /** Pieces rejected so far (they came from a faulty or stale replica). */
  rejected = 0;
  private readonly pendingMap = new Map<string, Expected>();
  private readonly nodes: VerifiedNode[] = [];
  private readonly pages: VerifiedPage[] = [];
  private applied = false;

  constructor(
    private readonly store: TransferableState,
    readonly target: { seq: number; digest: Uint8Array },
    base?: number,
  ) {
    if (!isSafeInt(target.seq) || target.seq < 0) throw new RangeError(`bad target ${target.seq}`);
    if (!(target.digest instanceof Uint8Array) || target.digest.byteLength !== DIGEST_BYTES) {
      throw new TypeError('target digest must be 32 bytes');
    }
    const kept = store.checkpoints().filter((s) => s < target.seq);
    this.base = base ?? (kept.length > 0 ? kept[kept.length - 1] : UNTOUCHED);
    if (this.base !== UNTOUCHED && !kept.includes(this.base)) {
      throw new RangeError(`base ${this.base} is not a kept checkpoint below ${target.seq}`);
    }
    const root = { level: store.levels, index: 0 };
    this.pendingMap.set(key(root.level, root.index), {
      req: { kind: 'partition', seq: target.seq, level: root.level, index: 0, since: this.base },
      digest: new Uint8Array(target.digest),
    });
  }

  /** Requests still unanswered by a verified piece. */
  pending(): FetchRequest[] {
    return [...this.pendingMap.values()].map((e) => ({ ...e.req }));
  }

  /** True once every needed piece has arrived and checked out. */
  get done(): boolean {
    return this.pendingMap.size === 0;
  }

  /** Pages fetched and verified so far. */
  get pagesFetched(): number {
    return this.pages.length;
  }

  /** Feeds one reply of either kind. */
  receive(reply: unknown): TransferVerdict {
    const kind = (reply as { kind?: unknown } | null)?.kind;
    if (kind === 'partition') return this.receivePartition(reply);
    if (kind === 'page') return this.receivePage(reply);
    return this.reject('reply of unknown kind');
  }

  /** Checks a partition reply against the digest its parent promised; queues its children. */
  receivePartition(reply: unknown): TransferVerdict {
    if (typeof reply !== 'object' || reply === null)
      return this.reject('partition reply is not an object');
    const r = reply as Partial<PartitionReply>;
    if (r.seq !== this.target.seq) return this.reject('partition reply for another checkpoint');
    if (!isSafeInt(r.level) || !isSafeInt(r.index) || !isSafeInt(r.lm))
      return this.reject('malformed partition');
    const k = key(r.level, r.index);
    const want = this.pendingMap.get(k);
    if (!want || want.req.kind !== 'partition') return this.reject('partition not requested');
    if (r.lm < UNTOUCHED || r.lm > this.target.seq) return this.reject('partition lm out of range');
    if (!Array.isArray(r.children) || r.children.length > this.store.fanout) {
      return this.reject('malformed children list');
    }
    const level = r.level;
    const first = r.index * this.store.fanout;
    const end = Math.min(first + this.store.fanout, this.store.partitionCount(level - 1));
    let sum = this.base === UNTOUCHED ? 0n : this.store.sumAt(this.base, level, r.index);
    let prev = first - 1;
    const kids: ChildDigest[] = [];
    for (const c of r.children as unknown[]) {
      const child = c as Partial<ChildDigest> | null;
      if (
        child === null ||
        typeof child !== 'object' ||
        !isSafeInt(child.index) ||
        !isSafeInt(child.lm) ||
        !(child.digest instanceof Uint8Array) ||
        child.digest.byteLength !== DIGEST_BYTES
      ) {
        return this.reject('malformed child');
      }
      if (child.index <= prev || child.index >= end)
        return this.reject('child index out of order or range');
      if (child.lm <= this.base || child.lm > r.lm) return this.reject('child lm inconsistent');
      prev = child.index;
      const old =
        this.base === UNTOUCHED ? 0n : this.store.termAt(this.base, level - 1, child.index);
      sum = addMod(sum, digestTerm(child.digest) - old);
      kids.push({ index: child.index, lm: child.lm, digest: new Uint8Array(child.digest) });
    }
    const digest = nodeDigest(level, r.index, r.lm, sum);
    if (!bytesEqual(digest, want.digest)) return this.reject('partition does not match its digest');
    this.pendingMap.delete(k);
    this.nodes.push({ level, index: r.index, lm: r.lm, sum, digest });
    for (const kid of kids) {
      const req: FetchRequest =
        level === 1
          ? { kind: 'page', seq: this.target.seq, index: kid.index }
          : {
              kind: 'partition',
              seq: this.target.seq,
              level: level - 1,
              index: kid.index,
              since: this.base,
            };
      this.pendingMap.set(key(level - 1, kid.index), { req, digest: kid.digest });
    }
    return { ok: true };
  }

  /** Checks a page against the digest its partition promised. */
  receivePage(reply: unknown): TransferVerdict {
    if (typeof reply !== 'object' || reply === null)
      return this.reject('page reply is not an object');
    const r = reply as Partial<PageReply>;
    if (r.seq !== this.target.seq) return this.reject('page reply for another checkpoint');
    if (!isSafeInt(r.index) || !isSafeInt(r.lm)) return this.reject('malformed page');
    const k = key(0, r.index);
    const want = this.pendingMap.get(k);
    if (!want || want.req.kind !== 'page') return this.reject('page not requested');
    if (!(r.data instanceof Uint8Array) || r.data.byteLength !== this.store.pageSize) {
      return this.reject('page of the wrong size');
    }
    const digest = leafDigest(r.index, r.lm, r.data);
    if (!bytesEqual(digest, want.digest)) return this.reject('page does not match its digest');
    this.pendingMap.delete(k);
    this.pages.push({ index: r.index, lm: r.lm, data: new Uint8Array(r.data), digest });
    return { ok: true };
  }

  /**
   * Installs the verified checkpoint: drops the store's checkpoints and writes after `base`,
   * then makes `target.seq` a kept checkpoint and the current state.
   */
  apply(): CheckpointInfo {
    if (!this.done)
      throw new Error(`state transfer incomplete: ${this.pendingMap.size} pieces pending`);
    if (this.applied) throw new Error('state transfer already applied');
    this.applied = true;
    const info = this.store.installCheckpoint(
      this.base,
      this.target.seq,
      this.target.digest,
      this.pages,
      this.nodes,
    );
    if (!bytesEqual(this.store.currentRoot(), this.target.digest)) {
      throw new Error('installed state does not match the target digest (bug)');
    }
    return info;
  }

  private reject(reason: string): TransferVerdict {
    this.rejected++;
    return { ok: false, reason };
  }
}
