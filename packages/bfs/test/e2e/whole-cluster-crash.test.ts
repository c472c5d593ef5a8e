import { strict as assert } from 'node:assert';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Nfs3Client, RpcClient, authSys } from 'nfs-server-ts';
import { STATUS_PORT_OFFSET } from '../../src/cluster/config';
import { freeConsecutivePorts } from '../../src/cluster/ports';
import { BFS_CLI } from './helpers';

/**
 * A whole-cluster restart makes progress within this long: from the relay's ready line to the
 * first acknowledged write (a view change, since no replica votes again in a view it may have
 * voted in before the stop).
 */
const RESTART_PROGRESS_MS = 20_000;
/** Power cuts per run: each one SIGKILLs all five processes at once. */
const ROUNDS = 5;

/** `bfs up` in a process group of its own, so one kill(-pgid) stops every process at once. */
function startGroup(dir: string): Promise<{ pid: number; port: number; stderr: () => string }> {
  const child = spawn(process.execPath, [BFS_CLI, 'up', '--dir', dir, '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      process.kill(-child.pid!, 'SIGKILL');
      reject(new Error(`no ready line within 60 s; stderr:\n${err}`));
    }, 60_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /^ready nfs:\/\/[^/]+\/\?nfsport=(\d+)/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ pid: child.pid!, port: Number(m[1]), stderr: () => err });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`bfs up exited with ${code} before ready; stderr:\n${err}`));
    });
  });
}

function alive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

async function powerCut(pgid: number): Promise<void> {
  process.kill(-pgid, 'SIGKILL');
  while (alive(pgid)) await new Promise((r) => setTimeout(r, 20));
}

async function withDeadline<T>(what: string, ms: number, log: () => string, run: Promise<T>) {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(`${what}: not within ${ms} ms\n${log().split('\n').slice(-40).join('\n')}`),
        ),
      ms,
    );
  });
  try {
    return await Promise.race([run, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe('whole-cluster power cuts: a FILE_SYNC reply means the data survives SIGKILL of every process at once', function () {
  this.timeout(600_000);
  let tmp: string;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-powercut-'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it(`keeps every acknowledged file over ${ROUNDS} rounds of SIGKILL within a millisecond of the last WRITE reply, and makes progress after every restart`, async () => {
    const dir = path.join(tmp, 'data');
    const files = new Map<string, Buffer>();
    const firstWriteMs: number[] = [];
    for (let round = 0; round <= ROUNDS; round++) {
      const up = await startGroup(dir);
      const rpc = await RpcClient.connect({ port: up.port });
      const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
      try {
        const root = await nfs.mount('/');
        const started = Date.now();
        // The first write after a restart: bounded, every round.
        const probe = `probe-${round}`;
        await withDeadline(
          `round ${round}: first write after the restart`,
          RESTART_PROGRESS_MS,
          up.stderr,
          nfs.create(root, probe),
        );
        firstWriteMs.push(Date.now() - started);
        for (const [name, data] of files) {
          const { handle } = await nfs.lookup(root, name);
          const back = Buffer.from(await nfs.readAll(handle));
          assert.ok(
            back.equals(data),
            `round ${round}: ${name} has ${back.length} of ${data.length} bytes`,
          );
        }
        if (round === ROUNDS) break;
        // CREATE + one FILE_SYNC WRITE each; the cut comes right after the last reply.
        const count = 20 + 30 * round;
        for (let i = 0; i < count; i++) {
          const name = `r${round}-f${i}`;
          const data = randomBytes(100 + ((i * 37) % 3000));
          const { handle } = await nfs.create(root, name);
          const w = await nfs.write(handle, 0, data, 'file_sync');
          assert.equal(w.committed, 'file_sync');
          files.set(name, data);
        }
        await powerCut(up.pid);
      } finally {
        rpc.close();
        if (alive(up.pid)) await powerCut(up.pid);
      }
    }
    // Reported, not asserted against a figure (shared machine): the bound above is the test.
    console.log(`      first write after each restart (ms): ${firstWriteMs.join(', ')}`);
  });
});

interface SplitStatus {
  split: number | null;
  replicas: ({ stable: number } | { error: string })[];
}

function clusterStatus(dir: string): SplitStatus {
  const r = spawnSync(process.execPath, [BFS_CLI, 'status', '--dir', dir, '--json'], {
    encoding: 'utf8',
  });
  return JSON.parse(r.stdout) as SplitStatus;
}

/** NFS service on the cluster in `dir`: 40 FILE_SYNC writes, then every file read back. */
async function serves(dir: string, what: string): Promise<void> {
  const up = await startGroup(dir);
  const rpc = await RpcClient.connect({ port: up.port });
  const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
  try {
    const root = await nfs.mount('/');
    await withDeadline(
      `${what}: 40 writes`,
      60_000,
      up.stderr,
      (async () => {
        for (let i = 0; i < 40; i++) {
          const { handle } = await nfs.create(root, `after-${i}`);
          await nfs.write(handle, 0, Buffer.from(`after ${i}\n`), 'file_sync');
        }
      })(),
    );
    const entries = await nfs.listAll(root);
    const names = entries.map((e) => e.name);
    for (let i = 0; i < 40; i++) assert.ok(names.includes(`after-${i}`), `after-${i}`);
    // Each file read as its owner: the permission checks refuse others a file made 0660.
    for (const e of entries) {
      if (e.attributes?.type !== 1 || !e.handle) continue;
      const owner = new Nfs3Client(rpc, authSys(e.attributes.uid, e.attributes.gid));
      await owner.readAll(e.handle);
    }
  } finally {
    rpc.close();
    await powerCut(up.pid);
  }
}

/**
 * Unpacks a repro cluster and moves its replicas to free ports below the kernel's ephemeral
 * range: the tars name 38000-38003, which any outgoing connection on the host may hold.
 */
async function unpack(name: string): Promise<{ tmp: string; dir: string }> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `bfs-${name}-`));
  execFileSync('tar', ['xf', path.join(REPRO, `${name}.tar`), '-C', tmp]);
  const dir = path.join(tmp, fs.readdirSync(tmp)[0]!);
  const file = path.join(dir, 'cluster.json');
  const cfg = JSON.parse(fs.readFileSync(file, 'utf8')) as { replicas: { port: number }[] };
  const base = await freeConsecutivePorts(cfg.replicas.length, STATUS_PORT_OFFSET);
  cfg.replicas.forEach((r, i) => (r.port = base + i));
  fs.writeFileSync(file, JSON.stringify(cfg, null, 2) + '\n');
  return { tmp, dir };
}

