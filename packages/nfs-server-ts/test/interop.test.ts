import { strict as assert } from 'node:assert';
import { execFile, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { LocalFileSystem } from '../src/localfs';
import { MemoryFileSystem } from '../src/memfs';
import { type Harness, startServer } from './helpers';

const run = promisify(execFile);
/** libnfs tools we test against (Debian's libnfs-utils). */
const haveLibnfs = ['nfs-ls', 'nfs-cp', 'nfs-cat'].every((t) => fs.existsSync(`/usr/bin/${t}`));
const SIZES = [0, 1, 4095, 4096, 65537, 1024 * 1024 + 3, 3 * 1024 * 1024 + 11];

/** NFSv2 moves 8 KB per call, so it gets fewer, smaller files. */
const SIZES_V2 = [0, 8193, 1024 * 1024 + 3];

function url(port: number, p: string, version = 3): string {
  return `nfs://127.0.0.1${p}?nfsport=${port}&mountport=${port}&version=${version}`;
}

for (const backend of ['memory', 'local directory'] as const) {
  describe(`interop: libnfs-utils against the ${backend} backend`, function () {
    this.timeout(60_000);
    let h: Harness;
    let tmp: string;
    let exportDir: string;

    before(async function () {
      if (!haveLibnfs) this.skip();
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nfs-interop-'));
      exportDir = path.join(tmp, 'export');
      fs.mkdirSync(exportDir);
      const backendFs =
        backend === 'memory' ? new MemoryFileSystem() : new LocalFileSystem(exportDir);
      // The memory export runs as knfsd would by default (root squashed) with permission checks.
      const exportOptions =
        backend === 'memory' ? { rootSquash: true, checkPermissions: true } : { rootSquash: false };
      h = await startServer({ fs: backendFs, export: exportOptions });
    });

    after(async () => {
      await h?.close();
      if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    });

    it('copies files of 0 bytes to several MB in with nfs-cp and back out byte for byte', async () => {
      // libnfs mounts the directory part of a URL; '//name' puts the file in the export root.
      for (const size of SIZES) {
        const data = crypto.randomBytes(size);
        const src = path.join(tmp, `in-${size}`);
        fs.writeFileSync(src, data);
        await run('nfs-cp', [src, url(h.port, `//f-${size}`)]);
        const back = path.join(tmp, `out-${size}`);
        await run('nfs-cp', [url(h.port, `//f-${size}`), back]);
        assert.ok(fs.readFileSync(back).equals(data), `round trip of ${size} bytes`);
      }
    });

    it('copies files in and out over NFSv2 too (8 KB transfers), byte for byte', async () => {
      for (const size of SIZES_V2) {
        const data = crypto.randomBytes(size);
        const src = path.join(tmp, `in2-${size}`);
        fs.writeFileSync(src, data);
        await run('nfs-cp', [src, url(h.port, `//v2-${size}`, 2)]);
        const back = path.join(tmp, `out2-${size}`);
        await run('nfs-cp', [url(h.port, `//v2-${size}`, 2), back]);
        assert.ok(fs.readFileSync(back).equals(data), `NFSv2 round trip of ${size} bytes`);
      }
      const { stdout } = await run('nfs-ls', [url(h.port, '/', 2)]);
      assert.match(stdout, /v2-8193/);
    });

    it('serves nfs-cat the exact bytes written, including from a subdirectory mount', async () => {
      const data = crypto.randomBytes(200_000);
      const src = path.join(tmp, 'cat-src');
      fs.writeFileSync(src, data);
      await run('nfs-cp', [src, url(h.port, '//cat.bin')]);
      const { stdout } = await run('nfs-cat', [url(h.port, '//cat.bin')], {
        encoding: 'buffer',
        maxBuffer: 1 << 24,
      });
      assert.ok(Buffer.from(stdout).equals(data));
    });

    it('lists a tree recursively with nfs-ls -R (READDIRPLUS), subdirectories included', async () => {
      // Build a small tree through nfs-cp into a subdirectory mount.
      if (backend === 'local directory') {
        fs.mkdirSync(path.join(exportDir, 'sub', 'deeper'), { recursive: true });
      } else {
        const mem = h.fs as MemoryFileSystem;
        const ctx = { cred: { uid: 0, gid: 0, gids: [] }, time: { seconds: 1, nseconds: 0 } };
        const sub = mem.mkdir(mem.root(), 'sub', {}, ctx);
        mem.mkdir(sub, 'deeper', { mode: 0o777 }, ctx);
      }
      const src = path.join(tmp, 'small');
      fs.writeFileSync(src, 'hello\n');
      await run('nfs-cp', [src, url(h.port, '/sub/deeper/leaf.txt')]);
      const { stdout } = await run('nfs-ls', ['-R', url(h.port, '/')]);
      assert.match(stdout, /f-0\b/);
      assert.match(stdout, /sub\/deeper\/leaf\.txt/);
      const { stdout: cat } = await run('nfs-cat', [url(h.port, '/sub/deeper/leaf.txt')]);
      assert.equal(cat, 'hello\n');
    });
  });
}

describe('interop: the nfs-server-ts command', function () {
  this.timeout(60_000);

  it('prints the ready URL, serves libnfs, and exits 0 on SIGTERM', async function () {
    if (!haveLibnfs) this.skip();
    const cli = path.join(__dirname, '..', 'src', 'cli.ts');
    const tsx = require.resolve('tsx/cli');
    const child = spawn(process.execPath, [tsx, cli, '--memory', '--port', '0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /^ready (nfs:\/\/\S+)$/m.exec(out);
          if (m) resolve(m[1]);
        });
        child.once('exit', (code) => reject(new Error(`exited early with ${code}`)));
      });
      const port = Number(/nfsport=(\d+)/.exec(line)![1]);
      assert.match(
        line,
        new RegExp(`^nfs://127\\.0\\.0\\.1/\\?nfsport=${port}&mountport=${port}&version=3$`),
      );
      const { stdout } = await run('nfs-ls', [url(port, '/')]);
      assert.equal(stdout.trim(), '');
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
