/**
 * A permission suite in the spirit of pjd-fstest: each case is a table of rows
 * `[expected, user, command]`, run in order over NFS against a fresh fixture tree, as root and as
 * two unprivileged users. The same table runs against every backend (memory, local directory,
 * `bfs serve`, and the replicated cluster through a relay), over NFSv3 and NFSv2, so they all
 * enforce one rule set (src/permissions.ts). Paths are walked by the acting user, one LOOKUP per
 * component, as a client does, so search permission on every directory is exercised too.
 *
 * Expected values: 'OK', 'ACCES' or 'PERM' for a call; for `stat PATH FIELD` the field's value
 * (modes in octal). Commands:
 *   chmod P MODE | chown P UID GID (-1 leaves one alone) | truncate P SIZE | utimes P now|SECONDS
 *   create P [MODE] | create-trunc P (UNCHECKED, size 0) | mkdir P [MODE] | mknod P chr|fifo | symlink P TARGET | link SRC DST
 *   unlink P | rmdir P | rename SRC DST | read P | write P | lookup P | readdir P
 *   access P r|w|x (OK when ACCESS grants it) | stat P mode|uid|gid (as root)
 */
import { strict as assert } from 'node:assert';
import { Nfs2Client, Nfs3Client, RpcClient, authSys } from '../src/client';
import {
  type Credentials,
  type FileHandle,
  FileType,
  NfsError,
  type SetAttributes,
} from '../src/filesystem';
import { ACCESS3 } from '../src/permissions';

export type User = 'root' | 'alice' | 'bob';
export type Row = [expected: string, user: User, command: string];
export interface PermissionCase {
  title: string;
  rows: Row[];
}

/** alice is in the `staff` group (3000) too; bob is in none but his own. */
export const USERS: Record<User, Credentials> = {
  root: { uid: 0, gid: 0, gids: [] },
  alice: { uid: 1000, gid: 1000, gids: [1000, 3000] },
  bob: { uid: 2000, gid: 2000, gids: [2000] },
};
const STAFF = 3000;

/** The tree every case starts from: [path, type, mode, owner, group]; made by root. */
const FIXTURE: [string, 'dir' | 'file', number, User, number][] = [
  ['alice', 'dir', 0o755, 'alice', 1000],
  ['alice/f', 'file', 0o644, 'alice', 1000],
  ['alice/priv', 'file', 0o600, 'alice', 1000],
  ['alice/sub', 'dir', 0o755, 'alice', 1000],
  ['pub', 'dir', 0o777, 'root', 0],
  ['pub/af', 'file', 0o644, 'alice', 1000],
  ['pub/bf', 'file', 0o644, 'bob', 2000],
  ['pub/ad', 'dir', 0o755, 'alice', 1000],
  ['pub/staff', 'file', 0o664, 'bob', STAFF],
  ['pub/suid', 'file', 0o6775, 'alice', 1000],
  ['tmp', 'dir', 0o1777, 'root', 0],
  ['tmp/af', 'file', 0o644, 'alice', 1000],
  ['tmp/bf', 'file', 0o644, 'bob', 2000],
  ['tmp/ad', 'dir', 0o777, 'alice', 1000],
  ['btmp', 'dir', 0o1777, 'bob', 2000],
  ['btmp/af', 'file', 0o644, 'alice', 1000],
  ['shared', 'dir', 0o2777, 'root', STAFF],
  ['closed', 'dir', 0o700, 'root', 0],
  ['closed/f', 'file', 0o644, 'root', 0],
  ['noexec', 'dir', 0o666, 'alice', 1000],
  ['noexec/f', 'file', 0o644, 'alice', 1000],
];

