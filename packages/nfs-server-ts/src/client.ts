/**
 * An ONC RPC client (TCP with record marking, or UDP with retransmission) and small NFSv3 and
 * NFSv2 clients over it. Used by the tests and the benchmark; usable on its own.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import {
  type Attributes,
  type FileHandle,
  FileType,
  type FsStat,
  NfsError,
  type NfsTime,
  type SetAttributes,
  type StableHow,
} from './filesystem';
import { MountProc } from './mount';
import { Nfs2Proc } from './nfs2';
import { Nfs3Proc, STABLE_HOW } from './nfs3';
import {
  type WccData,
  readFattr3,
  readPostOpAttr,
  readWcc,
  writeSattr3,
  writeTime,
} from './nfs3-xdr';
import { PortmapProc, type Mapping } from './portmap';
import { MOUNT_PROGRAM, NFS_PROGRAM, PORTMAP_PROGRAM } from './programs';
import {
  AUTH_NONE,
  type OpaqueAuth,
  RpcError,
  decodeReply,
  encodeAuthSys,
  encodeCall,
} from './rpc';
import { RecordReader } from './server';
import { XdrReader, XdrWriter } from './xdr';

/** How long a call waits for its reply before failing. */
export const DEFAULT_CALL_TIMEOUT_MS = 10_000;
/** UDP retransmission interval (doubled on each retry, as RPC clients do). */
export const DEFAULT_UDP_RETRANSMIT_MS = 200;
/** Largest record the client accepts from a server. */
export const CLIENT_MAX_RECORD = 4 * 1024 * 1024;

export interface RpcClientOptions {
  host?: string;
  port: number;
  transport?: 'tcp' | 'udp';
  timeoutMs?: number;
  retransmitMs?: number;
  /** Local address to connect from (TCP), e.g. another loopback address in tests. */
  localAddress?: string;
}

interface Pending {
  resolve: (b: Uint8Array) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  retry?: NodeJS.Timeout;
}

export class RpcClient {
  private xid = (Math.random() * 0x7fffffff) >>> 0;
  private readonly pending = new Map<number, Pending>();
  private closed = false;

  private constructor(
    private readonly send: (msg: Uint8Array) => void,
    private readonly shutdown: () => void,
    readonly opts: Required<Omit<RpcClientOptions, 'localAddress'>>,
  ) {}

  static async connect(o: RpcClientOptions): Promise<RpcClient> {
    const opts: Required<Omit<RpcClientOptions, 'localAddress'>> = {
      host: o.host ?? '127.0.0.1',
      port: o.port,
      transport: o.transport ?? 'tcp',
      timeoutMs: o.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS,
      retransmitMs: o.retransmitMs ?? DEFAULT_UDP_RETRANSMIT_MS,
    };
    if (opts.transport === 'udp') {
      const sock = dgram.createSocket(net.isIPv6(opts.host) ? 'udp6' : 'udp4');
      await new Promise<void>((resolve) => sock.bind(0, resolve));
      const client = new RpcClient(
        (m) => sock.send(m, opts.port, opts.host),
        () => sock.close(),
        opts,
      );
      sock.on('message', (m) => client.onReply(m));
      sock.on('error', (e) => client.failAll(e));
      return client;
    }
    const sock = net.connect({ host: opts.host, port: opts.port, localAddress: o.localAddress });
    sock.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    const client = new RpcClient(
      (m) => {
        const h = Buffer.alloc(4);
        h.writeUInt32BE((0x80000000 | m.length) >>> 0);
        sock.write(Buffer.concat([h, m]));
      },
      () => sock.destroy(),
      opts,
    );
    const reader = new RecordReader(CLIENT_MAX_RECORD, (rec, oversized) => {
      if (!oversized) client.onReply(rec);
    });
    sock.on('data', (d) => reader.push(d));
    sock.on('error', (e) => client.failAll(e));
    sock.on('close', () => client.failAll(new Error('connection closed')));
    return client;
  }

  /** Sends one call; resolves with the result body, rejects with RpcError or a transport error. */
  call(
    program: number,
    version: number,
    procedure: number,
    args: Uint8Array,
    cred: OpaqueAuth = AUTH_NONE,
  ): Promise<Uint8Array> {
    return this.callRaw(encodeCall(this.nextXid(), program, version, procedure, args, cred));
  }

