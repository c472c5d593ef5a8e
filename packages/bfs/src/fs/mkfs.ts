import type { PagedState } from '@bfs/page-store';
import { FileType, GENERATION_KEY_BYTES, type NfsTime } from 'nfs-server-ts';
import {
  BITS_PER_BITMAP_BLOCK,
  BLOCK_SIZE,
  DEFAULT_BYTES_PER_INODE,
  DEFAULT_ROOT_MODE,
  FORMAT_VERSION,
  INODE_SIZE,
  MAX_BLOCKS,
  MAX_INODES,
  MIN_DATA_BLOCKS,
  MIN_INODES,
  ROOT_INO,
  SUPERBLOCK_MAGIC,
} from './constants';
import { Directory } from './directory';
import { SB, Volume } from './volume';

export interface MkfsOptions {
  /** File-system id reported in attributes and carried in handles (default 1). */
  fsid?: number;
  /** Inodes to lay out (default: one per DEFAULT_BYTES_PER_INODE of the region). */
  inodes?: number;
  /** Time stamped on the root directory and folded into the write verifier (default 0). */
  time?: NfsTime;
  rootMode?: number;
  rootUid?: number;
  rootGid?: number;
  /**
   * Seed of the directory name hash (u32). Services should pass a secret drawn once for the
   * cluster (every replica the same); the default is derived from fsid and time, which keeps
   * mkfs deterministic but is guessable.
   */
  hashSeed?: number;
  /**
   * Key of the inode generations (GENERATION_KEY_BYTES, stored in the superblock). Services
   * pass a secret drawn once for the cluster; without one the key is derived from hashSeed,
   * fsid and the write verifier (derivedGenerationKey), deterministic but only as secret as
   * the seed.
   */
  generationKey?: Uint8Array;
}

export interface MkfsResult {
  totalBlocks: number;
  inodeCount: number;
  dataStart: number;
  freeBlocks: number;
}

/**
 * Lays out a fresh file system in `state`: the result depends only on the region size and the
 * options, so every replica formats byte-identically. Writes only the superblock, the bitmap
 * and the root directory; the inode table needs no zeroing (inodes past the high-water mark are
 * never read) and data blocks are zeroed when allocated, so old contents of the region are
 * harmless.
 */
function defaultSeed(fsid: number, time: NfsTime): number {
  let h = Math.imul(fsid ^ 0x9e3779b9, 0x85ebca6b) ^ time.seconds;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) ^ time.nseconds;
  return (h ^ (h >>> 16)) >>> 0;
}

export function mkfs(state: PagedState, opts: MkfsOptions = {}): MkfsResult {
  const totalBlocks = Math.min(Math.floor(state.size / BLOCK_SIZE), MAX_BLOCKS);
  const inodeCount = Math.max(
    MIN_INODES,
    Math.min(MAX_INODES, opts.inodes ?? Math.floor(state.size / DEFAULT_BYTES_PER_INODE)),
  );
  const inodeTableStart = 1;
  const inodeTableBlocks = Math.ceil((inodeCount * INODE_SIZE) / BLOCK_SIZE);
  const bitmapStart = inodeTableStart + inodeTableBlocks;
  const bitmapBlocks = Math.ceil(totalBlocks / BITS_PER_BITMAP_BLOCK);
  const dataStart = bitmapStart + bitmapBlocks;
  if (dataStart + MIN_DATA_BLOCKS > totalBlocks) {
    throw new RangeError(
      `region of ${state.size} bytes too small for ${inodeCount} inodes and ${MIN_DATA_BLOCKS} data blocks`,
    );
  }
  const fsid = (opts.fsid ?? 1) >>> 0;
  const time = opts.time ?? { seconds: 0, nseconds: 0 };

  const sb = new Uint8Array(BLOCK_SIZE);
  const dv = new DataView(sb.buffer);
  sb.set(Buffer.from(SUPERBLOCK_MAGIC, 'latin1'), SB.magic);
  const put = (o: number, v: number) => dv.setUint32(o, v >>> 0, true);
  put(SB.version, FORMAT_VERSION);
  put(SB.blockSize, BLOCK_SIZE);
  put(SB.totalBlocks, totalBlocks);
  put(SB.inodeCount, inodeCount);
  put(SB.inodeTableStart, inodeTableStart);
  put(SB.inodeTableBlocks, inodeTableBlocks);
  put(SB.bitmapStart, bitmapStart);
  put(SB.bitmapBlocks, bitmapBlocks);
  put(SB.dataStart, dataStart);
  put(SB.fsid, fsid);
  // Replication makes every write stable, so the verifier never needs to change after mkfs.
  put(SB.writeVerifier, fsid);
  put(SB.writeVerifier + 4, time.seconds);
  put(SB.freeBlocks, totalBlocks - dataStart);
  // Inode 0 is reserved so that 0 can mean "none".
  put(SB.freeInodes, inodeCount - 1);
  put(SB.inodeHighWater, ROOT_INO);
  put(SB.freeInodeHead, 0);
  put(SB.allocHint, dataStart);
  put(SB.hashSeed, opts.hashSeed ?? defaultSeed(fsid, time));
  if (opts.generationKey !== undefined) {
    if (opts.generationKey.length !== GENERATION_KEY_BYTES) {
      throw new RangeError(`generation key must be ${GENERATION_KEY_BYTES} bytes`);
    }
    sb.set(opts.generationKey, SB.generationKey);
  }
  state.write(0, sb);

  // Bitmap: metadata blocks and the bits past the end of the region are permanently in use.
  for (let bb = 0; bb < bitmapBlocks; bb++) {
    const map = new Uint8Array(BLOCK_SIZE);
    const first = bb * BITS_PER_BITMAP_BLOCK;
    for (let i = 0; i < BITS_PER_BITMAP_BLOCK; i++) {
      const blk = first + i;
      if (blk < dataStart || blk >= totalBlocks) map[i >>> 3] |= 1 << (i & 7);
      else if (blk >= dataStart && i % 8 === 0 && blk + 8 <= totalBlocks) i += 7;
    }
    state.write((bitmapStart + bb) * BLOCK_SIZE, map);
  }

  const vol = new Volume(state);
  const root = vol.allocInode();
  root.type = FileType.DIR;
  root.mode = (opts.rootMode ?? DEFAULT_ROOT_MODE) & 0o7777;
  root.nlink = 2;
  root.uid = opts.rootUid ?? 0;
  root.gid = opts.rootGid ?? 0;
  root.parent = ROOT_INO;
  root.atime = root.mtime = root.ctime = { ...time };
  Directory.init(vol, root);
  vol.writeInode(root);
  return { totalBlocks, inodeCount, dataStart, freeBlocks: vol.freeBlockCount() };
}