export const PERMISSION_CASES: PermissionCase[] = [
  {
    title: 'the issue-20 probe: uid 2000 can neither read, write, chmod nor remove a 0600 file',
    rows: [
      ['OK', 'alice', 'create tmp/private.txt 0600'],
      ['OK', 'alice', 'write tmp/private.txt'],
      ['ACCES', 'bob', 'read tmp/private.txt'],
      ['ACCES', 'bob', 'write tmp/private.txt'],
      ['PERM', 'bob', 'chmod tmp/private.txt 0777'],
      ['PERM', 'bob', 'unlink tmp/private.txt'],
      ['0600', 'root', 'stat tmp/private.txt mode'],
      ['OK', 'alice', 'read tmp/private.txt'],
    ],
  },
  {
    title: 'chmod: only the owner or root changes the mode',
    rows: [
      ['PERM', 'bob', 'chmod alice/f 0666'],
      ['0644', 'root', 'stat alice/f mode'],
      ['OK', 'alice', 'chmod alice/f 0600'],
      ['0600', 'root', 'stat alice/f mode'],
      ['OK', 'root', 'chmod alice/f 0640'],
      ['0640', 'root', 'stat alice/f mode'],
    ],
  },
  {
    title: "chmod: set-group-id is dropped when the owner is not in the file's group",
    rows: [
      ['OK', 'alice', 'chown pub/af -1 3000'],
      ['OK', 'alice', 'chmod pub/af 02755'],
      ['02755', 'root', 'stat pub/af mode'],
      ['OK', 'root', 'chown pub/bf -1 3000'],
      ['OK', 'bob', 'chmod pub/bf 02755'],
      ['0755', 'root', 'stat pub/bf mode'],
    ],
  },
  {
    title: 'chown: only root gives a file away; the owner changes the group to one it is in',
    rows: [
      ['PERM', 'alice', 'chown pub/af 2000 -1'],
      ['PERM', 'bob', 'chown pub/af 2000 -1'],
      ['OK', 'alice', 'chown pub/af 1000 -1'],
      ['OK', 'alice', 'chown pub/af -1 3000'],
      ['3000', 'root', 'stat pub/af gid'],
      ['PERM', 'alice', 'chown pub/af -1 2000'],
      ['PERM', 'bob', 'chown pub/af -1 2000'],
      ['OK', 'root', 'chown pub/af 2000 2000'],
      ['2000', 'root', 'stat pub/af uid'],
      ['2000', 'root', 'stat pub/af gid'],
    ],
  },
  {
    title: 'chown: a chown or chgrp clears set-user-id and set-group-id, even by root (as Linux)',
    rows: [
      ['OK', 'alice', 'chown pub/suid -1 3000'],
      ['0775', 'root', 'stat pub/suid mode'],
      ['OK', 'root', 'chmod pub/suid 06775'],
      ['OK', 'root', 'chown pub/suid -1 1000'],
      ['0775', 'root', 'stat pub/suid mode'],
      ['OK', 'root', 'chmod pub/suid 06775'],
      ['OK', 'alice', 'chmod pub/suid 06775'],
      ['06775', 'root', 'stat pub/suid mode'],
    ],
  },
  {
    title: 'write clears set-user-id and set-group-id unless root writes',
    rows: [
      ['OK', 'root', 'write pub/suid'],
      ['06775', 'root', 'stat pub/suid mode'],
      ['OK', 'alice', 'write pub/suid'],
      ['0775', 'root', 'stat pub/suid mode'],
    ],
  },
  {
    title: 'read and write follow the mode bits of the caller class; the owner always may',
    rows: [
      ['OK', 'bob', 'read alice/f'],
      ['ACCES', 'bob', 'write alice/f'],
      ['ACCES', 'bob', 'read alice/priv'],
      ['OK', 'alice', 'write pub/staff'],
      ['ACCES', 'bob', 'write pub/af'],
      ['OK', 'alice', 'chmod alice/priv 0'],
      ['OK', 'alice', 'read alice/priv'],
      ['OK', 'alice', 'write alice/priv'],
      ['OK', 'root', 'read alice/priv'],
    ],
  },
  {
    title: 'access answers from the same rules (mode bits, no owner override)',
    rows: [
      ['OK', 'bob', 'access alice/f r'],
      ['ACCES', 'bob', 'access alice/f w'],
      ['ACCES', 'bob', 'access alice/priv r'],
      ['OK', 'alice', 'access pub/staff w'],
      ['OK', 'alice', 'chmod alice/priv 0400'],
      ['ACCES', 'alice', 'access alice/priv w'],
      ['OK', 'root', 'access alice/priv w'],
      ['ACCES', 'root', 'access alice/f x'],
      ['OK', 'root', 'access pub/suid x'],
      ['OK', 'bob', 'access pub x'],
      ['ACCES', 'bob', 'access closed x'],
    ],
  },
  {
    title: 'lookup needs search permission on every directory walked',
    rows: [
      ['ACCES', 'bob', 'lookup closed/f'],
      ['ACCES', 'bob', 'read closed/f'],
      ['OK', 'root', 'read closed/f'],
      ['ACCES', 'bob', 'lookup noexec/f'],
      ['ACCES', 'alice', 'lookup noexec/f'],
      ['OK', 'alice', 'readdir noexec'],
      ['ACCES', 'bob', 'readdir closed'],
    ],
  },
  {
    title: 'create, mkdir, symlink: write and search on the directory',
    rows: [
      ['ACCES', 'bob', 'create alice/x'],
      ['ACCES', 'bob', 'mkdir alice/x'],
      ['ACCES', 'bob', 'symlink alice/x target'],
      ['OK', 'alice', 'create alice/x'],
      ['1000', 'root', 'stat alice/x uid'],
      ['OK', 'bob', 'mkdir pub/bd 0755'],
      ['2000', 'root', 'stat pub/bd uid'],
      ['OK', 'bob', 'symlink pub/bl target'],
      ['ACCES', 'alice', 'create noexec/x'],
      ['OK', 'root', 'create closed/x'],
    ],
  },
  {
    title:
      'create of an existing file needs only search on the directory; truncating it, write on the file',
    rows: [
      ['OK', 'bob', 'create alice/f'],
      ['ACCES', 'bob', 'create-trunc alice/f'],
      ['OK', 'bob', 'create-trunc pub/bf'],
      ['ACCES', 'bob', 'create alice/new'],
      ['ACCES', 'bob', 'create closed/f'],
    ],
  },
  {
    title: 'mknod: anyone makes a FIFO where it may write, only root a device',
    rows: [
      ['OK', 'bob', 'mknod pub/fifo fifo'],
      ['PERM', 'bob', 'mknod pub/dev chr'],
      ['OK', 'root', 'mknod pub/dev chr'],
    ],
  },
  {
    title: 'link: write and search on the directory that gets the name',
    rows: [
      ['ACCES', 'bob', 'link alice/f alice/f2'],
      ['OK', 'bob', 'link alice/f pub/f2'],
      ['OK', 'alice', 'link alice/f alice/f3'],
    ],
  },
  {
    title: 'unlink and rmdir: write and search on the directory, not on the entry',
    rows: [
      ['ACCES', 'bob', 'unlink alice/f'],
      ['ACCES', 'bob', 'rmdir alice/sub'],
      ['OK', 'bob', 'unlink pub/af'],
      ['OK', 'bob', 'rmdir pub/ad'],
      ['OK', 'alice', 'unlink alice/priv'],
      ['ACCES', 'alice', 'unlink noexec/f'],
    ],
  },
  {
    title: 'rename: remove from the source directory, add to the target one',
    rows: [
      ['ACCES', 'bob', 'rename alice/f pub/f'],
      ['ACCES', 'bob', 'rename pub/bf alice/bf'],
      ['OK', 'bob', 'rename pub/af pub/af2'],
      ['OK', 'bob', 'rename pub/bf pub/af2'],
      ['OK', 'alice', 'rename alice/f alice/g'],
      ['OK', 'alice', 'rename alice/g pub/g'],
    ],
  },
  {
    title: 'rename: a directory moved to another parent needs write permission on itself',
    rows: [
      ['ACCES', 'bob', 'rename pub/ad tmp/ad2'],
      ['OK', 'bob', 'rename pub/ad pub/ad2'],
      ['OK', 'alice', 'rename pub/ad2 tmp/ad3'],
    ],
  },
  {
    title: 'sticky directory: only the owner of the entry or of the directory, or root, removes it',
    rows: [
      ['PERM', 'bob', 'unlink tmp/af'],
      ['PERM', 'bob', 'rmdir tmp/ad'],
      ['PERM', 'bob', 'rename tmp/af tmp/mine'],
      ['PERM', 'alice', 'rename tmp/af tmp/bf'],
      ['OK', 'bob', 'unlink tmp/bf'],
      ['OK', 'alice', 'rename tmp/af tmp/af2'],
      ['OK', 'bob', 'unlink btmp/af'],
      ['OK', 'root', 'rmdir tmp/ad'],
      ['OK', 'bob', 'create tmp/new'],
    ],
  },
  {
    title: 'setgid directory: new entries take its group, new subdirectories the bit',
    rows: [
      ['OK', 'bob', 'create shared/f'],
      ['3000', 'root', 'stat shared/f gid'],
      ['OK', 'bob', 'mkdir shared/d 0755'],
      ['3000', 'root', 'stat shared/d gid'],
      ['02755', 'root', 'stat shared/d mode'],
      ['OK', 'bob', 'create pub/plain'],
      ['2000', 'root', 'stat pub/plain gid'],
    ],
  },
  {
    title: 'truncate needs write permission (the owner always may) and clears set-id bits',
    rows: [
      ['ACCES', 'bob', 'truncate alice/f 0'],
      ['OK', 'alice', 'truncate pub/staff 1'],
      ['OK', 'alice', 'chmod alice/priv 0400'],
      ['OK', 'alice', 'truncate alice/priv 0'],
      ['OK', 'alice', 'truncate pub/suid 3'],
      ['0775', 'root', 'stat pub/suid mode'],
      ['OK', 'root', 'truncate alice/f 0'],
    ],
  },
  {
    title: 'utimes: server time needs write permission, explicit times ownership',
    rows: [
      ['ACCES', 'bob', 'utimes alice/f now'],
      ['PERM', 'bob', 'utimes alice/f 1000'],
      ['OK', 'alice', 'utimes pub/staff now'],
      ['PERM', 'alice', 'utimes pub/bf 1000'],
      ['OK', 'alice', 'utimes alice/f 1000'],
      ['OK', 'root', 'utimes alice/f 2000'],
    ],
  },
];