  nextXid(): number {
    this.xid = (this.xid + 1) >>> 0;
    return this.xid;
  }

  /** Sends an already-encoded call message (its xid must be unique among pending calls). */
  callRaw(msg: Uint8Array): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new Error('client closed'));
    const xid = new DataView(msg.buffer, msg.byteOffset, msg.byteLength).getUint32(0);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.clear(xid);
        reject(new Error(`RPC call ${xid} timed out`));
      }, this.opts.timeoutMs);
      const p: Pending = { resolve, reject, timer };
      this.pending.set(xid, p);
      if (this.opts.transport === 'udp') {
        let wait = this.opts.retransmitMs;
        const again = () => {
          this.send(msg);
          wait = Math.min(wait * 2, this.opts.timeoutMs);
          p.retry = setTimeout(again, wait);
        };
        again();
      } else this.send(msg);
    });
  }

  private clear(xid: number): Pending | undefined {
    const p = this.pending.get(xid);
    if (!p) return undefined;
    this.pending.delete(xid);
    clearTimeout(p.timer);
    if (p.retry) clearTimeout(p.retry);
    return p;
  }

  private onReply(msg: Uint8Array): void {
    let r;
    try {
      r = decodeReply(msg);
    } catch {
      return;
    }
    const p = this.clear(r.xid);
    if (!p) return;
    if (r.ok) p.resolve(Uint8Array.from(r.result));
    else p.reject(new RpcError(r.error));
  }

  private failAll(e: Error): void {
    for (const xid of [...this.pending.keys()]) this.clear(xid)?.reject(e);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.failAll(new Error('client closed'));
    this.shutdown();
  }
}

/** AUTH_SYS credentials for a uid/gid (machine name 'nfs-server-ts-client'). */
export function authSys(uid: number, gid: number, gids: number[] = []): OpaqueAuth {
  return encodeAuthSys({ stamp: 0, machineName: 'nfs-server-ts-client', uid, gid, gids });
}

/** Procedure 0 of every ONC RPC program is NULL (RFC 5531 section 12.1). */
const NULL_PROCEDURE = 0;

function check(r: XdrReader): void {
  const status = r.u32();
  if (status !== 0) throw new NfsError(status);
}

/**
 * What the NFSv3 and NFSv2 clients share: the RPC client and credential, one NFS call of their
 * version, the MOUNT MNT of their MOUNT version, and NULL. Each version adds its procedures.
 */
export abstract class NfsClientCore {
  constructor(
    readonly rpc: RpcClient,
    public cred: OpaqueAuth = authSys(process.getuid?.() ?? 0, process.getgid?.() ?? 0),
    private readonly versions: { nfs: 2 | 3; mount: 1 | 3 },
  ) {}

  /** Calls NFS procedure `proc` with the arguments `w` wrote; the reader of the result body. */
  protected async call(proc: number, w: XdrWriter | null): Promise<XdrReader> {
    const args = w ? w.bytes() : new Uint8Array(0);
    return new XdrReader(
      await this.rpc.call(NFS_PROGRAM, this.versions.nfs, proc, args, this.cred),
    );
  }

  /** call(), then the nfsstat: an NfsError unless OK, else the reader after it. */
  protected async checked(proc: number, w: XdrWriter | null): Promise<XdrReader> {
    const r = await this.call(proc, w);
    check(r);
    return r;
  }

  /** MOUNT MNT of `path`: an NfsError unless OK, else the reader at the file handle. */
  protected async mnt(path: string): Promise<XdrReader> {
    const body = await this.rpc.call(
      MOUNT_PROGRAM,
      this.versions.mount,
      MountProc.MNT,
      new XdrWriter().string(path).bytes(),
      this.cred,
    );
    const r = new XdrReader(body);
    const status = r.u32();
    if (status !== 0) throw new NfsError(status, `MNT ${path} failed: ${status}`);
    return r;
  }

  /** Procedure 0, NULL, of either version: a round trip that does nothing. */
  async null(): Promise<void> {
    await this.call(NULL_PROCEDURE, null);
  }
}

