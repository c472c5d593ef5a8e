import { NfsError, NfsStatus } from 'nfs-server-ts';
import {
  BLOCK_SIZE,
  DIR_BUCKET_BASE_BLOCK,
  DIR_HEADER_BLOCK,
  DIR_INITIAL_BUCKETS,
  DIR_MAX_BUCKETS,
  DIR_MAX_LOAD,
  DIR_MAX_SLOTS,
  DIR_SLOT_BASE_BLOCK,
  DIR_SLOT_HEADER,
  DIR_SLOT_SIZE,
  DIR_SLOTS_PER_BLOCK,
  MAX_NAME_LENGTH,
} from './constants';
import type { Inode, Volume } from './volume';

/**
 * Hashed directories. Entries live in fixed slots that never move (a slot index is the readdir
 * cookie); a power-of-two bucket array chains the slots of equal hash (bucket and chain links
 * are slot index + 1, 0 ends a chain). Free slots form a list through the same link field.
 */

export interface DirHeader {
  bucketCount: number;
  entryCount: number;
  /** Slots ever used: slots below it are in use or on the free list. */
  slotHighWater: number;
  /** First free slot + 1 (0: none; take the high-water slot). */
  freeSlotHead: number;
}

export interface Slot {
  index: number;
  ino: number;
  hash: number;
  next: number;
  name: Uint8Array;
}

/**
 * FNV-1a, 32 bits, with the MurmurHash3 finalizer, over the four bytes of the file system's hash seed and then the UTF-8 bytes
 * of a name. The seed (fixed at mkfs, the same on every replica, never shown to clients) keeps
 * clients from precomputing names that all fall into one bucket.
 */