/** What the table needs of a client; NFSv2 lacks a few (undefined: the row is skipped). */
interface Actor {
  root: FileHandle;
  lookup(dir: FileHandle, name: string): Promise<FileHandle>;
  getattr(fh: FileHandle): Promise<{ mode: number; uid: number; gid: number }>;
  setattr(fh: FileHandle, s: SetAttributes): Promise<unknown>;
  create(dir: FileHandle, name: string, mode?: number, size?: number): Promise<FileHandle>;
  mkdir(dir: FileHandle, name: string, mode?: number): Promise<FileHandle>;
  symlink(dir: FileHandle, name: string, target: string): Promise<unknown>;
  link(fh: FileHandle, dir: FileHandle, name: string): Promise<unknown>;
  remove(dir: FileHandle, name: string): Promise<unknown>;
  rmdir(dir: FileHandle, name: string): Promise<unknown>;
  rename(a: FileHandle, an: string, b: FileHandle, bn: string): Promise<unknown>;
  read(fh: FileHandle): Promise<unknown>;
  write(fh: FileHandle): Promise<unknown>;
  readdir(fh: FileHandle): Promise<unknown>;
  mknod?(dir: FileHandle, name: string, type: FileType): Promise<unknown>;
  access?(fh: FileHandle, bits: number): Promise<number>;
  serverTimes: boolean;
  close(): void;
}

