import type { PagedState } from '@bfs/page-store';
import { FileType } from 'nfs-server-ts';
import {
  BITS_PER_BITMAP_BLOCK,
  BLOCK_SIZE,
  DIRECT_POINTERS,
  PTRS_PER_BLOCK,
  ROOT_INO,
} from './constants';
import { Directory, nameHash } from './directory';
import { levelSpan, slotDepth, slotFirstBlock, Volume, type Inode } from './volume';

export interface FsckReport {
  /** Every inconsistency found (up to `maxErrors`); empty means the file system is sound. */
  errors: string[];
  files: number;
  directories: number;
  /** Blocks referenced by inodes (data and indirect). */
  referencedBlocks: number;
}

/** Default cap on the errors one check collects. */
export const FSCK_MAX_ERRORS = 100;

class TooMany extends Error {}

/**
 * Checks a formatted region for consistency: superblock counters, the free-inode list, every
 * inode's block tree (no block twice, none outside the data area, usedBlocks and size agree),
 * the bitmap against the blocks referenced, every directory's hash chains, free-slot list and
 * entry count, reachability of every inode from the root, parent pointers and link counts.
 * Read-only: it never writes a page.
 */
export function fsck(state: PagedState, maxErrors = FSCK_MAX_ERRORS): FsckReport {
  const report: FsckReport = { errors: [], files: 0, directories: 0, referencedBlocks: 0 };
  const problem = (m: string) => {
    report.errors.push(m);
    if (report.errors.length >= maxErrors) throw new TooMany();
  };
  try {
    check(state, report, problem);
  } catch (e) {
    if (!(e instanceof TooMany)) report.errors.push(`check aborted: ${(e as Error).message}`);
  }
  return report;
}

