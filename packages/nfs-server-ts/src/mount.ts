/** MOUNT v1 and v3 (RFC 1094 appendix A, RFC 1813 section 5), over a FileSystem export. */
import { type FileHandle, type FileSystem, FileType, NfsError, NfsStatus } from './filesystem';
import { NFS3_FHSIZE, MAX_PATH } from './nfs3-xdr';
import { encodeV2Handle } from './nfs2';
import { AuthFlavor, RpcError, asRpcError } from './rpc';
import { XdrReader, XdrWriter } from './xdr';

/** MNTNAMLEN: longest host name kept in the mount list. */
export const MAX_MOUNT_HOSTNAME = 255;
/** Most (host, directory) pairs DUMP remembers; older ones are forgotten first. */
export const MAX_MOUNT_ENTRIES = 1024;

export enum MountProc {
  NULL = 0,
  MNT = 1,
  DUMP = 2,
  UMNT = 3,
  UMNTALL = 4,
  EXPORT = 5,
  /** MOUNT v1 only: same answer as EXPORT. */
  EXPORTALL = 6,
}

/** mountstat3; v1's fhstatus uses the same numbers (errno values). */
export enum MountStatus {
  OK = 0,
  PERM = 1,
  NOENT = 2,
  IO = 5,
  ACCES = 13,
  NOTDIR = 20,
  INVAL = 22,
  NAMETOOLONG = 63,
  NOTSUPP = 10004,
  SERVERFAULT = 10006,
}

/** Who is mounting and whether the export admits them. */
export interface MountCallContext {
  /** Client host (its address; MOUNT keeps it in the DUMP list). */
  host: string;
  /** False when export access rules reject this client: MNT answers ACCES. */
  allowed: boolean;
}

/** The export's mount list (DUMP), bounded. */
export class MountTable {
  private readonly entries = new Map<string, { host: string; dir: string }>();

  add(host: string, dir: string): void {
    const key = `${host}\0${dir}`;
    this.entries.delete(key);
    this.entries.set(key, { host, dir });
    if (this.entries.size > MAX_MOUNT_ENTRIES) {
      this.entries.delete(this.entries.keys().next().value as string);
    }
  }

  remove(host: string, dir: string): void {
    this.entries.delete(`${host}\0${dir}`);
  }

  removeHost(host: string): void {
    for (const [k, v] of this.entries) if (v.host === host) this.entries.delete(k);
  }

  list(): { host: string; dir: string }[] {
    return [...this.entries.values()];
  }
}

/** One export: a path name over a FileSystem, with its mount list. */
export class MountService {
  readonly table = new MountTable();

  constructor(
    readonly fs: FileSystem,
    /** Export path as clients name it ('/' by default). */
    readonly exportPath = '/',
    /**
     * What EXPORT lists: each exported path with the client groups it admits. Default: this
     * export alone, with no groups (access is checked per address at MNT).
     */
    private readonly exportList: () => { dir: string; groups: string[] }[] = () => [
      { dir: exportPath, groups: [] },
    ],
  ) {
    if (!exportPath.startsWith('/')) throw new Error(`export path must be absolute: ${exportPath}`);
  }

  /** Resolves a dirpath at or below the export to a directory handle (knfsd accepts both). */
  resolve(dirpath: string): FileHandle {
    const base = this.exportPath.replace(/\/+$/, '');
    let rest: string;
    if (dirpath === base || dirpath === base + '/' || (base === '' && dirpath === '/')) rest = '';
    else if (dirpath.startsWith(base + '/')) rest = dirpath.slice(base.length + 1);
    else throw new NfsError(NfsStatus.NOENT);
    let fh = this.fs.root();
    for (const part of rest.split('/')) {
      if (part === '' || part === '.') continue;
      if (part === '..' || part.includes('\0')) throw new NfsError(NfsStatus.INVAL);
      fh = this.fs.lookup(fh, part);
    }
    if (this.fs.getattr(fh).type !== FileType.DIR) throw new NfsError(NfsStatus.NOTDIR);
    return fh;
  }

  /** Executes one MOUNT call (v1 or v3) and returns the encoded result. */
  execute(version: number, procedure: number, args: Uint8Array, ctx: MountCallContext): Uint8Array {
    if (version !== 1 && version !== 3)
      throw new RpcError({ kind: 'prog_mismatch', low: 1, high: 3 });
    const r = new XdrReader(args);
    const w = new XdrWriter(128);
    try {
      switch (procedure) {
        case MountProc.NULL:
          r.end();
          break;
        case MountProc.MNT: {
          const dirpath = r.string(MAX_PATH);
          r.end();
          let fh: FileHandle | undefined;
          let status: number = MountStatus.OK;
          if (!ctx.allowed) status = MountStatus.ACCES;
          else {
            try {
              fh = this.resolve(dirpath);
              if (version === 1) encodeV2Handle(fh);
              else if (fh.length > NFS3_FHSIZE) throw new NfsError(NfsStatus.SERVERFAULT);
            } catch (e) {
              status = mountStatus(e);
            }
          }
          w.u32(status);
          if (status === MountStatus.OK && fh) {
            this.table.add(ctx.host.slice(0, MAX_MOUNT_HOSTNAME), dirpath);
            if (version === 1) w.fixed(encodeV2Handle(fh));
            else w.opaque(fh).u32(2).u32(AuthFlavor.SYS).u32(AuthFlavor.NONE);
          }
          break;
        }
        case MountProc.DUMP:
          r.end();
          for (const m of this.table.list()) w.bool(true).string(m.host).string(m.dir);
          w.bool(false);
          break;
        case MountProc.UMNT: {
          const dirpath = r.string(MAX_PATH);
          r.end();
          this.table.remove(ctx.host, dirpath);
          break;
        }
        case MountProc.UMNTALL:
          r.end();
          this.table.removeHost(ctx.host);
          break;
        case MountProc.EXPORTALL:
        case MountProc.EXPORT:
          // EXPORTALL exists in v1 only and answers like EXPORT.
          if (procedure === MountProc.EXPORTALL && version !== 1) {
            throw new RpcError({ kind: 'proc_unavail' });
          }
          r.end();
          for (const e of this.exportList()) {
            w.bool(true).string(e.dir);
            for (const g of e.groups) w.bool(true).string(g);
            w.bool(false);
          }
          w.bool(false);
          break;
        default:
          throw new RpcError({ kind: 'proc_unavail' });
      }
    } catch (e) {
      throw asRpcError(e);
    }
    return w.bytes();
  }
}

function mountStatus(e: unknown): MountStatus {
  if (!(e instanceof NfsError)) return MountStatus.SERVERFAULT;
  switch (e.status) {
    case NfsStatus.NOENT:
    case NfsStatus.STALE:
      return MountStatus.NOENT;
    case NfsStatus.NOTDIR:
      return MountStatus.NOTDIR;
    case NfsStatus.ACCES:
      return MountStatus.ACCES;
    case NfsStatus.PERM:
      return MountStatus.PERM;
    case NfsStatus.INVAL:
      return MountStatus.INVAL;
    case NfsStatus.NAMETOOLONG:
      return MountStatus.NAMETOOLONG;
    case NfsStatus.IO:
      return MountStatus.IO;
    default:
      return MountStatus.SERVERFAULT;
  }
}
