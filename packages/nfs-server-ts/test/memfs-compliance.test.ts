import { MemoryFileSystem } from 'nfs-server-ts';
import { fileSystemCompliance } from './compliance/filesystem';

fileSystemCompliance('the memory backend', () => ({ fs: new MemoryFileSystem() }), { runs: 300 });
