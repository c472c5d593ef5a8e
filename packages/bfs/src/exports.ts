/**
 * Exports as operators know them from /etc/exports and nfs-ganesha's EXPORT blocks: a path, the
 * client addresses it admits, read-write or read-only, and how credentials are squashed. They
 * live in cluster.json (`exports`), so every relay applies the same rules and every replica
 * enforces the part a faulty relay could break (which export a handle belongs to, `ro`).
 *
 * Each entry is one export with one index: a path served to two client groups with different
 * options is two entries, as in an /etc/exports line with two clients.
 */
import * as net from 'node:net';
import {
  type AuthSys,
  type Credentials,
  type ExportedTree,
  ANONYMOUS_ID,
  MAX_EXPORTS,
  MountStatus,
  NfsStatus,
  exportIndexOf,
  exportPathParts,
} from 'nfs-server-ts';

export type Squash = 'root_squash' | 'no_root_squash' | 'all_squash';

export interface ExportEntry {
  /** Absolute path of the exported directory in the file system. */
  path: string;
  /** Who may mount and call: '*', IPv4 or IPv6 addresses, CIDR blocks ('10.0.0.0/8'). */
  clients: string[];
  access: 'rw' | 'ro';
  squash: Squash;
  /** The uid and gid squashed callers (and AUTH_NONE) get. */
  anonuid: number;
  anongid: number;
}

/** What `bfs init` writes: everyone, read-write, root squashed (what the cluster did before). */
export const DEFAULT_EXPORTS: readonly ExportEntry[] = [
  {
    path: '/',
    clients: ['*'],
    access: 'rw',
    squash: 'root_squash',
    anonuid: ANONYMOUS_ID,
    anongid: ANONYMOUS_ID,
  },
];

export class ExportsError extends Error {}

const SQUASHES: Squash[] = ['root_squash', 'no_root_squash', 'all_squash'];

function checkId(v: unknown, what: string): number {
  if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 0xffffffff)
    throw new ExportsError(`${what} must be an integer 0..4294967295, not ${String(v)}`);
  return v as number;
}

/** A client rule's canonical form; throws for anything that is not '*', an address or CIDR. */
export function checkClientRule(rule: string): string {
  if (rule === '*') return rule;
  const slash = rule.indexOf('/');
  const addr = slash < 0 ? rule : rule.slice(0, slash);
  const family = net.isIP(addr);
  if (family === 0)
    throw new ExportsError(
      `client ${JSON.stringify(rule)}: give '*', an IP address or a CIDR block (host names and wildcards are not supported)`,
    );
  if (slash >= 0) {
    const bits = Number(rule.slice(slash + 1));
    if (!Number.isInteger(bits) || bits < 0 || bits > (family === 4 ? 32 : 128))
      throw new ExportsError(`client ${JSON.stringify(rule)}: bad prefix length`);
  }
  return rule;
}

/** One entry checked, with /etc/exports's defaults for what it leaves out (ro, root_squash). */
export function checkExportEntry(raw: unknown, where = 'export'): ExportEntry {
  if (typeof raw !== 'object' || raw === null) throw new ExportsError(`${where}: not an object`);
  const e = raw as Record<string, unknown>;
  if (typeof e.path !== 'string') throw new ExportsError(`${where}: path must be a string`);
  try {
    exportPathParts(e.path);
  } catch (err) {
    throw new ExportsError(`${where}: ${(err as Error).message}`);
  }
  const clients = e.clients ?? ['*'];
  if (!Array.isArray(clients) || clients.length === 0 || clients.some((c) => typeof c !== 'string'))
    throw new ExportsError(`${where}: clients must be a non-empty list of strings`);
  const access = e.access ?? 'ro';
  if (access !== 'rw' && access !== 'ro')
    throw new ExportsError(`${where}: access must be "rw" or "ro"`);
  const squash = e.squash ?? 'root_squash';
  if (!SQUASHES.includes(squash as Squash))
    throw new ExportsError(`${where}: squash must be one of ${SQUASHES.join(', ')}`);
  const known = new Set(['path', 'clients', 'access', 'squash', 'anonuid', 'anongid']);
  for (const k of Object.keys(e))
    if (!known.has(k)) throw new ExportsError(`${where}: unknown field ${JSON.stringify(k)}`);
  return {
    path: '/' + exportPathParts(e.path).join('/'),
    clients: (clients as string[]).map((c) => {
      try {
        return checkClientRule(c);
      } catch (err) {
        throw new ExportsError(`${where}: ${(err as Error).message}`);
      }
    }),
    access,
    squash: squash as Squash,
    anonuid: checkId(e.anonuid ?? ANONYMOUS_ID, `${where}: anonuid`),
    anongid: checkId(e.anongid ?? ANONYMOUS_ID, `${where}: anongid`),
  };
}

