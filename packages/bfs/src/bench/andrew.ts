/**
 * An Andrew-style benchmark over NFSv3 with our client, phases as in the original benchmark:
 * (1) make the directory tree, (2) copy a source tree into it, (3) stat every file and list
 * every directory, (4) read every byte, (5) the I/O of a compile (read each source, write an
 * object file per source). The source tree is generated deterministically: about 70 C-like
 * files and 200 KB per copy, as in the original, or read from a local directory.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mulberry32 } from '@bfs/pbft';
import type { FileHandle } from 'nfs-server-ts';
import { type Session, connect, median, type Target } from './target';

export const PHASES = ['mkdir', 'copy', 'stat', 'read', 'compile'] as const;
export type Phase = (typeof PHASES)[number];
export type PhaseTimes = Record<Phase | 'total', number>;

export interface SourceFile {
  /** Path relative to the tree root, '/'-separated. */
  path: string;
  data: Buffer;
}

/** Transfer size of the benchmark's reads and writes (a typical client's wsize/rsize). */
export const IO_CHUNK = 32 * 1024;

/**
 * The generated tree: 5 directories, 70 files (.c and .h), about 200 KB of valid C (so
 * scripts/andrew.sh can compile it with a real compiler).
 */
export function generateTree(seed = 1): SourceFile[] {
  const rand = mulberry32(seed);
  const dirs = ['src', 'src/lib', 'src/fs', 'include', 'tests'];
  const names = ['len', 'off', 'ino', 'blk', 'cnt', 'idx', 'err', 'pos'];
  const pick = () => names[Math.floor(rand() * names.length)];
  const files: SourceFile[] = [];
  for (let i = 0; i < 70; i++) {
    const dir = dirs[i % dirs.length];
    const header = dir === 'include';
    // Sizes skewed like real sources: many small files, a few large ones (mean ~2.9 KB).
    const size = Math.floor(300 + 8000 * rand() ** 2.2);
    let text = `/* ${dir}/file${i}.${header ? 'h' : 'c'}: generated for the Andrew-style benchmark */\n`;
    text += header ? `#ifndef FILE${i}_H\n#define FILE${i}_H\n\n` : '#include <stddef.h>\n\n';
    let fn = 0;
    while (text.length < size) {
      if (header) {
        text += `int f${i}_${fn++}(int ${pick()}, int ${pick()}x);\n`;
        continue;
      }
      const a = pick();
      text += `int f${i}_${fn++}(int ${a}) {\n  int ${a}2 = ${a};\n`;
      const lines = 2 + Math.floor(rand() * 8);
      for (let l = 0; l < lines; l++) {
        text += `  ${a}2 = ${a}2 * ${1 + Math.floor(rand() * 97)} + ${Math.floor(rand() * 1000)};\n`;
      }
      text += `  return ${a}2;\n}\n\n`;
    }
    if (header) text += '\n#endif\n';
    files.push({ path: `${dir}/file${i}.${header ? 'h' : 'c'}`, data: Buffer.from(text) });
  }
  return files;
}

/** Reads a local source tree (regular files only). */
export function readTree(root: string): SourceFile[] {
  const out: SourceFile[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else if (e.isFile()) out.push({ path: r, data: fs.readFileSync(path.join(root, r)) });
    }
  };
  walk('');
  if (out.length === 0) throw new Error(`no files under ${root}`);
  return out;
}

function dirsOf(files: SourceFile[]): string[] {
  const dirs = new Set<string>();
  for (const f of files) {
    const parts = f.path.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  return [...dirs].sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b));
}

async function writeAll(s: Session, fh: FileHandle, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length; off += IO_CHUNK) {
    await s.nfs.write(fh, off, data.subarray(off, off + IO_CHUNK), 'unstable');
  }
  await s.nfs.commit(fh);
}

async function readAll(s: Session, fh: FileHandle): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for (let off = 0; ;) {
    const { data, eof } = await s.nfs.read(fh, off, IO_CHUNK);
    parts.push(data);
    off += data.length;
    if (eof || data.length === 0) break;
  }
  return Buffer.concat(parts);
}

