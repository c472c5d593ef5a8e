/**
 * The contract between the page store and its users (the PBFT library and the BFS file system).
 * The replication core is synchronous, so everything here is synchronous; persistence to LevelDB
 * happens outside the core through `PersistentPageStore` (see persistent.ts when it lands).
 */

import type { PartitionInfo } from './page-store';

/** A region of fixed-size pages addressed by byte offset. Untouched pages read as zeros. */
export interface PagedState {
  /** Bytes per page (4096 by default). */
  readonly pageSize: number;
  /** Logical size of the region in bytes, fixed at creation. */
  readonly size: number;
  /** Copies `length` bytes starting at `offset` out of the current state. */
  read(offset: number, length: number): Uint8Array;
  /** Writes `data` at `offset`, marking every page it touches as modified. */
  write(offset: number, data: Uint8Array): void;
  /** Marks the pages of [offset, offset + length) as modified (BFS's `modify` call). */
  modify(offset: number, length: number): void;
}

/** Digest and bookkeeping of one checkpoint. */
export interface CheckpointInfo {
  seq: number;
  /** Root digest of the partition tree: the checkpoint's state digest. */
  digest: Uint8Array;
  /** Pages modified since the previous checkpoint. */
  dirtyPages: number;
}

/** Paged state with copy-on-write checkpoints and an incremental partition-tree digest. */
export interface CheckpointedState extends PagedState {
  /** Records the current state as checkpoint `seq` (strictly increasing); cost ~ dirty pages. */
  checkpoint(seq: number): CheckpointInfo;
  /** Sequence numbers of the checkpoints still kept, ascending. */
  checkpoints(): number[];
  /** Digest of a kept checkpoint, or undefined if it is not kept. */
  digestAt(seq: number): Uint8Array | undefined;
  /** Reads bytes as of a kept checkpoint. */
  readAt(seq: number, offset: number, length: number): Uint8Array;
  /** Restores the current state to a kept checkpoint, undoing every later write. */
  rollback(seq: number): void;
  /** Forgets every checkpoint below `seq` (the stable checkpoint); `seq` itself stays. */
  discardBelow(seq: number): void;
}

/**
 * What state transfer needs of a checkpointed state beyond its checkpoints: the partition tree's
 * shape and terms to serve and check pieces, and the install of a fetched checkpoint. The PBFT
 * replica fetches and serves state through this alone (PageStore provides it).
 */
export interface TransferableState extends CheckpointedState {
  /** Children per partition-tree node. */
  readonly fanout: number;
  /** Levels of the partition tree above the pages. */
  readonly levels: number;
  /** Nodes at `level` (0: pages). */
  partitionCount(level: number): number;
  /** One partition-tree node as of kept checkpoint `seq`. */
  partitionAt(seq: number, level: number, index: number): PartitionInfo;
  /** Children of a node modified after checkpoint `since`, as of kept checkpoint `seq`. */
  modifiedChildren(seq: number, level: number, index: number, since: number): PartitionInfo[];
  /** One page as of kept checkpoint `seq`. */
  pageAt(seq: number, index: number): { index: number; lm: number; data: Uint8Array };
  /** A node's sum as of kept checkpoint `seq`. */
  sumAt(seq: number, level: number, index: number): bigint;
  /** A node's term in its parent's sum as of kept checkpoint `seq`. */
  termAt(seq: number, level: number, index: number): bigint;
  /** Root digest of the current state. */
  currentRoot(): Uint8Array;
  /** Replaces the state above `base` by fetched checkpoint `seq` (pieces checked by the caller). */
  installCheckpoint(
    base: number,
    seq: number,
    digest: Uint8Array,
    pages: Iterable<InstalledPage>,
    nodes: Iterable<InstalledNode>,
  ): CheckpointInfo;
}

/** A fetched page as installed: its bytes, the checkpoint that last modified it, its digest. */
export interface InstalledPage {
  index: number;
  lm: number;
  data: Uint8Array;
  digest: Uint8Array;
}

/** A fetched partition-tree node as installed, with its AdHash sum. */
export interface InstalledNode {
  level: number;
  index: number;
  lm: number;
  sum: bigint;
  digest: Uint8Array;
}