/** The `exports` of cluster.json; absent means DEFAULT_EXPORTS (clusters made before them). */
export function checkExports(raw: unknown): ExportEntry[] {
  if (raw === undefined) return DEFAULT_EXPORTS.map((e) => ({ ...e, clients: [...e.clients] }));
  if (!Array.isArray(raw) || raw.length === 0)
    throw new ExportsError('exports must be a non-empty list');
  if (raw.length > MAX_EXPORTS) throw new ExportsError(`at most ${MAX_EXPORTS} exports`);
  return raw.map((e, i) => checkExportEntry(e, `exports[${i}]`));
}

/**
 * Options of /etc/exports that describe what BFS always does, accepted so pasted lines work:
 * every reply is stable on 2f + 1 replicas or says UNSTABLE (`sync`), handles are bound to their
 * export (`subtree_check`, and `no_subtree_check` loses nothing), client ports are not checked
 * (`insecure`). Others (`async`, `secure`, `crossmnt`...) are refused, not silently dropped.
 */
const ALWAYS_SO = ['sync', 'subtree_check', 'no_subtree_check', 'insecure'];

/**
 * One /etc/exports line: `/path client(opt,...) client(opt,...)`, each client an entry. Options:
 * rw, ro, root_squash, no_root_squash, all_squash, anonuid=N, anongid=N; a client without
 * options gets the defaults (ro, root_squash), and options alone apply to '*'.
 */
export function parseExportsLine(line: string): ExportEntry[] {
  const words = line.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) throw new ExportsError('empty export line');
  const [p, ...rest] = words;
  if (rest.length === 0) rest.push('*');
  return rest.map((w) => {
    const m = /^([^()]*)(?:\(([^()]*)\))?$/.exec(w);
    if (!m) throw new ExportsError(`cannot read ${JSON.stringify(w)}: want client(options)`);
    const e: Record<string, unknown> = { path: p, clients: [m[1] === '' ? '*' : m[1]] };
    for (const opt of (m[2] ?? '').split(',').filter(Boolean)) {
      const [k, v] = opt.split('=');
      if (ALWAYS_SO.includes(opt)) continue;
      if (k === 'rw' || k === 'ro') e.access = k;
      else if (SQUASHES.includes(k as Squash)) e.squash = k;
      else if ((k === 'anonuid' || k === 'anongid') && v !== undefined && /^\d+$/.test(v))
        e[k] = Number(v);
      else throw new ExportsError(`unknown export option ${JSON.stringify(opt)}`);
    }
    return checkExportEntry(e);
  });
}

/** An entry as an /etc/exports line (what `bfs exports` prints). */
export function formatExportEntry(e: ExportEntry): string {
  const opts: string[] = [e.access, e.squash];
  if (e.anonuid !== ANONYMOUS_ID) opts.push(`anonuid=${e.anonuid}`);
  if (e.anongid !== ANONYMOUS_ID) opts.push(`anongid=${e.anongid}`);
  return `${e.path} ${e.clients.map((c) => `${c}(${opts.join(',')})`).join(' ')}`;
}