/** The wedged clusters, as their replicas left them (see shared/repro/README.md). */
const REPRO = path.resolve(__dirname, '../../../../../shared/repro');

describe('the clusters that wedged after whole-cluster restarts (shared/repro)', function () {
  this.timeout(300_000);
  const have = (name: string) => fs.existsSync(path.join(REPRO, `${name}.tar`));

  (have('c7-wedged') ? it : it.skip)(
    'c7 (two replicas at 221, two at 384, stable 128): the laggards fetch the state f + 1 vote for at the end of their window, and the cluster serves',
    async () => {
      const { tmp, dir } = await unpack('c7-wedged');
      try {
        await serves(dir, 'c7');
      } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
      }
    },
  );

  (have('c4-wedged') ? it : it.skip)(
    'c4 (histories forked at seq 364 by the old restarts): bfs status reports the fork, bfs fork-check names the replicas to reset, and after that the cluster serves',
    async () => {
      const { tmp, dir } = await unpack('c4-wedged');
      try {
        const up = await startGroup(dir);
        try {
          const deadline = Date.now() + 30_000;
          let s = clusterStatus(dir);
          while (s.split === null && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 500));
            s = clusterStatus(dir);
          }
          assert.equal(s.split, 384, 'the first checkpoint after the fork can never be stable');
        } finally {
          await powerCut(up.pid);
        }
        const check = spawnSync(process.execPath, [BFS_CLI, 'fork-check', '--dir', dir, '--json'], {
          encoding: 'utf8',
        });
        assert.equal(check.status, 1, 'a fork exits 1');
        const report = JSON.parse(check.stdout) as { seq: number; reset: number[] };
        assert.equal(report.seq, 364);
        assert.deepEqual(report.reset, [0, 2], 'the replicas holding the view-4 batch');
        for (const i of report.reset)
          fs.renameSync(
            path.join(dir, `replica-${i}`, 'commit-log'),
            path.join(dir, `replica-${i}`, 'commit-log.forked'),
          );
        await serves(dir, 'c4 after the reset');
      } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
      }
    },
  );
});