export interface Nfs3Entry {
  fileid: number;
  name: string;
  cookie: number;
  attributes?: Attributes;
  handle?: FileHandle;
}

export interface Nfs3ReadDirResult {
  dirAttributes?: Attributes;
  verifier: Uint8Array;
  entries: Nfs3Entry[];
  eof: boolean;
}

export interface FsInfo {
  rtmax: number;
  rtpref: number;
  rtmult: number;
  wtmax: number;
  wtpref: number;
  wtmult: number;
  dtpref: number;
  maxFileSize: number;
  timeDelta: NfsTime;
  properties: number;
}

export interface PathConf {
  linkmax: number;
  nameMax: number;
  noTrunc: boolean;
  chownRestricted: boolean;
  caseInsensitive: boolean;
  casePreserving: boolean;
}

export type CreateHow3 =
  | { mode: 'unchecked' | 'guarded'; attributes?: SetAttributes }
  | { mode: 'exclusive'; verifier: Uint8Array };

/** NFSv3 client. Each method resolves with the OK result or rejects with NfsError(status). */
export class Nfs3Client extends NfsClientCore {
  constructor(rpc: RpcClient, cred?: OpaqueAuth) {
    super(rpc, cred, { nfs: 3, mount: 3 });
  }

  async mount(path = '/'): Promise<FileHandle> {
    return Uint8Array.from((await this.mnt(path)).opaque(64));
  }

  /** MOUNT's EXPORT (what `showmount -e` prints): each exported path and its client groups. */
  async exports(): Promise<{ dir: string; groups: string[] }[]> {
    const body = await this.rpc.call(
      MOUNT_PROGRAM,
      3,
      MountProc.EXPORT,
      new Uint8Array(0),
      this.cred,
    );
    const r = new XdrReader(body);
    const out: { dir: string; groups: string[] }[] = [];
    while (r.bool()) {
      const dir = r.string(1024);
      const groups: string[] = [];
      while (r.bool()) groups.push(r.string(255));
      out.push({ dir, groups });
    }
    return out;
  }

  async getattr(fh: FileHandle): Promise<Attributes> {
    const r = await this.checked(Nfs3Proc.GETATTR, new XdrWriter().opaque(fh));
    return readFattr3(r);
  }

  async setattr(fh: FileHandle, attrs: SetAttributes, guard?: NfsTime): Promise<WccData> {
    const w = new XdrWriter().opaque(fh);
    writeSattr3(w, attrs);
    if (guard) writeTime(w.bool(true), guard);
    else w.bool(false);
    const r = await this.checked(Nfs3Proc.SETATTR, w);
    return readWcc(r);
  }

  async lookup(
    dir: FileHandle,
    name: string,
  ): Promise<{ handle: FileHandle; attributes?: Attributes }> {
    const r = await this.checked(Nfs3Proc.LOOKUP, new XdrWriter().opaque(dir).string(name));
    const handle = Uint8Array.from(r.opaque(64));
    const attributes = readPostOpAttr(r);
    readPostOpAttr(r);
    return { handle, attributes };
  }

  async access(fh: FileHandle, mask: number): Promise<number> {
    const r = await this.checked(Nfs3Proc.ACCESS, new XdrWriter().opaque(fh).u32(mask));
    readPostOpAttr(r);
    return r.u32();
  }

  async readlink(fh: FileHandle): Promise<string> {
    const r = await this.checked(Nfs3Proc.READLINK, new XdrWriter().opaque(fh));
    readPostOpAttr(r);
    return r.string();
  }

  async read(
    fh: FileHandle,
    offset: number,
    count: number,
  ): Promise<{ data: Uint8Array; eof: boolean }> {
    const r = await this.checked(Nfs3Proc.READ, new XdrWriter().opaque(fh).u64(offset).u32(count));
    readPostOpAttr(r);
    r.u32();
    const eof = r.bool();
    return { data: Uint8Array.from(r.opaque()), eof };
  }