/** What the replicas need of the entries: the subtree and whether it is read-only. */
export function exportedTrees(entries: readonly ExportEntry[]): ExportedTree[] {
  return entries.map((e) => ({ path: e.path, readOnly: e.access === 'ro' }));
}

function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
}

/** The relay's side of the exports: which entry admits a client, and its credentials. */
export class ExportRules {
  private readonly lists: (net.BlockList | 'everyone')[];

  constructor(readonly entries: readonly ExportEntry[]) {
    this.lists = entries.map((e) => {
      if (e.clients.includes('*')) return 'everyone';
      const list = new net.BlockList();
      for (const c of e.clients) {
        const [a, bits] = c.split('/');
        const family = net.isIPv4(a) ? 'ipv4' : 'ipv6';
        if (bits === undefined) list.addAddress(a, family);
        else list.addSubnet(a, Number(bits), family);
      }
      return list;
    });
  }

  admits(index: number, address: string): boolean {
    const list = this.lists[index];
    if (list === undefined) return false;
    if (list === 'everyone') return true;
    const a = plainAddress(address);
    const family = net.isIPv4(a) ? 'ipv4' : net.isIPv6(a) ? 'ipv6' : undefined;
    return family !== undefined && list.check(a, family);
  }

  /** Whether any export admits the address (NULL calls, and who gets AUTH_TOOWEAK). */
  admitsAny(address: string): boolean {
    return this.entries.some((_, i) => this.admits(i, address));
  }

  /**
   * The export a MNT of `dirpath` from `address` uses: of the exports at or above the path, the
   * deepest that admits the client (the first of equals). NOENT when no export covers the path,
   * ACCES when some do but none admits the client.
   */
  forMount(dirpath: string, address: string): { index: number } | { status: MountStatus } {
    let parts: string[];
    try {
      parts = exportPathParts(dirpath);
    } catch {
      return { status: MountStatus.NOENT };
    }
    let best: { index: number; depth: number } | undefined;
    let covered = false;
    this.entries.forEach((e, index) => {
      const ep = exportPathParts(e.path);
      if (ep.length > parts.length || ep.some((x, i) => x !== parts[i])) return;
      covered = true;
      if (!this.admits(index, address)) return;
      if (!best || ep.length > best.depth) best = { index, depth: ep.length };
    });
    if (best) return { index: best.index };
    return { status: covered ? MountStatus.ACCES : MountStatus.NOENT };
  }

  /** The export of a call's handle and whether it admits the client: an index or a status. */
  forHandle(fh: Uint8Array, address: string): { index: number } | { status: NfsStatus } {
    const index = exportIndexOf(fh);
    if (index === undefined) return { status: NfsStatus.BADHANDLE };
    if (index >= this.entries.length) return { status: NfsStatus.STALE };
    if (!this.admits(index, address)) return { status: NfsStatus.ACCES };
    return { index };
  }

  /** The credentials the replicas see for a caller of export `index`, after squashing. */
  credentials(index: number, a: AuthSys | undefined): Credentials {
    const e = this.entries[index];
    const anon = { uid: e.anonuid, gid: e.anongid, gids: [] };
    if (!a || e.squash === 'all_squash') return anon;
    if (e.squash === 'root_squash' && a.uid === 0) return anon;
    return { uid: a.uid, gid: a.gid, gids: a.gids };
  }

  /** MOUNT's EXPORT answer: each path once, with the client rules of every entry for it. */
  listing(): { dir: string; groups: string[] }[] {
    const byPath = new Map<string, string[]>();
    for (const e of this.entries) {
      const groups = byPath.get(e.path) ?? [];
      for (const c of e.clients) if (!groups.includes(c)) groups.push(c);
      byPath.set(e.path, groups);
    }
    return [...byPath].map(([dir, groups]) => ({ dir, groups }));
  }
}
