export * from './constants';
export { BfsFileSystem } from './bfs-filesystem';
export { mkfs, type MkfsOptions, type MkfsResult } from './mkfs';
export { fsck, type FsckReport } from './fsck';
export { encodeHandle, decodeHandle, type HandleFields } from './handle';
export { nameHash } from './directory';