  async write(
    fh: FileHandle,
    offset: number,
    data: Uint8Array,
    stable: StableHow = 'file_sync',
  ): Promise<{ count: number; committed: StableHow; verifier: Uint8Array; wcc: WccData }> {
    const w = new XdrWriter(data.length + 64).opaque(fh).u64(offset).u32(data.length);
    w.u32(STABLE_HOW.indexOf(stable)).opaque(data);
    const r = await this.checked(Nfs3Proc.WRITE, w);
    const wcc = readWcc(r);
    const count = r.u32();
    const committed = STABLE_HOW[r.u32()];
    return { count, committed, verifier: Uint8Array.from(r.fixed(8)), wcc };
  }

  private readCreated(r: XdrReader): {
    handle: FileHandle;
    attributes?: Attributes;
    dirWcc: WccData;
  } {
    check(r);
    const handle = r.optional((x) => Uint8Array.from(x.opaque(64)));
    const attributes = readPostOpAttr(r);
    const dirWcc = readWcc(r);
    if (!handle) throw new NfsError(10006, 'server returned no handle');
    return { handle, attributes, dirWcc };
  }

  async create(dir: FileHandle, name: string, how: CreateHow3 = { mode: 'unchecked' }) {
    const w = new XdrWriter().opaque(dir).string(name);
    if (how.mode === 'exclusive') w.u32(2).fixed(how.verifier);
    else {
      w.u32(how.mode === 'unchecked' ? 0 : 1);
      writeSattr3(w, how.attributes ?? {});
    }
    return this.readCreated(await this.call(Nfs3Proc.CREATE, w));
  }

  async mkdir(dir: FileHandle, name: string, attrs: SetAttributes = {}) {
    const w = new XdrWriter().opaque(dir).string(name);
    writeSattr3(w, attrs);
    return this.readCreated(await this.call(Nfs3Proc.MKDIR, w));
  }

  async symlink(dir: FileHandle, name: string, target: string, attrs: SetAttributes = {}) {
    const w = new XdrWriter().opaque(dir).string(name);
    writeSattr3(w, attrs);
    w.string(target);
    return this.readCreated(await this.call(Nfs3Proc.SYMLINK, w));
  }

  async mknod(
    dir: FileHandle,
    name: string,
    type: FileType,
    attrs: SetAttributes = {},
    rdev = { major: 0, minor: 0 },
  ) {
    const w = new XdrWriter().opaque(dir).string(name).u32(type);
    if (type === FileType.CHR || type === FileType.BLK) {
      writeSattr3(w, attrs);
      w.u32(rdev.major).u32(rdev.minor);
    } else if (type === FileType.SOCK || type === FileType.FIFO) writeSattr3(w, attrs);
    return this.readCreated(await this.call(Nfs3Proc.MKNOD, w));
  }

  async remove(dir: FileHandle, name: string): Promise<WccData> {
    const r = await this.checked(Nfs3Proc.REMOVE, new XdrWriter().opaque(dir).string(name));
    return readWcc(r);
  }

  async rmdir(dir: FileHandle, name: string): Promise<WccData> {
    const r = await this.checked(Nfs3Proc.RMDIR, new XdrWriter().opaque(dir).string(name));
    return readWcc(r);
  }

  async rename(fromDir: FileHandle, fromName: string, toDir: FileHandle, toName: string) {
    const w = new XdrWriter().opaque(fromDir).string(fromName).opaque(toDir).string(toName);
    const r = await this.checked(Nfs3Proc.RENAME, w);
    return { fromWcc: readWcc(r), toWcc: readWcc(r) };
  }

  async link(fh: FileHandle, dir: FileHandle, name: string) {
    const r = await this.checked(
      Nfs3Proc.LINK,
      new XdrWriter().opaque(fh).opaque(dir).string(name),
    );
    return { attributes: readPostOpAttr(r), dirWcc: readWcc(r) };
  }

  async readdir(
    dir: FileHandle,
    cookie = 0,
    verifier: Uint8Array = new Uint8Array(8),
    count = 8192,
  ): Promise<Nfs3ReadDirResult> {
    const w = new XdrWriter().opaque(dir).u64(cookie).fixed(verifier).u32(count);
    const r = await this.checked(Nfs3Proc.READDIR, w);
    const dirAttributes = readPostOpAttr(r);
    const verf = Uint8Array.from(r.fixed(8));
    const entries: Nfs3Entry[] = [];
    while (r.bool()) entries.push({ fileid: r.u64(), name: r.string(), cookie: r.u64() });
    return { dirAttributes, verifier: verf, entries, eof: r.bool() };
  }

