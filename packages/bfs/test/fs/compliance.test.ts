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
