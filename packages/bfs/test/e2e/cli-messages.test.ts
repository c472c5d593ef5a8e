/**
 * The service commands' own messages around their logs (start-up, shutdown, failures) follow the
 * log's rule: JSON records when stderr is not a terminal, plain lines on one. The command lines
 * `bfs up` prints to paste (mount, status) stay plain, on stdout with the ready line, and work
 * when pasted. Real `bfs` processes.
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { initCluster } from '../../src/cluster/config';
import { freeConsecutivePorts } from '../../src/cluster/ports';
import * as net from 'node:net';
import { IPPROTO_TCP, NLM_PROGRAM, PortmapClient, RpcClient } from 'nfs-server-ts';
import { BFS_CLI, ROOT, startBfs, stop } from './helpers';

/** Whether this process may listen on 127.0.0.1:port (root, and nothing holds it). */
async function bindable(port: number): Promise<boolean> {
  const s = net.createServer();
  const ok = await new Promise<boolean>((resolve) => {
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => resolve(true));
  });
  if (ok) await new Promise((r) => s.close(r));
  return ok;
}

/** The environment of a user's shell: the log format left to the terminal test. */
function userEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.BFS_LOG_FORMAT;
  return env;
}

/** Each line of `text` parsed as a JSON record; fails naming the first line that is not one. */
function records(text: string): { level: number; msg: string; [k: string]: unknown }[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      try {
        return JSON.parse(line);
      } catch {
        assert.fail(`not a JSON record: ${line}\nin:\n${text}`);
      }
    });
}

describe('bfs replica, relay and up: their own messages follow the log format rule', function () {
  this.timeout(120_000);
  let tmp: string;

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-messages-'));
  });
  after(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('a failure to start is one JSON record (level error) when piped, the plain line on a terminal', () => {
    const missing = path.join(tmp, 'none');
    const args = [BFS_CLI, 'relay', '--dir', missing, '--port', '0'];
    const piped = spawnSync(process.execPath, args, { env: userEnv(), encoding: 'utf8' });
    assert.equal(piped.status, 1);
    const [rec, ...more] = records(piped.stderr);
    assert.deepEqual(more, []);
    assert.equal(rec.level, 50);
    assert.equal(rec.relay, 'relay-0');
    assert.match(rec.msg, /^bfs relay: no cluster in .*none \(missing cluster\.json\)/);
    // A real terminal: script(1) gives the process a pseudo-terminal.
    const tty = spawnSync('script', ['-qec', [process.execPath, ...args].join(' '), '/dev/null'], {
      env: userEnv(),
      encoding: 'utf8',
    });
    if (tty.error) return; // no script(1): the piped case is checked
    assert.match(
      tty.stdout,
      /^bfs relay: no cluster in .*none \(missing cluster\.json\); run `bfs init --dir .*` first\r?\n$/,
    );
  });

  it('a replica says it shuts down in a record with its id, like the rest of its log', async () => {
    const dir = path.join(tmp, 'replica');
    await initCluster({ dir, replicas: 4, basePort: await freeConsecutivePorts(4, 100) });
    const r = await startBfs(
      ['replica', '--dir', dir, '--id', '1'],
      30_000,
      /^ready replica (\d+)$/m,
    );
    assert.equal(await stop(r.child), 0);
    const log = records(r.stderr());
    assert.ok(log.some((l) => / listening; view 0/.test(l.msg)));
    const last = log.at(-1)!;
    assert.equal(last.msg, 'bfs: SIGTERM, shutting down');
    assert.equal(last.replica, 1);
    assert.equal(last.level, 30);
  });

  it('bfs up logs only JSON records, and prints the lines to paste plainly on stdout, where they work', async () => {
    const dir = path.join(tmp, 'up');
    const child = spawn(process.execPath, [BFS_CLI, 'up', '--dir', dir, '--port', '0'], {
      env: userEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`not ready:\n${out}\n${err}`)), 60_000);
        child.stdout.on('data', () => {
          if (/^status: /m.test(out)) {
            clearTimeout(timer);
            resolve();
          }
        });
        child.once('exit', (code) => reject(new Error(`bfs up exited ${code}:\n${err}`)));
      });
      const lines = out.trimEnd().split('\n');
      assert.equal(lines.length, 3, out);
      assert.match(lines[0], /^ready nfs:\/\/127\.0\.0\.1\/\?nfsport=(\d+)&/);
      const port = /nfsport=(\d+)/.exec(lines[0])![1];
      assert.equal(
        lines[1],
        `mount with: mount -t nfs -o vers=3,proto=tcp,port=${port},mountport=${port},nolock 127.0.0.1:/ /mnt/bfs`,
      );
      assert.equal(lines[2], `status: npx bfs status --dir ${dir}`);
      const status = spawnSync('bash', ['-c', lines[2].slice('status: '.length)], {
        cwd: ROOT,
        env: userEnv(),
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.equal(status.status, 0, `${status.stdout}${status.stderr}`);
      assert.match(status.stdout, /checkpoint digests agree among the 4 replicas up/);
      assert.match(status.stdout, /^relay: http:\/\/127\.0\.0\.1:\d+ \(its own observations/m);
    } finally {
      assert.equal(await stop(child), 0, err);
    }
    const log = records(err);
    assert.ok(log.some((l) => l.relay === 'relay-0' && /^NFS on /.test(l.msg)));
    assert.ok(log.some((l) => l.msg === 'bfs: SIGTERM, shutting down' && l.child === undefined));
    assert.ok(!log.some((l) => /^(mount with|status): /.test(l.msg)), 'not in the log');
  });

  it('bfs up --portmap-111 serves the portmapper on port 111 too, where a kernel client finds NLM, and prints the mount line without nolock', async function () {
    if (!(await bindable(111))) this.skip(); // not root, or an rpcbind holds 111
    const dir = path.join(tmp, 'up-111');
    const child = spawn(
      process.execPath,
      [BFS_CLI, 'up', '--dir', dir, '--port', '0', '--portmap-111'],
      { env: userEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`not ready:\n${out}\n${err}`)), 60_000);
        child.stdout.on('data', () => {
          if (/^status: /m.test(out)) {
            clearTimeout(timer);
            resolve();
          }
        });
        child.once('exit', (code) => reject(new Error(`bfs up exited ${code}:\n${err}`)));
      });
      const port = Number(/nfsport=(\d+)/.exec(out)![1]);
      assert.match(
        out,
        new RegExp(
          `^mount with: mount -t nfs -o vers=3,proto=tcp,port=${port},mountport=${port} 127\\.0\\.0\\.1:/ /mnt/bfs$`,
          'm',
        ),
      );
      const rpc = await RpcClient.connect({ port: 111, host: '127.0.0.1' });
      try {
        assert.equal(await new PortmapClient(rpc).getport(NLM_PROGRAM, 4, IPPROTO_TCP), port);
      } finally {
        rpc.close();
      }
    } finally {
      assert.equal(await stop(child), 0, err);
    }
  });
});