  async readdirplus(
    dir: FileHandle,
    cookie = 0,
    verifier: Uint8Array = new Uint8Array(8),
    dircount = 8192,
    maxcount = 32768,
  ): Promise<Nfs3ReadDirResult> {
    const w = new XdrWriter().opaque(dir).u64(cookie).fixed(verifier).u32(dircount).u32(maxcount);
    const r = await this.checked(Nfs3Proc.READDIRPLUS, w);
    const dirAttributes = readPostOpAttr(r);
    const verf = Uint8Array.from(r.fixed(8));
    const entries: Nfs3Entry[] = [];
    while (r.bool()) {
      const fileid = r.u64();
      const name = r.string();
      const c = r.u64();
      const attributes = readPostOpAttr(r);
      const handle = r.optional((x) => Uint8Array.from(x.opaque(64)));
      entries.push({ fileid, name, cookie: c, attributes, handle });
    }
    return { dirAttributes, verifier: verf, entries, eof: r.bool() };
  }

  /** Every entry of a directory, following cookies until eof (READDIRPLUS). */
  async listAll(dir: FileHandle, maxcount = 32768): Promise<Nfs3Entry[]> {
    const all: Nfs3Entry[] = [];
    let cookie = 0;
    let verf: Uint8Array = new Uint8Array(8);
    for (;;) {
      const res = await this.readdirplus(dir, cookie, verf, maxcount, maxcount);
      all.push(...res.entries);
      if (res.eof || res.entries.length === 0) return all;
      cookie = res.entries[res.entries.length - 1].cookie;
      verf = res.verifier;
    }
  }

  async fsstat(fh: FileHandle): Promise<FsStat> {
    const r = await this.checked(Nfs3Proc.FSSTAT, new XdrWriter().opaque(fh));
    readPostOpAttr(r);
    return {
      totalBytes: r.u64(),
      freeBytes: r.u64(),
      availBytes: r.u64(),
      totalFiles: r.u64(),
      freeFiles: r.u64(),
      availFiles: r.u64(),
      invarsec: r.u32(),
    };
  }

  async fsinfo(fh: FileHandle): Promise<FsInfo> {
    const r = await this.checked(Nfs3Proc.FSINFO, new XdrWriter().opaque(fh));
    readPostOpAttr(r);
    return {
      rtmax: r.u32(),
      rtpref: r.u32(),
      rtmult: r.u32(),
      wtmax: r.u32(),
      wtpref: r.u32(),
      wtmult: r.u32(),
      dtpref: r.u32(),
      maxFileSize: r.u64(),
      timeDelta: { seconds: r.u32(), nseconds: r.u32() },
      properties: r.u32(),
    };
  }

  async pathconf(fh: FileHandle): Promise<PathConf> {
    const r = await this.checked(Nfs3Proc.PATHCONF, new XdrWriter().opaque(fh));
    readPostOpAttr(r);
    return {
      linkmax: r.u32(),
      nameMax: r.u32(),
      noTrunc: r.bool(),
      chownRestricted: r.bool(),
      caseInsensitive: r.bool(),
      casePreserving: r.bool(),
    };
  }

  async commit(fh: FileHandle, offset = 0, count = 0): Promise<Uint8Array> {
    const r = await this.checked(
      Nfs3Proc.COMMIT,
      new XdrWriter().opaque(fh).u64(offset).u32(count),
    );
    readWcc(r);
    return Uint8Array.from(r.fixed(8));
  }

  /** Reads a whole file in `chunk`-sized READs. */
  async readAll(fh: FileHandle, chunk = 65536): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let offset = 0;
    for (;;) {
      const { data, eof } = await this.read(fh, offset, chunk);
      parts.push(data);
      offset += data.length;
      if (eof || data.length === 0) return Buffer.concat(parts);
    }
  }

  /** Writes `data` at offset 0 in `chunk`-sized UNSTABLE WRITEs, then COMMITs. */
  async writeAll(fh: FileHandle, data: Uint8Array, chunk = 65536): Promise<void> {
    for (let off = 0; off < data.length; off += chunk) {
      await this.write(fh, off, data.subarray(off, off + chunk), 'unstable');
    }
    await this.commit(fh);
  }
}