/** One run in directory `name` under the mount: the phase times in seconds. */
export async function andrewRun(
  target: Target,
  files: SourceFile[],
  copies: number,
  name: string,
  progress: (line: string) => void = () => undefined,
): Promise<PhaseTimes> {
  const s = await connect(target);
  try {
    const times = {} as PhaseTimes;
    const handles = new Map<string, FileHandle>();
    const dirs = dirsOf(files);
    const timed = async (phase: Phase, body: () => Promise<void>) => {
      const t0 = performance.now();
      await body();
      times[phase] = (performance.now() - t0) / 1000;
      progress(`${name}: ${phase} ${times[phase].toFixed(3)} s`);
    };
    const top = (await s.nfs.mkdir(s.root, name, { mode: 0o755 })).handle;
    await timed('mkdir', async () => {
      for (let c = 0; c < copies; c++) {
        const copy = (await s.nfs.mkdir(top, `copy${c}`, { mode: 0o755 })).handle;
        handles.set(`${c}`, copy);
        for (const d of dirs) {
          const parent = handles.get(
            d.includes('/') ? `${c}/${d.slice(0, d.lastIndexOf('/'))}` : `${c}`,
          )!;
          handles.set(
            `${c}/${d}`,
            (await s.nfs.mkdir(parent, d.split('/').pop()!, { mode: 0o755 })).handle,
          );
        }
      }
    });
    const parentOf = (c: number, p: string) =>
      handles.get(p.includes('/') ? `${c}/${p.slice(0, p.lastIndexOf('/'))}` : `${c}`)!;
    await timed('copy', async () => {
      for (let c = 0; c < copies; c++) {
        for (const f of files) {
          const { handle } = await s.nfs.create(parentOf(c, f.path), f.path.split('/').pop()!, {
            mode: 'guarded',
            attributes: { mode: 0o644 },
          });
          handles.set(`${c}/${f.path}`, handle);
          await writeAll(s, handle, f.data);
        }
      }
    });
    await timed('stat', async () => {
      for (let c = 0; c < copies; c++) {
        for (const d of ['', ...dirs]) {
          const dh = handles.get(d ? `${c}/${d}` : `${c}`)!;
          for (const e of await s.nfs.listAll(dh)) {
            if (e.name === '.' || e.name === '..') continue;
            const { handle } = await s.nfs.lookup(dh, e.name);
            await s.nfs.getattr(handle);
          }
        }
      }
    });
    await timed('read', async () => {
      for (let c = 0; c < copies; c++) {
        for (const f of files) {
          const got = await readAll(s, handles.get(`${c}/${f.path}`)!);
          if (!got.equals(f.data)) throw new Error(`${name}: ${f.path} read back differently`);
        }
      }
    });
    await timed('compile', async () => {
      for (let c = 0; c < copies; c++) {
        for (const f of files) {
          if (!f.path.endsWith('.c')) continue;
          const src = await readAll(s, handles.get(`${c}/${f.path}`)!);
          // An object file of about 60% of the source, derived from it (a stand-in for cc -c).
          const obj = Buffer.alloc(Math.ceil(src.length * 0.6));
          for (let i = 0; i < obj.length; i++) obj[i] = src[i] ^ 0x5a;
          const base = f.path.split('/').pop()!.replace(/\.c$/, '.o');
          const { handle } = await s.nfs.create(parentOf(c, f.path), base, {
            mode: 'unchecked',
            attributes: { mode: 0o644 },
          });
          await writeAll(s, handle, obj);
        }
      }
    });
    times.total = PHASES.reduce((a, p) => a + times[p], 0);
    return times;
  } finally {
    s.close();
  }
}

export interface AndrewResult {
  runs: PhaseTimes[];
  median: PhaseTimes;
}

export function medianTimes(runs: PhaseTimes[]): PhaseTimes {
  const m = {} as PhaseTimes;
  for (const k of [...PHASES, 'total'] as const) m[k] = median(runs.map((r) => r[k]));
  return m;
}

export async function andrew(
  target: Target,
  o: {
    copies?: number;
    runs?: number;
    tree?: string;
    progress?: (line: string) => void;
    prefix?: string;
  },
): Promise<AndrewResult> {
  const files = o.tree ? readTree(o.tree) : generateTree();
  const runs: PhaseTimes[] = [];
  const tag = `${o.prefix ?? 'andrew'}-${process.pid}-${Date.now().toString(36)}`;
  for (let r = 0; r < (o.runs ?? 3); r++) {
    runs.push(await andrewRun(target, files, o.copies ?? 1, `${tag}-${r}`, o.progress));
  }
  return { runs, median: medianTimes(runs) };
}
