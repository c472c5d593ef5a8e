import { NfsError, NfsStatus, type FileHandle } from 'nfs-server-ts';
import { HANDLE_SIZE, HANDLE_VERSION } from './constants';

/** What a BFS file handle names: an inode of one file system, at one generation. */
export interface HandleFields {
  fsid: number;
  ino: number;
  generation: number;
}

/** 16 bytes: version, length, two zero bytes, fsid, inode, generation (little-endian u32s). */
export function encodeHandle(f: HandleFields): FileHandle {
  const b = new Uint8Array(HANDLE_SIZE);
  const dv = new DataView(b.buffer);
  b[0] = HANDLE_VERSION;
  b[1] = HANDLE_SIZE;
  dv.setUint32(4, f.fsid >>> 0, true);
  dv.setUint32(8, f.ino >>> 0, true);
  dv.setUint32(12, f.generation >>> 0, true);
  return b;
}

/** Parses a handle from the network; anything not of our shape is BADHANDLE. */
export function decodeHandle(fh: FileHandle): HandleFields {
  if (
    !(fh instanceof Uint8Array) ||
    fh.length !== HANDLE_SIZE ||
    fh[0] !== HANDLE_VERSION ||
    fh[1] !== HANDLE_SIZE ||
    fh[2] !== 0 ||
    fh[3] !== 0
  ) {
    throw new NfsError(NfsStatus.BADHANDLE, 'malformed file handle');
  }
  const dv = new DataView(fh.buffer, fh.byteOffset, HANDLE_SIZE);
  return {
    fsid: dv.getUint32(4, true),
    ino: dv.getUint32(8, true),
    generation: dv.getUint32(12, true),
  };
}