/** NFSv2 fattr as the client sees it. */
export interface Attributes2 {
  type: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  blocksize: number;
  rdev: number;
  blocks: number;
  fsid: number;
  fileid: number;
  atime: NfsTime;
  mtime: NfsTime;
  ctime: NfsTime;
}

/** NFSv2 sattr: absent fields are "do not set". */
export interface SetAttributes2 {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: NfsTime;
  mtime?: NfsTime;
}

function readFattr2(r: XdrReader): Attributes2 {
  const a = {
    type: r.u32(),
    mode: r.u32(),
    nlink: r.u32(),
    uid: r.u32(),
    gid: r.u32(),
    size: r.u32(),
    blocksize: r.u32(),
    rdev: r.u32(),
    blocks: r.u32(),
    fsid: r.u32(),
    fileid: r.u32(),
    atime: { seconds: 0, nseconds: 0 },
    mtime: { seconds: 0, nseconds: 0 },
    ctime: { seconds: 0, nseconds: 0 },
  };
  for (const k of ['atime', 'mtime', 'ctime'] as const) {
    a[k] = { seconds: r.u32(), nseconds: r.u32() * 1000 };
  }
  return a;
}

function writeSattr2(w: XdrWriter, s: SetAttributes2): void {
  const none = 0xffffffff;
  w.u32(s.mode ?? none)
    .u32(s.uid ?? none)
    .u32(s.gid ?? none)
    .u32(s.size ?? none);
  for (const t of [s.atime, s.mtime]) {
    if (t) w.u32(t.seconds).u32(Math.floor(t.nseconds / 1000));
    else w.u32(none).u32(none);
  }
}

/** NFSv2 client; handles are the 32-byte wire handles. */
export class Nfs2Client extends NfsClientCore {
  constructor(rpc: RpcClient, cred?: OpaqueAuth) {
    super(rpc, cred, { nfs: 2, mount: 1 });
  }

  /** MOUNT v1 MNT. */
  async mount(path = '/'): Promise<Uint8Array> {
    return Uint8Array.from((await this.mnt(path)).fixed(32));
  }

  async root(): Promise<void> {
    await this.call(Nfs2Proc.ROOT, null);
  }

  async writecache(): Promise<void> {
    await this.call(Nfs2Proc.WRITECACHE, null);
  }

  async getattr(fh: Uint8Array): Promise<Attributes2> {
    const r = await this.checked(Nfs2Proc.GETATTR, new XdrWriter().fixed(fh));
    return readFattr2(r);
  }

  async setattr(fh: Uint8Array, s: SetAttributes2): Promise<Attributes2> {
    const w = new XdrWriter().fixed(fh);
    writeSattr2(w, s);
    const r = await this.checked(Nfs2Proc.SETATTR, w);
    return readFattr2(r);
  }

  private async dirop(
    proc: number,
    w: XdrWriter,
  ): Promise<{ handle: Uint8Array; attributes: Attributes2 }> {
    const r = await this.checked(proc, w);
    return { handle: Uint8Array.from(r.fixed(32)), attributes: readFattr2(r) };
  }

  lookup(dir: Uint8Array, name: string) {
    return this.dirop(Nfs2Proc.LOOKUP, new XdrWriter().fixed(dir).string(name));
  }

  async readlink(fh: Uint8Array): Promise<string> {
    const r = await this.checked(Nfs2Proc.READLINK, new XdrWriter().fixed(fh));
    return r.string();
  }

  async read(
    fh: Uint8Array,
    offset: number,
    count: number,
  ): Promise<{ attributes: Attributes2; data: Uint8Array }> {
    const r = await this.checked(
      Nfs2Proc.READ,
      new XdrWriter().fixed(fh).u32(offset).u32(count).u32(0),
    );
    const attributes = readFattr2(r);
    return { attributes, data: Uint8Array.from(r.opaque()) };
  }

  async write(fh: Uint8Array, offset: number, data: Uint8Array): Promise<Attributes2> {
    const r = await this.checked(
      Nfs2Proc.WRITE,
      new XdrWriter().fixed(fh).u32(0).u32(offset).u32(0).opaque(data),
    );
    return readFattr2(r);
  }

