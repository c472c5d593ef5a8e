/** ONC RPC program numbers and versions served on the one NFS port. */
export const PORTMAP_PROGRAM = 100000;
export const PORTMAP_VERSION = 2;
export const NFS_PROGRAM = 100003;
export const MOUNT_PROGRAM = 100005;

/** Versions of each program this server speaks, lowest first. */
export const SUPPORTED_VERSIONS: ReadonlyMap<number, readonly number[]> = new Map([
  [PORTMAP_PROGRAM, [PORTMAP_VERSION]],
  [NFS_PROGRAM, [2, 3]],
  [MOUNT_PROGRAM, [1, 3]],
]);

/** The (low, high) pair a PROG_MISMATCH reply reports, or undefined for an unknown program. */
export function versionRange(program: number): { low: number; high: number } | undefined {
  const versions = SUPPORTED_VERSIONS.get(program);
  if (!versions) return undefined;
  return { low: versions[0], high: versions[versions.length - 1] };
}
