import { ExportedFileSystem } from 'nfs-server-ts';
import { fileSystemCompliance } from '../../../nfs-server-ts/test/compliance/filesystem';
import { assertClean, makeFs, MiB } from './helpers';

// Every sequence and rule on a small BFS (32 MiB, 4,096 inodes), checked by fsck after each;
// directory-scale.test.ts lists 100,000 entries.
fileSystemCompliance(
  'BFS',
  () => {
    const { fs, state } = makeFs(32 * MiB, { inodes: 4096 });
    return { fs, check: () => assertClean(state) };
  },
  { runs: 300, largeDirectory: 3000 },
);

// The same through the exports, as every replica serves it: handles bound to an export by a MAC.
fileSystemCompliance(
  'BFS through its exports (ExportedFileSystem)',
  () => {
    const { fs, state } = makeFs(32 * MiB, { inodes: 4096 });
    const key = new Uint8Array(32).fill(5);
    return {
      fs: new ExportedFileSystem(fs, [{ path: '/', readOnly: false }], key),
      check: () => assertClean(state),
    };
  },
  { runs: 150, largeDirectory: 3000 },
);