  create(dir: Uint8Array, name: string, s: SetAttributes2 = {}) {
    const w = new XdrWriter().fixed(dir).string(name);
    writeSattr2(w, s);
    return this.dirop(Nfs2Proc.CREATE, w);
  }

  mkdir(dir: Uint8Array, name: string, s: SetAttributes2 = {}) {
    const w = new XdrWriter().fixed(dir).string(name);
    writeSattr2(w, s);
    return this.dirop(Nfs2Proc.MKDIR, w);
  }

  private async stat(proc: number, w: XdrWriter): Promise<void> {
    check(await this.call(proc, w));
  }

  remove(dir: Uint8Array, name: string) {
    return this.stat(Nfs2Proc.REMOVE, new XdrWriter().fixed(dir).string(name));
  }

  rmdir(dir: Uint8Array, name: string) {
    return this.stat(Nfs2Proc.RMDIR, new XdrWriter().fixed(dir).string(name));
  }

  rename(fromDir: Uint8Array, fromName: string, toDir: Uint8Array, toName: string) {
    return this.stat(
      Nfs2Proc.RENAME,
      new XdrWriter().fixed(fromDir).string(fromName).fixed(toDir).string(toName),
    );
  }

  link(fh: Uint8Array, dir: Uint8Array, name: string) {
    return this.stat(Nfs2Proc.LINK, new XdrWriter().fixed(fh).fixed(dir).string(name));
  }

  symlink(dir: Uint8Array, name: string, target: string, s: SetAttributes2 = {}) {
    const w = new XdrWriter().fixed(dir).string(name).string(target);
    writeSattr2(w, s);
    return this.stat(Nfs2Proc.SYMLINK, w);
  }

  async readdir(
    dir: Uint8Array,
    cookie = 0,
    count = 4096,
  ): Promise<{ entries: { fileid: number; name: string; cookie: number }[]; eof: boolean }> {
    const r = await this.checked(
      Nfs2Proc.READDIR,
      new XdrWriter().fixed(dir).u32(cookie).u32(count),
    );
    const entries: { fileid: number; name: string; cookie: number }[] = [];
    while (r.bool()) entries.push({ fileid: r.u32(), name: r.string(), cookie: r.u32() });
    return { entries, eof: r.bool() };
  }

  async statfs(fh: Uint8Array) {
    const r = await this.checked(Nfs2Proc.STATFS, new XdrWriter().fixed(fh));
    return { tsize: r.u32(), bsize: r.u32(), blocks: r.u32(), bfree: r.u32(), bavail: r.u32() };
  }
}

/** PORTMAP v2 client calls. */
export class PortmapClient {
  constructor(readonly rpc: RpcClient) {}

  async getport(program: number, version: number, protocol: number): Promise<number> {
    const w = new XdrWriter().u32(program).u32(version).u32(protocol).u32(0);
    return new XdrReader(
      await this.rpc.call(PORTMAP_PROGRAM, 2, PortmapProc.GETPORT, w.bytes()),
    ).u32();
  }

  async set(m: Mapping): Promise<boolean> {
    const w = new XdrWriter().u32(m.program).u32(m.version).u32(m.protocol).u32(m.port);
    return new XdrReader(
      await this.rpc.call(PORTMAP_PROGRAM, 2, PortmapProc.SET, w.bytes()),
    ).bool();
  }

  async unset(program: number, version: number): Promise<boolean> {
    const w = new XdrWriter().u32(program).u32(version).u32(0).u32(0);
    return new XdrReader(
      await this.rpc.call(PORTMAP_PROGRAM, 2, PortmapProc.UNSET, w.bytes()),
    ).bool();
  }

  async dump(): Promise<Mapping[]> {
    const r = new XdrReader(
      await this.rpc.call(PORTMAP_PROGRAM, 2, PortmapProc.DUMP, new Uint8Array(0)),
    );
    const out: Mapping[] = [];
    while (r.bool())
      out.push({ program: r.u32(), version: r.u32(), protocol: r.u32(), port: r.u32() });
    return out;
  }
}