const DATA = new Uint8Array([1, 2, 3]);
const modeOf = (m?: number) => (m === undefined ? {} : { mode: m });

async function actor3(t: PermissionTarget, user: User, exportPath: string): Promise<Actor> {
  const u = USERS[user];
  const rpc = await t.connect(u);
  const c = new Nfs3Client(rpc, authSys(u.uid, u.gid, u.gids));
  return {
    root: await c.mount(exportPath),
    lookup: async (d, n) => (await c.lookup(d, n)).handle,
    getattr: (fh) => c.getattr(fh),
    setattr: (fh, s) => c.setattr(fh, s),
    create: async (d, n, m, size) =>
      (await c.create(d, n, { mode: 'unchecked', attributes: { ...modeOf(m), size } })).handle,
    mkdir: async (d, n, m) => (await c.mkdir(d, n, modeOf(m))).handle,
    symlink: (d, n, t) => c.symlink(d, n, t),
    link: (fh, d, n) => c.link(fh, d, n),
    remove: (d, n) => c.remove(d, n),
    rmdir: (d, n) => c.rmdir(d, n),
    rename: (a, an, b, bn) => c.rename(a, an, b, bn),
    read: (fh) => c.read(fh, 0, 16),
    write: (fh) => c.write(fh, 0, DATA),
    readdir: (fh) => c.readdir(fh),
    mknod: (d, n, t) => c.mknod(d, n, t, {}, { major: 1, minor: 3 }),
    access: (fh, bits) => c.access(fh, bits),
    serverTimes: true,
    close: () => rpc.close(),
  };
}

