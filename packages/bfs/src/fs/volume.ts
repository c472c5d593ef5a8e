import { createHash } from 'node:crypto';
import type { PagedState } from '@bfs/page-store';
import {
  GENERATION_KEY_BYTES,
  NfsError,
  NfsStatus,
  type FileType,
  type NfsTime,
  firstGeneration,
  nextGeneration,
} from 'nfs-server-ts';
import {
  BLOCK_SIZE,
  DIRECT_POINTERS,
  FORMAT_VERSION,
  INODE_SIZE,
  MAX_FILE_SIZE,
  PTRS_PER_BLOCK,
  SUPERBLOCK_MAGIC,
} from './constants';

/** Byte offsets of the superblock fields (block 0). */
export const SB = {
  magic: 0,
  version: 8,
  blockSize: 12,
  totalBlocks: 16,
  inodeCount: 20,
  inodeTableStart: 24,
  inodeTableBlocks: 28,
  bitmapStart: 32,
  bitmapBlocks: 36,
  dataStart: 40,
  fsid: 44,
  writeVerifier: 48,
  freeBlocks: 56,
  freeInodes: 60,
  inodeHighWater: 64,
  freeInodeHead: 68,
  allocHint: 72,
  hashSeed: 76,
  /** GENERATION_KEY_BYTES; all zero in file systems made before keyed generations. */
  generationKey: 80,
} as const;

/** Bytes of the superblock that loadGeometry reads. */
const SB_READ_BYTES = 128;

/**
 * The generation key of a file system whose superblock has none (all zero: made before
 * generations were keyed, or by mkfs without a key): derived from its name-hash seed, fsid and
 * write verifier, so every replica derives the same. It is only as secret as the hash seed
 * (32 bits), where a stored key has 128.
 */
export function derivedGenerationKey(
  hashSeed: number,
  fsid: number,
  verifier: Uint8Array,
): Uint8Array {
  const h = createHash('sha256').update('BFS-TS generation key v1');
  const b = Buffer.alloc(8);
  b.writeUInt32LE(hashSeed >>> 0, 0);
  b.writeUInt32LE(fsid >>> 0, 4);
  return new Uint8Array(h.update(b).update(verifier).digest().subarray(0, GENERATION_KEY_BYTES));
}

/** Immutable geometry fixed by mkfs; a pure function of the superblock. */
export interface Geometry {
  totalBlocks: number;
  inodeCount: number;
  inodeTableStart: number;
  inodeTableBlocks: number;
  bitmapStart: number;
  bitmapBlocks: number;
  dataStart: number;
  fsid: number;
  writeVerifier: Uint8Array;
  /** Seed of the directory name hash. */
  hashSeed: number;
  /** Key of the inode generations (the superblock's, or derivedGenerationKey). */
  generationKey: Uint8Array;
}

/** An inode decoded from its 128 bytes. type 0 means free. */
export interface Inode {
  ino: number;
  type: FileType | 0;
  /** Bit 0: `verifier` holds an EXCLUSIVE-create verifier. */
  flags: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  generation: number;
  size: number;
  /** Blocks owned: data plus indirect blocks. */
  usedBlocks: number;
  rdevMajor: number;
  rdevMinor: number;
  atime: NfsTime;
  mtime: NfsTime;
  ctime: NfsTime;
  /** Directories: inode of the parent ('..'); the root is its own parent. */
  parent: number;
  /** Free inodes: next free inode number (0 ends the list). */
  nextFree: number;
  verifier: Uint8Array;
  /** DIRECT_POINTERS direct, then single, double and triple indirect block numbers. */
  ptrs: number[];
}

export const INODE_FLAG_VERIFIER = 1;
const PTR_SLOTS = DIRECT_POINTERS + 3;
const LEVEL_SPAN = [1, PTRS_PER_BLOCK, PTRS_PER_BLOCK ** 2, PTRS_PER_BLOCK ** 3];
const ZERO_BLOCK = new Uint8Array(BLOCK_SIZE);
/** Bytes of bitmap read per step of a free-block search (2048 blocks). */
const BITMAP_SCAN_WINDOW = 256;

