import { FileType } from 'nfs-server-ts';
import type { Op, Outcome } from './ops';

/** A deliberately naive in-memory file system: the specification every backend is checked against. */
type MNode = MFile | MDir | MLink;
interface MFile {
  t: 'file';
  data: Uint8Array;
  nlink: number;
}
interface MLink {
  t: 'link';
  target: string;
  nlink: number;
}
interface MDir {
  t: 'dir';
  entries: Map<string, MNode>;
  parent: MDir | null;
}

class Fail extends Error {
  constructor(readonly status: string) {
    super(status);
  }
}

export class ModelFs {
  readonly root: MDir = { t: 'dir', entries: new Map(), parent: null };

  run(op: Op): Outcome {
    try {
      return { ok: this.exec(op) };
    } catch (e) {
      if (e instanceof Fail) return { err: e.status };
      throw e;
    }
  }

  private resolve(p: string[]): MNode {
    let n: MNode = this.root;
    for (const c of p) {
      if (n.t !== 'dir') throw new Fail('NOTDIR');
      const next = n.entries.get(c);
      if (!next) throw new Fail('NOENT');
      n = next;
    }
    return n;
  }

  private asDir(n: MNode): MDir {
    if (n.t !== 'dir') throw new Fail('NOTDIR');
    return n;
  }

  private static within(d: MDir, ancestor: MDir): boolean {
    for (let c: MDir | null = d; c; c = c.parent) if (c === ancestor) return true;
    return false;
  }

  private exec(op: Op): unknown {
    switch (op.k) {
      case 'create': {
        const d = this.asDir(this.resolve(op.dir));
        const old = d.entries.get(op.name);
        if (old) {
          if (op.guarded || old.t !== 'file') throw new Fail('EXIST');
          return 'ok';
        }
        d.entries.set(op.name, { t: 'file', data: new Uint8Array(0), nlink: 1 });
        return 'ok';
      }
      case 'mkdir': {
        const d = this.asDir(this.resolve(op.dir));
        if (d.entries.has(op.name)) throw new Fail('EXIST');
        d.entries.set(op.name, { t: 'dir', entries: new Map(), parent: d });
        return 'ok';
      }
      case 'symlink': {
        const d = this.asDir(this.resolve(op.dir));
        if (d.entries.has(op.name)) throw new Fail('EXIST');
        d.entries.set(op.name, { t: 'link', target: op.target, nlink: 1 });
        return 'ok';
      }
      case 'write': {
        const f = this.file(this.resolve(op.path));
        if (op.len > 0) {
          const end = op.offset + op.len;
          if (end > f.data.length) {
            const grown = new Uint8Array(end);
            grown.set(f.data);
            f.data = grown;
          }
          f.data.fill(op.fill, op.offset, end);
        }
        return op.len;
      }
      case 'truncate': {
        const f = this.file(this.resolve(op.path));
        const next = new Uint8Array(op.size);
        next.set(f.data.subarray(0, op.size));
        f.data = next;
        return op.size;
      }
      case 'read': {
        const f = this.file(this.resolve(op.path));
        if (op.offset >= f.data.length) return { data: '', eof: true };
        const end = Math.min(f.data.length, op.offset + op.count);
        return {
          data: Buffer.from(f.data.subarray(op.offset, end)).toString('hex'),
          eof: end >= f.data.length,
        };
      }
      case 'remove': {
        const d = this.asDir(this.resolve(op.dir));
        const n = d.entries.get(op.name);
        if (!n) throw new Fail('NOENT');
        if (n.t === 'dir') throw new Fail('ISDIR');
        d.entries.delete(op.name);
        n.nlink--;
        return 'ok';
      }
      case 'rmdir': {
        const d = this.asDir(this.resolve(op.dir));
        const n = d.entries.get(op.name);
        if (!n) throw new Fail('NOENT');
        if (n.t !== 'dir') throw new Fail('NOTDIR');
        if (n.entries.size > 0) throw new Fail('NOTEMPTY');
        d.entries.delete(op.name);
        return 'ok';
      }
      case 'rename': {
        const fromNode = this.resolve(op.fromDir);
        const toNode = this.resolve(op.toDir);
        const from = this.asDir(fromNode);
        const to = this.asDir(toNode);
        const src = from.entries.get(op.fromName);
        if (!src) throw new Fail('NOENT');
        if (src.t === 'dir' && from !== to && ModelFs.within(to, src)) throw new Fail('INVAL');
        const tgt = to.entries.get(op.toName);
        if (tgt === src) return 'ok';
        if (tgt) {
          // Linux checks "the target is not an ancestor of the source" before the types.
          if (tgt.t === 'dir' && ModelFs.within(from, tgt)) throw new Fail('NOTEMPTY');
          if (src.t === 'dir' && tgt.t !== 'dir') throw new Fail('NOTDIR');
          if (src.t !== 'dir' && tgt.t === 'dir') throw new Fail('ISDIR');
          if (tgt.t === 'dir' && tgt.entries.size > 0) throw new Fail('NOTEMPTY');
          if (tgt.t !== 'dir') tgt.nlink--;
        }
        from.entries.delete(op.fromName);
        to.entries.set(op.toName, src);
        if (src.t === 'dir') src.parent = to;
        return 'ok';
      }
      case 'link': {
        const n = this.resolve(op.path);
        const d = this.asDir(this.resolve(op.dir));
        if (n.t === 'dir') throw new Fail('ISDIR');
        if (d.entries.has(op.name)) throw new Fail('EXIST');
        d.entries.set(op.name, n);
        n.nlink++;
        return 'ok';
      }
      case 'readdir': {
        const d = this.asDir(this.resolve(op.dir));
        return ['.', '..', ...d.entries.keys()].sort();
      }
      case 'getattr':
        return ModelFs.attrs(this.resolve(op.path));
    }
  }

  private file(n: MNode): MFile {
    if (n.t === 'dir') throw new Fail('ISDIR');
    if (n.t !== 'file') throw new Fail('INVAL');
    return n;
  }

  static attrs(n: MNode): { type: FileType; size: number; nlink: number } {
    if (n.t === 'dir') {
      let subdirs = 0;
      for (const c of n.entries.values()) if (c.t === 'dir') subdirs++;
      return { type: FileType.DIR, size: 0, nlink: 2 + subdirs };
    }
    if (n.t === 'link')
      return { type: FileType.LNK, size: Buffer.byteLength(n.target), nlink: n.nlink };
    return { type: FileType.REG, size: n.data.length, nlink: n.nlink };
  }

  /** Every path in the tree with its attributes and contents, for a final whole-tree comparison. */
  dump(): Map<string, unknown> {
    const out = new Map<string, unknown>();
    const walk = (d: MDir, prefix: string) => {
      for (const [name, n] of d.entries) {
        const p = `${prefix}/${name}`;
        const content =
          n.t === 'file'
            ? Buffer.from(n.data).toString('hex')
            : n.t === 'link'
              ? n.target
              : undefined;
        out.set(p, { ...ModelFs.attrs(n), content });
        if (n.t === 'dir') walk(n, p);
      }
    };
    walk(this.root, '');
    return out;
  }
}