export function nameHash(name: Uint8Array, seed = 0): number {
  let h = 0x811c9dc5;
  for (let k = 0; k < 4; k++) {
    h ^= (seed >>> (8 * k)) & 0xff;
    h = Math.imul(h, 0x01000193);
  }
  for (let i = 0; i < name.length; i++) {
    h ^= name[i];
    h = Math.imul(h, 0x01000193);
  }
  // FNV's low bits (the bucket index) depend only on the inputs' low bits: finish with the
  // MurmurHash3 mixer so every bit of the seed and the name reaches them.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export function encodeName(name: string): Uint8Array {
  const b = Buffer.from(name, 'utf8');
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

/** Validates a single path component as the backend stores it; throws the NFS error. */
export function checkName(name: string): Uint8Array {
  const b = encodeName(name);
  if (b.length === 0 || name.includes('/') || name.includes('\0')) {
    throw new NfsError(NfsStatus.INVAL, 'invalid name');
  }
  if (b.length > MAX_NAME_LENGTH) throw new NfsError(NfsStatus.NAMETOOLONG);
  return b;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function slotLocation(index: number): { lb: number; offset: number } {
  return {
    lb: DIR_SLOT_BASE_BLOCK + Math.floor(index / DIR_SLOTS_PER_BLOCK),
    offset: (index % DIR_SLOTS_PER_BLOCK) * DIR_SLOT_SIZE,
  };
}

export function decodeSlot(index: number, b: Uint8Array): Slot {
  const dv = new DataView(b.buffer, b.byteOffset, DIR_SLOT_HEADER);
  const len = Math.min(dv.getUint16(12, true), MAX_NAME_LENGTH);
  return {
    index,
    ino: dv.getUint32(0, true),
    hash: dv.getUint32(4, true),
    next: dv.getUint32(8, true),
    name: b.slice(DIR_SLOT_HEADER, DIR_SLOT_HEADER + len),
  };
}

export class Directory {
  private cachedHeader: DirHeader | undefined;

  constructor(
    private readonly vol: Volume,
    readonly inode: Inode,
  ) {}

  /** Lays out the header block of a new, empty directory. */
  static init(vol: Volume, n: Inode): void {
    new Directory(vol, n).writeHeader({
      bucketCount: DIR_INITIAL_BUCKETS,
      entryCount: 0,
      slotHighWater: 0,
      freeSlotHead: 0,
    });
  }

  /** Blocks an empty directory needs. */
  static readonly INIT_BLOCKS = 1;

  header(): DirHeader {
    // A Directory lives for one call, and every header write goes through writeHeader.
    if (this.cachedHeader) return { ...this.cachedHeader };
    const b = this.vol.readData(this.inode, DIR_HEADER_BLOCK * BLOCK_SIZE, 16);
    const dv = new DataView(b.buffer, b.byteOffset, 16);
    const h = {
      bucketCount: dv.getUint32(0, true),
      entryCount: dv.getUint32(4, true),
      slotHighWater: dv.getUint32(8, true),
      freeSlotHead: dv.getUint32(12, true),
    };
    const bc = h.bucketCount;
    if (
      bc < 1 ||
      bc > DIR_MAX_BUCKETS ||
      (bc & (bc - 1)) !== 0 ||
      h.slotHighWater > DIR_MAX_SLOTS
    ) {
      throw new NfsError(NfsStatus.IO, `corrupt directory header in inode ${this.inode.ino}`);
    }
    this.cachedHeader = { ...h };
    return h;
  }

  private writeHeader(h: DirHeader): void {
    this.cachedHeader = { ...h };
    const b = new Uint8Array(16);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, h.bucketCount, true);
    dv.setUint32(4, h.entryCount, true);
    dv.setUint32(8, h.slotHighWater, true);
    dv.setUint32(12, h.freeSlotHead, true);
    this.vol.writeData(this.inode, DIR_HEADER_BLOCK * BLOCK_SIZE, b);
  }

  private bucketOffset(b: number): number {
    return DIR_BUCKET_BASE_BLOCK * BLOCK_SIZE + b * 4;
  }

  readBucket(b: number): number {
    const raw = this.vol.readData(this.inode, this.bucketOffset(b), 4);
    return new DataView(raw.buffer).getUint32(0, true);
  }

  private writeBucket(b: number, v: number): void {
    const raw = new Uint8Array(4);
    new DataView(raw.buffer).setUint32(0, v, true);
    this.vol.writeData(this.inode, this.bucketOffset(b), raw);
  }

  readSlot(index: number): Slot {
    const { lb, offset } = slotLocation(index);
    return decodeSlot(
      index,
      this.vol.readData(this.inode, lb * BLOCK_SIZE + offset, DIR_SLOT_SIZE),
    );
  }

  private writeSlotLink(index: number, next: number): void {
    const { lb, offset } = slotLocation(index);
    const raw = new Uint8Array(4);
    new DataView(raw.buffer).setUint32(0, next, true);
    this.vol.writeData(this.inode, lb * BLOCK_SIZE + offset + 8, raw);
  }

  private writeSlot(s: Slot): void {
    const { lb, offset } = slotLocation(s.index);
    const raw = new Uint8Array(DIR_SLOT_HEADER + s.name.length);
    const dv = new DataView(raw.buffer);
    dv.setUint32(0, s.ino, true);
    dv.setUint32(4, s.hash, true);
    dv.setUint32(8, s.next, true);
    dv.setUint16(12, s.name.length, true);
    raw.set(s.name, DIR_SLOT_HEADER);
    this.vol.writeData(this.inode, lb * BLOCK_SIZE + offset, raw);
  }

  /** The slot holding `name`, with its predecessor in the chain (undefined: bucket head). */
  private find(h: DirHeader, name: Uint8Array): { slot: Slot; prev: number } | undefined {
    const hash = nameHash(name, this.vol.geo.hashSeed);
    let link = this.readBucket(hash & (h.bucketCount - 1));
    let prev = 0;
    let steps = 0;
    while (link !== 0) {
      if (link > h.slotHighWater || ++steps > h.slotHighWater) {
        throw new NfsError(NfsStatus.IO, `corrupt hash chain in directory ${this.inode.ino}`);
      }
      const s = this.readSlot(link - 1);
      if (s.ino !== 0 && s.hash === hash && sameBytes(s.name, name)) return { slot: s, prev };
      prev = link;
      link = s.next;
    }
    return undefined;
  }

  lookup(name: Uint8Array): number {
    return this.find(this.header(), name)?.slot.ino ?? 0;
  }

  isEmpty(): boolean {
    return this.header().entryCount === 0;
  }

  /** Upper bound on the blocks `insert` may allocate (checked before anything changes). */
  blocksForInsert(): number {
    const h = this.header();
    // A fresh slot block and the double-indirect path to it; a bucket block and its indirect.
    let need = 5;
    if (h.entryCount + 1 > h.bucketCount * DIR_MAX_LOAD && h.bucketCount < DIR_MAX_BUCKETS) {
      need += Math.ceil((h.bucketCount * 2 * 4) / BLOCK_SIZE) + 1;
    }
    return need;
  }

  /** Adds an entry; the caller has checked that `name` is absent and space suffices. */
  insert(name: Uint8Array, ino: number): void {
    let h = this.header();
    if (h.entryCount >= DIR_MAX_SLOTS) throw new NfsError(NfsStatus.NOSPC, 'directory full');
    if (h.entryCount + 1 > h.bucketCount * DIR_MAX_LOAD && h.bucketCount < DIR_MAX_BUCKETS) {
      this.rehash(h, h.bucketCount * 2);
      h = this.header();
    }
    let index: number;
    if (h.freeSlotHead !== 0) {
      index = h.freeSlotHead - 1;
      h.freeSlotHead = this.readSlot(index).next;
    } else {
      index = h.slotHighWater++;
    }
    const hash = nameHash(name, this.vol.geo.hashSeed);
    const bucket = hash & (h.bucketCount - 1);
    this.writeSlot({ index, ino, hash, next: this.readBucket(bucket), name });
    this.writeBucket(bucket, index + 1);
    h.entryCount++;
    this.writeHeader(h);
  }

  /** Removes an entry by name; returns the inode it named, or 0 if absent. */
  remove(name: Uint8Array): number {
    const h = this.header();
    const found = this.find(h, name);
    if (!found) return 0;
    const { slot, prev } = found;
    if (prev === 0) this.writeBucket(slot.hash & (h.bucketCount - 1), slot.next);
    else this.writeSlotLink(prev - 1, slot.next);
    this.writeSlot({
      index: slot.index,
      ino: 0,
      hash: 0,
      next: h.freeSlotHead,
      name: new Uint8Array(0),
    });
    h.freeSlotHead = slot.index + 1;
    h.entryCount--;
    this.writeHeader(h);
    return slot.ino;
  }

  /** Points an existing entry at another inode (rename over an existing target). */
  replace(name: Uint8Array, ino: number): void {
    const found = this.find(this.header(), name);
    if (!found) throw new NfsError(NfsStatus.IO, 'replace of a missing entry');
    const { lb, offset } = slotLocation(found.slot.index);
    const raw = new Uint8Array(4);
    new DataView(raw.buffer).setUint32(0, ino, true);
    this.vol.writeData(this.inode, lb * BLOCK_SIZE + offset, raw);
  }

  /** Rebuilds the chains for a larger bucket array, one slot block at a time. */
  private rehash(h: DirHeader, newCount: number): void {
    const buckets = new Uint32Array(newCount);
    const mask = newCount - 1;
    const blocks = Math.ceil(h.slotHighWater / DIR_SLOTS_PER_BLOCK);
    for (let blk = 0; blk < blocks; blk++) {
      const pb = this.vol.bmap(this.inode, DIR_SLOT_BASE_BLOCK + blk, false);
      if (pb === 0) continue;
      const raw = this.vol.state.read(pb * BLOCK_SIZE, BLOCK_SIZE);
      const dv = new DataView(raw.buffer, raw.byteOffset, BLOCK_SIZE);
      for (let j = 0; j < DIR_SLOTS_PER_BLOCK; j++) {
        const index = blk * DIR_SLOTS_PER_BLOCK + j;
        if (index >= h.slotHighWater) break;
        const o = j * DIR_SLOT_SIZE;
        if (dv.getUint32(o, true) === 0) continue;
        const b = dv.getUint32(o + 4, true) & mask;
        dv.setUint32(o + 8, buckets[b], true);
        buckets[b] = index + 1;
      }
      this.vol.state.write(pb * BLOCK_SIZE, raw);
    }
    // Buckets are little-endian on the page, whatever the host order.
    const le = new Uint8Array(newCount * 4);
    const dv = new DataView(le.buffer);
    for (let i = 0; i < newCount; i++) dv.setUint32(i * 4, buckets[i], true);
    this.vol.writeData(this.inode, DIR_BUCKET_BASE_BLOCK * BLOCK_SIZE, le);
    h.bucketCount = newCount;
    this.writeHeader(h);
  }

  /**
   * Used slots from `start` on, in slot order, up to `max` of them. `next` is the first slot
   * not yet examined (slotHighWater when the listing is complete).
   */
  list(start: number, max: number): { slots: Slot[]; next: number; highWater: number } {
    const h = this.header();
    const slots: Slot[] = [];
    let index = start;
    while (index < h.slotHighWater && slots.length < max) {
      const blk = Math.floor(index / DIR_SLOTS_PER_BLOCK);
      const pb = this.vol.bmap(this.inode, DIR_SLOT_BASE_BLOCK + blk, false);
      if (pb === 0) {
        index = (blk + 1) * DIR_SLOTS_PER_BLOCK;
        continue;
      }
      const raw = this.vol.state.read(pb * BLOCK_SIZE, BLOCK_SIZE);
      for (let j = index % DIR_SLOTS_PER_BLOCK; j < DIR_SLOTS_PER_BLOCK; j++, index++) {
        if (index >= h.slotHighWater || slots.length >= max) break;
        const s = decodeSlot(index, raw.subarray(j * DIR_SLOT_SIZE, (j + 1) * DIR_SLOT_SIZE));
        if (s.ino !== 0) slots.push(s);
      }
    }
    return { slots, next: Math.min(index, h.slotHighWater), highWater: h.slotHighWater };
  }
}