export function decodeInode(ino: number, b: Uint8Array): Inode {
  const dv = new DataView(b.buffer, b.byteOffset, INODE_SIZE);
  const ptrs: number[] = [];
  for (let i = 0; i < PTR_SLOTS; i++) ptrs.push(dv.getUint32(84 + 4 * i, true));
  return {
    ino,
    type: b[0] as FileType | 0,
    flags: b[1],
    mode: dv.getUint32(4, true),
    nlink: dv.getUint32(8, true),
    uid: dv.getUint32(12, true),
    gid: dv.getUint32(16, true),
    generation: dv.getUint32(20, true),
    size: dv.getUint32(24, true) + dv.getUint32(28, true) * 2 ** 32,
    usedBlocks: dv.getUint32(32, true),
    rdevMajor: dv.getUint32(36, true),
    rdevMinor: dv.getUint32(40, true),
    atime: { seconds: dv.getUint32(44, true), nseconds: dv.getUint32(48, true) },
    mtime: { seconds: dv.getUint32(52, true), nseconds: dv.getUint32(56, true) },
    ctime: { seconds: dv.getUint32(60, true), nseconds: dv.getUint32(64, true) },
    parent: dv.getUint32(68, true),
    nextFree: dv.getUint32(72, true),
    verifier: b.slice(76, 84),
    ptrs,
  };
}

export function encodeInode(n: Inode): Uint8Array {
  const b = new Uint8Array(INODE_SIZE);
  const dv = new DataView(b.buffer);
  b[0] = n.type;
  b[1] = n.flags;
  dv.setUint32(4, n.mode, true);
  dv.setUint32(8, n.nlink, true);
  dv.setUint32(12, n.uid, true);
  dv.setUint32(16, n.gid, true);
  dv.setUint32(20, n.generation, true);
  dv.setUint32(24, n.size % 2 ** 32, true);
  dv.setUint32(28, Math.floor(n.size / 2 ** 32), true);
  dv.setUint32(32, n.usedBlocks, true);
  dv.setUint32(36, n.rdevMajor, true);
  dv.setUint32(40, n.rdevMinor, true);
  const times = [n.atime, n.mtime, n.ctime];
  for (let i = 0; i < 3; i++) {
    dv.setUint32(44 + 8 * i, times[i].seconds >>> 0, true);
    dv.setUint32(48 + 8 * i, times[i].nseconds >>> 0, true);
  }
  dv.setUint32(68, n.parent, true);
  dv.setUint32(72, n.nextFree, true);
  b.set(n.verifier.subarray(0, 8), 76);
  for (let i = 0; i < PTR_SLOTS; i++) dv.setUint32(84 + 4 * i, n.ptrs[i] ?? 0, true);
  return b;
}

export function blankInode(ino: number): Inode {
  const t = { seconds: 0, nseconds: 0 };
  return {
    ino,
    type: 0,
    flags: 0,
    mode: 0,
    nlink: 0,
    uid: 0,
    gid: 0,
    generation: 0,
    size: 0,
    usedBlocks: 0,
    rdevMajor: 0,
    rdevMinor: 0,
    atime: t,
    mtime: t,
    ctime: t,
    parent: 0,
    nextFree: 0,
    verifier: new Uint8Array(8),
    ptrs: new Array<number>(PTR_SLOTS).fill(0),
  };
}

/**
 * Where logical block `lb` of a file hangs: the inode pointer slot and the indexes into each
 * indirect level below it.
 */
export function blockPath(lb: number): { slot: number; idx: number[] } {
  if (lb < DIRECT_POINTERS) return { slot: lb, idx: [] };
  let rest = lb - DIRECT_POINTERS;
  for (let level = 1; level <= 3; level++) {
    if (rest < LEVEL_SPAN[level]) {
      const idx: number[] = [];
      for (let l = level - 1; l >= 0; l--)
        idx.push(Math.floor(rest / LEVEL_SPAN[l]) % PTRS_PER_BLOCK);
      return { slot: DIRECT_POINTERS + level - 1, idx };
    }
    rest -= LEVEL_SPAN[level];
  }
  throw new NfsError(NfsStatus.FBIG, `logical block ${lb} beyond the block map`);
}

/** First logical block covered by each pointer slot of the inode. */
export function slotFirstBlock(slot: number): number {
  if (slot < DIRECT_POINTERS) return slot;
  let first = DIRECT_POINTERS;
  for (let level = 1; level < slot - DIRECT_POINTERS + 1; level++) first += LEVEL_SPAN[level];
  return first;
}

/** Indirect levels below a pointer slot (0 for a direct pointer). */
export function slotDepth(slot: number): number {
  return slot < DIRECT_POINTERS ? 0 : slot - DIRECT_POINTERS + 1;
}

export function levelSpan(depth: number): number {
  return LEVEL_SPAN[depth];
}

