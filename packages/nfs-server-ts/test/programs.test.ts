import { strict as assert } from 'node:assert';
import { versionRange, NFS_PROGRAM, MOUNT_PROGRAM, PORTMAP_PROGRAM } from '../src/programs';

describe('nfs-server-ts: programs on the one port', () => {
  it('reports NFS versions 2..3 for PROG_MISMATCH', () => {
    assert.deepEqual(versionRange(NFS_PROGRAM), { low: 2, high: 3 });
  });
  it('reports MOUNT versions 1..3 and PORTMAP version 2', () => {
    assert.deepEqual(versionRange(MOUNT_PROGRAM), { low: 1, high: 3 });
    assert.deepEqual(versionRange(PORTMAP_PROGRAM), { low: 2, high: 2 });
  });
  it('knows no other program (PROG_UNAVAIL)', () => {
    assert.equal(versionRange(100021), undefined);
  });
});