function check(state: PagedState, report: FsckReport, problem: (m: string) => void): void {
  let vol: Volume;
  try {
    vol = new Volume(state);
  } catch (e) {
    problem((e as Error).message);
    return;
  }
  const g = vol.geo;
  const hw = vol.sbGet('inodeHighWater');
  if (hw < ROOT_INO + 1 || hw > g.inodeCount) {
    problem(`inode high-water mark ${hw} out of range`);
    return;
  }

  // Block ownership, one bit per block.
  const owned = new Uint8Array(Math.ceil(g.totalBlocks / 8));
  const claim = (b: number, who: string): boolean => {
    if (b < g.dataStart || b >= g.totalBlocks) {
      problem(`${who}: block pointer ${b} outside the data area`);
      return false;
    }
    if (owned[b >>> 3] & (1 << (b & 7))) {
      problem(`${who}: block ${b} referenced twice`);
      return false;
    }
    owned[b >>> 3] |= 1 << (b & 7);
    report.referencedBlocks++;
    return true;
  };

  const inodes = new Map<number, Inode>();
  for (let ino = ROOT_INO; ino < hw; ino++) {
    const n = vol.readInode(ino);
    if (n.type === 0) continue;
    if (n.type < FileType.REG || n.type > FileType.FIFO) {
      problem(`inode ${ino}: bad type ${n.type}`);
      continue;
    }
    inodes.set(ino, n);
    let count = 0;
    let lastData = -1;
    const walk = (p: number, depth: number, first: number) => {
      if (!claim(p, `inode ${ino}`)) return;
      count++;
      if (depth === 0) {
        lastData = Math.max(lastData, first);
        return;
      }
      const raw = state.read(p * BLOCK_SIZE, BLOCK_SIZE);
      const dv = new DataView(raw.buffer, raw.byteOffset, BLOCK_SIZE);
      const span = levelSpan(depth - 1);
      for (let i = 0; i < PTRS_PER_BLOCK; i++) {
        const c = dv.getUint32(i * 4, true);
        if (c !== 0) walk(c, depth - 1, first + i * span);
      }
    };
    for (let slot = 0; slot < DIRECT_POINTERS + 3; slot++) {
      if (n.ptrs[slot] !== 0) walk(n.ptrs[slot], slotDepth(slot), slotFirstBlock(slot));
    }
    if (count !== n.usedBlocks) {
      problem(`inode ${ino}: usedBlocks ${n.usedBlocks} but owns ${count} blocks`);
    }
    if (
      (n.type === FileType.REG || n.type === FileType.LNK) &&
      lastData >= Math.ceil(n.size / BLOCK_SIZE)
    ) {
      problem(`inode ${ino}: data block ${lastData} past its size ${n.size}`);
    }
    if (
      n.type !== FileType.REG &&
      n.type !== FileType.LNK &&
      n.type !== FileType.DIR &&
      n.usedBlocks
    ) {
      problem(`inode ${ino}: special file owns blocks`);
    }
    if (n.type === FileType.DIR) report.directories++;
    else report.files++;
  }

  // Free-inode list.
  const onFreeList = new Set<number>();
  for (let ino = vol.sbGet('freeInodeHead'); ino !== 0;) {
    if (ino >= hw || onFreeList.has(ino)) {
      problem(`free inode list broken at ${ino}`);
      break;
    }
    onFreeList.add(ino);
    const n = vol.readInode(ino);
    if (n.type !== 0) problem(`inode ${ino} is on the free list but in use`);
    ino = n.nextFree;
  }
  if (inodes.size + onFreeList.size !== hw - 1) {
    problem(
      `${hw - 1 - inodes.size - onFreeList.size} free inodes below the high-water mark are lost`,
    );
  }
  const freeInodes = vol.sbGet('freeInodes');
  if (freeInodes !== g.inodeCount - hw + onFreeList.size) {
    problem(
      `superblock says ${freeInodes} free inodes, counted ${g.inodeCount - hw + onFreeList.size}`,
    );
  }

  // Directory tree from the root.
  const refs = new Map<number, number>();
  const subdirs = new Map<number, number>();
  const root = inodes.get(ROOT_INO);
  if (!root || root.type !== FileType.DIR) {
    problem('root inode is not a directory');
    return;
  }
  if (root.parent !== ROOT_INO) problem('root directory is not its own parent');
  const queue: Inode[] = [root];
  const seenDirs = new Set<number>([ROOT_INO]);
  while (queue.length > 0) {
    const d = queue.shift() as Inode;
    const dir = new Directory(vol, d);
    let h;
    try {
      h = dir.header();
    } catch (e) {
      problem((e as Error).message);
      continue;
    }
    const used = new Map<number, { ino: number; hash: number; next: number; name: Uint8Array }>();
    for (let i = 0; i < h.slotHighWater; i++) {
      const s = dir.readSlot(i);
      if (s.ino !== 0) used.set(i, s);
    }
    if (used.size !== h.entryCount) {
      problem(`directory ${d.ino}: header counts ${h.entryCount} entries, slots hold ${used.size}`);
    }
    const chained = new Set<number>();
    for (let b = 0; b < h.bucketCount; b++) {
      for (let link = dir.readBucket(b); link !== 0;) {
        const s = used.get(link - 1);
        if (!s || chained.has(link - 1)) {
          problem(`directory ${d.ino}: bucket ${b} chains bad or repeated slot ${link - 1}`);
          break;
        }
        chained.add(link - 1);
        if (s.hash !== nameHash(s.name, g.hashSeed))
          problem(`directory ${d.ino}: slot ${link - 1} hash is wrong`);
        if ((s.hash & (h.bucketCount - 1)) !== b) {
          problem(`directory ${d.ino}: slot ${link - 1} in the wrong bucket`);
        }
        link = s.next;
      }
    }
    if (chained.size !== used.size) {
      problem(`directory ${d.ino}: ${used.size - chained.size} entries unreachable by hash`);
    }
    const freeSlots = new Set<number>();
    for (let link = h.freeSlotHead; link !== 0;) {
      if (link > h.slotHighWater || used.has(link - 1) || freeSlots.has(link - 1)) {
        problem(`directory ${d.ino}: free slot list broken at ${link - 1}`);
        break;
      }
      freeSlots.add(link - 1);
      link = dir.readSlot(link - 1).next;
    }
    if (used.size + freeSlots.size !== h.slotHighWater) {
      problem(`directory ${d.ino}: ${h.slotHighWater - used.size - freeSlots.size} slots lost`);
    }
    const names = new Set<string>();
    let nsub = 0;
    for (const s of used.values()) {
      const name = Buffer.from(s.name).toString('latin1');
      if (names.has(name)) problem(`directory ${d.ino}: duplicate name`);
      names.add(name);
      const child = inodes.get(s.ino);
      if (!child) {
        problem(`directory ${d.ino}: entry names free inode ${s.ino}`);
        continue;
      }
      refs.set(s.ino, (refs.get(s.ino) ?? 0) + 1);
      if (child.type === FileType.DIR) {
        nsub++;
        if (seenDirs.has(s.ino)) {
          problem(`directory ${s.ino} has more than one name`);
          continue;
        }
        seenDirs.add(s.ino);
        if (child.parent !== d.ino)
          problem(`directory ${s.ino}: parent ${child.parent}, found in ${d.ino}`);
        queue.push(child);
      }
    }
    subdirs.set(d.ino, nsub);
  }
  for (const [ino, n] of inodes) {
    if (n.type === FileType.DIR) {
      if (!seenDirs.has(ino)) problem(`directory ${ino} is unreachable`);
      else if (n.nlink !== 2 + (subdirs.get(ino) ?? 0)) {
        problem(`directory ${ino}: nlink ${n.nlink}, expected ${2 + (subdirs.get(ino) ?? 0)}`);
      }
    } else {
      const r = refs.get(ino) ?? 0;
      if (r === 0) problem(`inode ${ino} is unreachable`);
      else if (n.nlink !== r) problem(`inode ${ino}: nlink ${n.nlink}, ${r} names`);
    }
  }

  // Bitmap against ownership.
  let free = 0;
  for (let bb = 0; bb < g.bitmapBlocks; bb++) {
    const map = state.read((g.bitmapStart + bb) * BLOCK_SIZE, BLOCK_SIZE);
    const first = bb * BITS_PER_BITMAP_BLOCK;
    for (let byte = 0; byte < BLOCK_SIZE; byte++) {
      const v = map[byte];
      const base = first + byte * 8;
      if (base >= g.dataStart && base + 8 <= g.totalBlocks && v === owned[base >>> 3]) {
        for (let k = 0; k < 8; k++) if (!(v & (1 << k))) free++;
        continue;
      }
      for (let k = 0; k < 8; k++) {
        const b = base + k;
        const set = (v & (1 << k)) !== 0;
        if (b < g.dataStart || b >= g.totalBlocks) {
          if (!set) problem(`block ${b} (metadata or past the end) marked free`);
          continue;
        }
        const isOwned = (owned[b >>> 3] & (1 << (b & 7))) !== 0;
        if (set && !isOwned) problem(`block ${b} marked used but unreferenced (leak)`);
        if (!set && isOwned) problem(`block ${b} referenced but marked free`);
        if (!set) free++;
      }
    }
  }
  const sbFree = vol.freeBlockCount();
  if (sbFree !== free) problem(`superblock says ${sbFree} free blocks, bitmap has ${free}`);
}