/**
 * Low-level access to a formatted region: superblock counters, inodes, the block bitmap, block
 * maps and file bytes. Holds no state of its own beyond the geometry, which mkfs fixed.
 */
export class Volume {
  geo!: Geometry;

  constructor(readonly state: PagedState) {
    this.loadGeometry();
  }

  /** Re-reads the superblock geometry (after a rollback or state transfer replaced pages). */
  loadGeometry(): void {
    const sb = this.state.read(0, SB_READ_BYTES);
    const dv = new DataView(sb.buffer, sb.byteOffset, sb.byteLength);
    const magic = Buffer.from(sb.subarray(0, 8)).toString('latin1');
    if (magic !== SUPERBLOCK_MAGIC) throw new Error('not a BFS file system (bad superblock magic)');
    const version = dv.getUint32(SB.version, true);
    if (version !== FORMAT_VERSION) throw new Error(`unsupported BFS format version ${version}`);
    if (dv.getUint32(SB.blockSize, true) !== BLOCK_SIZE) throw new Error('bad BFS block size');
    const u = (o: number) => dv.getUint32(o, true);
    this.geo = {
      totalBlocks: u(SB.totalBlocks),
      inodeCount: u(SB.inodeCount),
      inodeTableStart: u(SB.inodeTableStart),
      inodeTableBlocks: u(SB.inodeTableBlocks),
      bitmapStart: u(SB.bitmapStart),
      bitmapBlocks: u(SB.bitmapBlocks),
      dataStart: u(SB.dataStart),
      fsid: u(SB.fsid),
      writeVerifier: sb.slice(SB.writeVerifier, SB.writeVerifier + 8),
      hashSeed: u(SB.hashSeed),
      generationKey: sb.slice(SB.generationKey, SB.generationKey + GENERATION_KEY_BYTES),
    };
    if (this.geo.generationKey.every((b) => b === 0)) {
      this.geo.generationKey = derivedGenerationKey(
        this.geo.hashSeed,
        this.geo.fsid,
        this.geo.writeVerifier,
      );
    }
    const g = this.geo;
    if (
      g.totalBlocks * BLOCK_SIZE > this.state.size ||
      g.inodeTableStart + g.inodeTableBlocks > g.bitmapStart ||
      g.bitmapStart + g.bitmapBlocks > g.dataStart ||
      g.dataStart >= g.totalBlocks ||
      g.inodeCount * INODE_SIZE > g.inodeTableBlocks * BLOCK_SIZE
    ) {
      throw new Error('BFS superblock geometry is inconsistent with the region');
    }
  }

