/**
 * Layout constants and limits of the BFS file system. Everything here is part of the on-page
 * format: changing a value changes the bytes every replica writes, so bump FORMAT_VERSION.
 * docs/bfs-filesystem.md explains each region.
 */

/** File-system block size in bytes; equal to the page store's default page size. */
export const BLOCK_SIZE = 4096;
/** Block numbers and pointers are 32-bit, so a block holds this many pointers. */
export const PTRS_PER_BLOCK = BLOCK_SIZE / 4;
/** Bits in one bitmap block: the number of blocks one bitmap block describes. */
export const BITS_PER_BITMAP_BLOCK = BLOCK_SIZE * 8;

/** Magic at the start of the superblock. */
export const SUPERBLOCK_MAGIC = 'BFSTS-FS';
/** Version of the on-page format described in docs/bfs-filesystem.md. */
export const FORMAT_VERSION = 1;

/** Bytes per on-page inode. */
export const INODE_SIZE = 128;
/** Direct block pointers per inode; then one single, one double and one triple indirect. */
export const DIRECT_POINTERS = 8;
/** Inode number of the root directory (0 is never used, so 0 can mean "none"). */
export const ROOT_INO = 1;
/** Default space per inode when mkfs sizes the inode table (one inode per 16 KiB). */
export const DEFAULT_BYTES_PER_INODE = 16384;
/** Fewest inodes mkfs accepts. */
export const MIN_INODES = 16;
/** Most inodes mkfs lays out (a 512 MiB inode table). */
export const MAX_INODES = 1 << 22;
/** Fewest data blocks mkfs accepts after the metadata regions. */
export const MIN_DATA_BLOCKS = 16;
/** Largest region mkfs accepts: block numbers must fit in 32 bits. */
export const MAX_BLOCKS = 0xffffffff;

/** Largest file size (4 TiB; the triple-indirect tree reaches a little further). */
export const MAX_FILE_SIZE = 2 ** 42;
/** Longest name of a directory entry, in UTF-8 bytes. */
export const MAX_NAME_LENGTH = 255;
/** Longest symbolic-link target, in bytes (NFSv3 MAXPATHLEN). */
export const MAX_SYMLINK_LENGTH = 1024;
/** Most hard links to one inode (a directory's subdirectories count as links to it). */
export const MAX_LINKS = 65535;
/**
 * Largest READ/WRITE payload and READDIR reply advertised in FSINFO (rtmax/wtmax). Every
 * replicated operation and result must fit PBFT's MAX_OP_BYTES / MAX_RESULT_BYTES (1 MiB + 64 KiB)
 * with its headers; a test in packages/bfs ties the two together. 1 MiB, as libnfs and the Linux
 * client ask for: each call costs an agreement, so bulk bandwidth grows with it.
 */
export const MAX_IO_SIZE = 1024 * 1024;
/** Most bytes one READ returns; larger counts are clamped (a short read, as NFS allows). */
export const MAX_READ_SIZE = 1 << 20;

/** Default permission bits of new objects whose call gives no mode. */
export const DEFAULT_FILE_MODE = 0o644;
export const DEFAULT_DIR_MODE = 0o755;
export const DEFAULT_SYMLINK_MODE = 0o777;
/**
 * The export root is world-writable and sticky by default, like /tmp: root is squashed to nobody,
 * so a root that only root could write would take no files at all, and without the sticky bit
 * any user could remove or rename any other user's files in it.
 */
export const DEFAULT_ROOT_MODE = 0o1777;

/**
 * Directories. A directory's data (addressed through its block map like file data) holds a
 * header in logical block 0, a hash-bucket array from logical block 1 and fixed-size entry slots
 * from DIR_SLOT_BASE_BLOCK on. Slots never move, so a slot's index is a stable readdir cookie.
 */
export const DIR_HEADER_BLOCK = 0;
export const DIR_BUCKET_BASE_BLOCK = 1;
/** Buckets of a new directory (a power of two). */
export const DIR_INITIAL_BUCKETS = 16;
/** Largest bucket array: 2^20 buckets, 4 MiB, logical blocks 1..1024. */
export const DIR_MAX_BUCKETS = 1 << 20;
/** The table doubles once entries exceed buckets times this. */
export const DIR_MAX_LOAD = 2;
export const DIR_SLOT_BASE_BLOCK = DIR_BUCKET_BASE_BLOCK + (DIR_MAX_BUCKETS * 4) / BLOCK_SIZE;
/** Slot: ino u32, hash u32, next u32, name length u16, 2 spare bytes, name (255 bytes + 1). */
export const DIR_SLOT_SIZE = 272;
export const DIR_SLOT_HEADER = 16;
/** Slots per block; a slot never straddles two blocks. */
export const DIR_SLOTS_PER_BLOCK = Math.floor(BLOCK_SIZE / DIR_SLOT_SIZE);
/** Most slots (and so entries, '.' and '..' aside) in one directory. */
export const DIR_MAX_SLOTS = 1 << 22;
/** Readdir cookies: 1 after '.', 2 after '..', slot i + COOKIE_SLOT_BASE after slot i. */
export const COOKIE_DOT = 1;
export const COOKIE_DOTDOT = 2;
export const COOKIE_SLOT_BASE = 3;

/** File handle: version, length, 2 zero bytes, fsid, inode number, generation (16 bytes). */
export const HANDLE_VERSION = 1;
export const HANDLE_SIZE = 16;