async function actor2(t: PermissionTarget, user: User, exportPath: string): Promise<Actor> {
  const u = USERS[user];
  const rpc = await t.connect(u);
  const c = new Nfs2Client(rpc, authSys(u.uid, u.gid, u.gids));
  const v2 = (s: SetAttributes) => ({
    ...s,
    atime: s.atime === 'server' ? undefined : s.atime,
    mtime: s.mtime === 'server' ? undefined : s.mtime,
  });
  return {
    root: await c.mount(exportPath),
    lookup: async (d, n) => (await c.lookup(d, n)).handle,
    getattr: async (fh) => c.getattr(fh),
    setattr: (fh, s) => c.setattr(fh, v2(s)),
    create: async (d, n, m, size) => (await c.create(d, n, { ...modeOf(m ?? 0o644), size })).handle,
    mkdir: async (d, n, m) => (await c.mkdir(d, n, modeOf(m ?? 0o755))).handle,
    symlink: (d, n, t) => c.symlink(d, n, t),
    link: (fh, d, n) => c.link(fh, d, n),
    remove: (d, n) => c.remove(d, n),
    rmdir: (d, n) => c.rmdir(d, n),
    rename: (a, an, b, bn) => c.rename(a, an, b, bn),
    read: (fh) => c.read(fh, 0, 16),
    write: (fh) => c.write(fh, 0, DATA),
    readdir: (fh) => c.readdir(fh),
    serverTimes: false,
    close: () => rpc.close(),
  };
}

type Actors = Record<User, Actor>;

async function walk(a: Actor, p: string): Promise<FileHandle> {
  let fh = a.root;
  for (const part of p.split('/')) fh = await a.lookup(fh, part);
  return fh;
}

/** The parent's handle (walked by the actor) and the last name. */
async function parentOf(a: Actor, p: string): Promise<[FileHandle, string]> {
  const i = p.lastIndexOf('/');
  return i < 0 ? [a.root, p] : [await walk(a, p.slice(0, i)), p.slice(i + 1)];
}

const ACCESS_BITS: Record<string, number> = {
  r: ACCESS3.READ,
  w: ACCESS3.MODIFY,
  x: ACCESS3.EXECUTE | ACCESS3.LOOKUP,
};

/** Runs one command; resolves with its outcome ('OK', a status name, a stat value or 'SKIP'). */
async function run(actors: Actors, user: User, command: string): Promise<string> {
  const a = actors[user];
  const [cmd, p, x, y] = command.split(' ');
  const id = (v: string) => (v === '-1' ? undefined : Number(v));
  switch (cmd) {
    case 'stat': {
      const attrs = await actors.root.getattr(await walk(actors.root, p));
      const v = attrs[x as 'mode' | 'uid' | 'gid'];
      return x === 'mode' ? '0' + (v & 0o7777).toString(8) : String(v);
    }
    case 'chmod':
      return a.setattr(await walk(a, p), { mode: parseInt(x, 8) }).then(() => 'OK');
    case 'chown':
      return a.setattr(await walk(a, p), { uid: id(x), gid: id(y) }).then(() => 'OK');
    case 'truncate':
      return a.setattr(await walk(a, p), { size: Number(x) }).then(() => 'OK');
    case 'utimes': {
      if (x === 'now' && !a.serverTimes) return 'SKIP';
      const t = x === 'now' ? ('server' as const) : { seconds: Number(x), nseconds: 0 };
      return a.setattr(await walk(a, p), { atime: t, mtime: t }).then(() => 'OK');
    }
    case 'read':
      return a.read(await walk(a, p)).then(() => 'OK');
    case 'write':
      return a.write(await walk(a, p)).then(() => 'OK');
    case 'lookup':
      return walk(a, p).then(() => 'OK');
    case 'readdir':
      return a.readdir(await walk(a, p)).then(() => 'OK');
    case 'access': {
      if (!a.access) return 'SKIP';
      const want = ACCESS_BITS[x];
      return (await a.access(await walk(a, p), want)) !== 0 ? 'OK' : 'ACCES';
    }
    case 'link': {
      const src = await walk(a, p);
      return a.link(src, ...(await parentOf(a, x))).then(() => 'OK');
    }
    case 'rename': {
      const [fd, fn] = await parentOf(a, p);
      return a.rename(fd, fn, ...(await parentOf(a, x))).then(() => 'OK');
    }
    default:
      return runEntryCommand(a, cmd, await parentOf(a, p), x);
  }
}