  readU32(offset: number): number {
    const b = this.state.read(offset, 4);
    return (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
  }

  writeU32(offset: number, v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    this.state.write(offset, b);
  }

  sbGet(field: keyof typeof SB): number {
    return this.readU32(SB[field]);
  }

  sbSet(field: keyof typeof SB, v: number): void {
    this.writeU32(SB[field], v);
  }

  // ---- inodes ----

  inodeOffset(ino: number): number {
    return this.geo.inodeTableStart * BLOCK_SIZE + ino * INODE_SIZE;
  }

  readInode(ino: number): Inode {
    return decodeInode(ino, this.state.read(this.inodeOffset(ino), INODE_SIZE));
  }

  writeInode(n: Inode): void {
    this.state.write(this.inodeOffset(n.ino), encodeInode(n));
  }

  /** Takes an inode off the free list (or the never-used tail); the caller fills and writes it. */
  allocInode(): Inode {
    if (this.sbGet('freeInodes') === 0) throw new NfsError(NfsStatus.NOSPC, 'no free inodes');
    const head = this.sbGet('freeInodeHead');
    let n: Inode;
    if (head !== 0) {
      const old = this.readInode(head);
      if (old.type !== 0)
        throw new NfsError(NfsStatus.IO, `free inode list names inode ${head} in use`);
      this.sbSet('freeInodeHead', old.nextFree);
      n = blankInode(head);
      n.generation = old.generation;
    } else {
      const hw = this.sbGet('inodeHighWater');
      if (hw >= this.geo.inodeCount)
        throw new NfsError(NfsStatus.IO, 'inode counters inconsistent');
      this.sbSet('inodeHighWater', hw + 1);
      // Never-used inodes are not read: mkfs need not zero the table.
      n = blankInode(hw);
      n.generation = firstGeneration(this.geo.generationKey, hw);
    }
    this.sbSet('freeInodes', this.sbGet('freeInodes') - 1);
    return n;
  }

  /**
   * Frees the inode's blocks and the inode itself, moving it to its next generation (a keyed
   * permutation step, see nfs-server-ts's generation.ts), so its old handles are STALE.
   */
  freeInode(n: Inode): void {
    this.truncateBlocks(n, 0);
    const free = blankInode(n.ino);
    free.generation = nextGeneration(this.geo.generationKey, n.ino, n.generation);
    free.nextFree = this.sbGet('freeInodeHead');
    this.writeInode(free);
    this.sbSet('freeInodeHead', n.ino);
    this.sbSet('freeInodes', this.sbGet('freeInodes') + 1);
  }

  // ---- blocks ----

  freeBlockCount(): number {
    return this.sbGet('freeBlocks');
  }

  /** Throws NOSPC unless at least `n` blocks are free, so an operation fails before it mutates. */
  requireBlocks(n: number): void {
    if (this.freeBlockCount() < n) throw new NfsError(NfsStatus.NOSPC, 'no space left');
  }

  isBlockUsed(b: number): boolean {
    const off = this.geo.bitmapStart * BLOCK_SIZE + (b >>> 3);
    return (this.state.read(off, 1)[0] & (1 << (b & 7))) !== 0;
  }

  /**
   * Allocates the first free block at or after the rotating hint, zeroed unless the caller is
   * about to overwrite all of it. Scans the bitmap in small windows: a fresh file system keeps
   * the hint at the first free bit, so one window usually suffices.
   */
  allocBlock(zero = true): number {
    const free = this.freeBlockCount();
    if (free === 0) throw new NfsError(NfsStatus.NOSPC, 'no space left');
    const g = this.geo;
    let hint = this.sbGet('allocHint');
    if (hint < g.dataStart || hint >= g.totalBlocks) hint = g.dataStart;
    const mapBase = g.bitmapStart * BLOCK_SIZE;
    const mapBytes = Math.ceil(g.totalBlocks / 8);
    const startByte = hint >>> 3;
    // Wrap around once: the window that holds the hint is scanned again from its start.
    for (let scanned = 0; scanned <= mapBytes + BITMAP_SCAN_WINDOW;) {
      const from = (startByte + scanned) % mapBytes;
      const len = Math.min(BITMAP_SCAN_WINDOW, mapBytes - from);
      const map = this.state.read(mapBase + from, len);
      for (let i = 0; i < len; i++) {
        const v = map[i];
        if (v === 0xff) continue;
        let bit = 0;
        while (v & (1 << bit)) bit++;
        const blk = (from + i) * 8 + bit;
        if (blk >= g.totalBlocks) continue;
        this.state.write(mapBase + from + i, Uint8Array.of(v | (1 << bit)));
        this.sbSet('freeBlocks', free - 1);
        this.sbSet('allocHint', blk + 1 >= g.totalBlocks ? g.dataStart : blk + 1);
        if (zero) this.state.write(blk * BLOCK_SIZE, ZERO_BLOCK);
        return blk;
      }
      scanned += len;
    }
    throw new NfsError(NfsStatus.IO, 'free-block count says free space, bitmap says none');
  }

  freeBlock(b: number): void {
    this.checkBlock(b);
    const off = this.geo.bitmapStart * BLOCK_SIZE + (b >>> 3);
    const v = this.state.read(off, 1)[0];
    const bit = 1 << (b & 7);
    if (!(v & bit)) throw new NfsError(NfsStatus.IO, `double free of block ${b}`);
    this.state.write(off, Uint8Array.of(v & ~bit));
    this.sbSet('freeBlocks', this.freeBlockCount() + 1);
  }

  /** A pointer read from the pages must name a data block; anything else is corruption. */
  checkBlock(b: number): void {
    if (b < this.geo.dataStart || b >= this.geo.totalBlocks) {
      throw new NfsError(NfsStatus.IO, `corrupt block pointer ${b}`);
    }
  }

  private readPtr(block: number, idx: number): number {
    return this.readU32(block * BLOCK_SIZE + idx * 4);
  }

  /**
   * Physical block of logical block `lb`, or 0 for a hole. With `alloc`, fills holes (and the
   * indirect blocks on the way), counting them in `n.usedBlocks`; the caller writes `n` back.
   */
  bmap(n: Inode, lb: number, alloc: boolean, fullOverwrite = false): number {
    const { slot, idx } = blockPath(lb);
    let p = n.ptrs[slot];
    if (p === 0) {
      if (!alloc) return 0;
      p = this.allocBlock(!(fullOverwrite && idx.length === 0));
      n.ptrs[slot] = p;
      n.usedBlocks++;
    } else this.checkBlock(p);
    for (let k = 0; k < idx.length; k++) {
      const i = idx[k];
      let c = this.readPtr(p, i);
      if (c === 0) {
        if (!alloc) return 0;
        // Only the data block at the bottom may skip zeroing, and only when fully overwritten.
        c = this.allocBlock(!(fullOverwrite && k === idx.length - 1));
        this.writeU32(p * BLOCK_SIZE + i * 4, c);
        n.usedBlocks++;
      } else this.checkBlock(c);
      p = c;
    }
    return p;
  }

  /** Upper bound on the blocks a write of logical blocks [first, last] may allocate. */
  blocksNeeded(n: Inode, first: number, last: number): number {
    let holes = 0;
    for (let lb = first; lb <= last; lb++) if (this.bmap(n, lb, false) === 0) holes++;
    if (holes === 0) return 0;
    // Each hole may need fresh indirect blocks at every level: bound them generously.
    return holes + 2 * Math.ceil(holes / PTRS_PER_BLOCK) + 6;
  }

  /** Reads file bytes; holes and bytes past `limit` read as zeros. */
  readData(n: Inode, offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const pos = offset + done;
      const lb = Math.floor(pos / BLOCK_SIZE);
      const within = pos % BLOCK_SIZE;
      const chunk = Math.min(BLOCK_SIZE - within, length - done);
      const pb = this.bmap(n, lb, false);
      if (pb !== 0) out.set(this.state.read(pb * BLOCK_SIZE + within, chunk), done);
      done += chunk;
    }
    return out;
  }

