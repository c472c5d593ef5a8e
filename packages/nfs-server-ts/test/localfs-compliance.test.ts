import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalFileSystem } from 'nfs-server-ts';
import { fileSystemCompliance } from './compliance/filesystem';

fileSystemCompliance(
  'a local directory',
  () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nfs-localfs-compliance-'));
    return { fs: new LocalFileSystem(dir), close: () => fs.rmSync(dir, { recursive: true }) };
  },
  // 10,000 entries: each CREATE is a few system calls (backends.test.ts lists 100,000).
  { runs: 100, emptySymlinks: false, largeDirectory: 10_000 },
);