/** Commands on one directory entry: create, mkdir, mknod, symlink, unlink, rmdir. */
async function runEntryCommand(
  a: Actor,
  cmd: string,
  [dir, name]: [FileHandle, string],
  x: string | undefined,
): Promise<string> {
  const mode = x === undefined ? undefined : parseInt(x, 8);
  switch (cmd) {
    case 'create':
      return a.create(dir, name, mode).then(() => 'OK');
    case 'create-trunc':
      return a.create(dir, name, undefined, 0).then(() => 'OK');
    case 'mkdir':
      return a.mkdir(dir, name, mode).then(() => 'OK');
    case 'symlink':
      return a.symlink(dir, name, x ?? 'target').then(() => 'OK');
    case 'mknod':
      if (!a.mknod) return 'SKIP';
      return a.mknod(dir, name, x === 'chr' ? FileType.CHR : FileType.FIFO).then(() => 'OK');
    case 'unlink':
      return a.remove(dir, name).then(() => 'OK');
    case 'rmdir':
      return a.rmdir(dir, name).then(() => 'OK');
    default:
      throw new Error(`unknown command ${cmd}`);
  }
}

async function outcome(actors: Actors, user: User, command: string): Promise<string> {
  try {
    return await run(actors, user, command);
  } catch (e) {
    if (!(e instanceof NfsError)) throw e;
    return NFS_NAMES[e.status] ?? String(e.status);
  }
}

/** NFS3ERR_PERM and NFSERR_PERM are both 1, ACCES both 13: one name per status. */
const NFS_NAMES: Record<number, string> = { 1: 'PERM', 2: 'NOENT', 13: 'ACCES', 17: 'EXIST' };

async function makeFixture(root: Actor, top: FileHandle): Promise<void> {
  const made = new Map<string, FileHandle>([['', top]]);
  for (const [p, type, mode, owner, gid] of FIXTURE) {
    const i = p.lastIndexOf('/');
    const dir = made.get(i < 0 ? '' : p.slice(0, i))!;
    const name = p.slice(i + 1);
    const fh = type === 'dir' ? await root.mkdir(dir, name) : await root.create(dir, name);
    // Mode after owner: a chown clears set-id bits on some backends.
    await root.setattr(fh, { uid: USERS[owner].uid, gid });
    await root.setattr(fh, { mode });
    made.set(p, fh);
  }
}

/** A server on a loopback port. */
export function portTarget(port: number, unsupported?: string[]): PermissionTarget {
  return { connect: () => RpcClient.connect({ port }), unsupported };
}

export interface PermissionTarget {
  /**
   * An RPC client for one user, to a server that checks permissions and does not squash root:
   * `portTarget` connects over TCP; a test may hand in any object with RpcClient's `call` and
   * `close` that executes calls as `cred` (BFS replicas' state machines, without sockets).
   */
  connect(cred: Credentials): Promise<RpcClient>;
  /** Exported path to mount. */
  exportPath?: string;
  /** Commands the backend cannot do at all (the local directory has no mknod): rows skipped. */
  unsupported?: string[];
}

/**
 * Defines one mocha test per case against the server `target()` gives (called in each test, so
 * it may be started in a `before` hook), for NFSv3 and NFSv2.
 */
export function definePermissionTable(target: () => PermissionTarget): void {
  for (const version of [3, 2] as const) {
    for (const [k, c] of PERMISSION_CASES.entries()) {
      it(`NFSv${version}: ${c.title}`, async () => {
        const t = target();
        const make = version === 3 ? actor3 : actor2;
        const ex = t.exportPath ?? '/';
        const users: User[] = ['root', 'alice', 'bob'];
        const list = await Promise.all(users.map((u) => make(t, u, ex)));
        const actors = Object.fromEntries(users.map((u, i) => [u, list[i]])) as Actors;
        try {
          // Each case gets a fresh copy of the fixture in a directory of its own.
          const caseDir = `v${version}-case${k}-${process.hrtime.bigint()}`;
          const top = await actors.root.mkdir(actors.root.root, caseDir, 0o755);
          await actors.root.setattr(top, { mode: 0o755 });
          await makeFixture(actors.root, top);
          for (const a of list) a.root = top;
          for (const [i, [expected, user, command]] of c.rows.entries()) {
            if (t.unsupported?.includes(command.split(' ')[0])) continue;
            const got = await outcome(actors, user, command);
            if (got === 'SKIP') continue;
            assert.equal(got, expected, `row ${i + 1}: ${user} ${command}`);
          }
        } finally {
          for (const a of list) a.close();
        }
      });
    }
  }
}