  /** Writes file bytes, allocating blocks; does not touch `size`. */
  writeData(n: Inode, offset: number, data: Uint8Array): void {
    if (offset + data.length > MAX_FILE_SIZE) throw new NfsError(NfsStatus.FBIG);
    let done = 0;
    while (done < data.length) {
      const pos = offset + done;
      const lb = Math.floor(pos / BLOCK_SIZE);
      const within = pos % BLOCK_SIZE;
      const chunk = Math.min(BLOCK_SIZE - within, data.length - done);
      const pb = this.bmap(n, lb, true, chunk === BLOCK_SIZE);
      this.state.write(pb * BLOCK_SIZE + within, data.subarray(done, done + chunk));
      done += chunk;
    }
  }

  /**
   * Frees every block at logical index >= `keep` and the indirect blocks left empty, and zeroes
   * the tail of the last kept block past `tailFrom` bytes so a later extension reads zeros.
   */
  truncateBlocks(n: Inode, newSize: number): void {
    const keep = Math.ceil(newSize / BLOCK_SIZE);
    for (let slot = 0; slot < n.ptrs.length; slot++) {
      const p = n.ptrs[slot];
      if (p === 0) continue;
      const first = slotFirstBlock(slot);
      const depth = slotDepth(slot);
      if (first + levelSpan(depth) <= keep) continue;
      if (this.truncTree(n, p, depth, first, keep)) n.ptrs[slot] = 0;
    }
    const tail = newSize % BLOCK_SIZE;
    if (tail !== 0) {
      const pb = this.bmap(n, keep - 1, false);
      if (pb !== 0) this.state.write(pb * BLOCK_SIZE + tail, ZERO_BLOCK.subarray(tail));
    }
  }

  /** Returns true when block `p` (covering from logical block `first`) was freed. */
  private truncTree(n: Inode, p: number, depth: number, first: number, keep: number): boolean {
    this.checkBlock(p);
    if (depth === 0) {
      if (first < keep) return false;
      this.freeBlock(p);
      n.usedBlocks--;
      return true;
    }
    const span = levelSpan(depth - 1);
    const raw = this.state.read(p * BLOCK_SIZE, BLOCK_SIZE);
    const dv = new DataView(raw.buffer, raw.byteOffset, BLOCK_SIZE);
    let live = 0;
    for (let i = 0; i < PTRS_PER_BLOCK; i++) {
      const c = dv.getUint32(i * 4, true);
      if (c === 0) continue;
      const cFirst = first + i * span;
      if (cFirst + span <= keep) {
        live++;
        continue;
      }
      if (this.truncTree(n, c, depth - 1, cFirst, keep)) this.writeU32(p * BLOCK_SIZE + i * 4, 0);
      else live++;
    }
    if (live > 0) return false;
    this.freeBlock(p);
    n.usedBlocks--;
    return true;
  }
}
