import { UNTOUCHED, digestTerm, leafDigest, nodeDigest, ADHASH_MODULUS } from '../src/hash';
import { treeLevels } from '../src/constants';

/** A partition-tree node computed from scratch. */
export interface ModelNode {
  lm: number;
  digest: Uint8Array;
}

/**
 * The naive reference: copies the whole state at every checkpoint and hashes the tree from
 * scratch, with none of the store's incremental bookkeeping.
 */
export class NaiveModel {
  bytes: Uint8Array;
  lm: number[];
  dirty = new Set<number>();
  last = -1;
  kept = new Map<number, { bytes: Uint8Array; lm: number[]; tree: ModelNode[][] }>();
  readonly pages: number;
  readonly levels: number;

  constructor(
    readonly size: number,
    readonly pageSize: number,
    readonly fanout: number,
  ) {
    this.pages = Math.ceil(size / pageSize);
    this.levels = treeLevels(this.pages, fanout);
    this.bytes = new Uint8Array(this.pages * pageSize);
    this.lm = new Array<number>(this.pages).fill(UNTOUCHED);
  }

  write(offset: number, data: Uint8Array): void {
    this.bytes.set(data, offset);
    this.modify(offset, data.length);
  }

  modify(offset: number, length: number): void {
    if (length === 0) return;
    for (let p = Math.floor(offset / this.pageSize); p * this.pageSize < offset + length; p++)
      this.dirty.add(p);
  }

  checkpoint(seq: number): Uint8Array {
    for (const p of this.dirty) this.lm[p] = seq;
    this.dirty.clear();
    this.last = seq;
    const tree = this.tree(this.bytes, this.lm);
    this.kept.set(seq, { bytes: this.bytes.slice(), lm: this.lm.slice(), tree });
    return tree[this.levels][0].digest;
  }

  rollback(seq: number): void {
    const k = this.kept.get(seq)!;
    this.bytes = k.bytes.slice();
    this.lm = k.lm.slice();
    this.dirty.clear();
    this.last = seq;
    for (const s of [...this.kept.keys()]) if (s > seq) this.kept.delete(s);
  }

  discardBelow(seq: number): void {
    for (const s of [...this.kept.keys()]) if (s < seq) this.kept.delete(s);
  }

  /** Every level of the tree; level 0 is the pages. Untouched parts have lm UNTOUCHED. */
  tree(bytes: Uint8Array, lm: number[]): ModelNode[][] {
    const levels: ModelNode[][] = [];
    levels.push(
      lm.map((l, p) => ({
        lm: l,
        digest:
          l === UNTOUCHED
            ? new Uint8Array(32)
            : leafDigest(p, l, bytes.subarray(p * this.pageSize, (p + 1) * this.pageSize)),
      })),
    );
    for (let level = 1; level <= this.levels; level++) {
      const below = levels[level - 1];
      const row: ModelNode[] = [];
      for (let i = 0; i * this.fanout < below.length; i++) {
        const kids = below.slice(i * this.fanout, (i + 1) * this.fanout);
        const nodeLm = Math.max(...kids.map((k) => k.lm));
        let sum = 0n;
        for (const k of kids) if (k.lm !== UNTOUCHED) sum += digestTerm(k.digest);
        sum %= ADHASH_MODULUS;
        const untouched = nodeLm === UNTOUCHED && level !== this.levels;
        row.push({
          lm: nodeLm,
          digest: untouched ? new Uint8Array(32) : nodeDigest(level, i, nodeLm, sum),
        });
      }
      levels.push(row);
    }
    return levels;
  }
}
