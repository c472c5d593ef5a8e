/**
 * `bfs status --dir D` without `--relay`: the relay records where its HTTP port listens in the
 * cluster directory (cluster/relay-address.ts), and `bfs status` asks it there, so the verdicts
 * carry what only the relay observes (wrong replies); when no relay answers, one line says so
 * and the replicas are asked directly. A real `bfs status` process against a cluster with a
 * lying replica.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { Nfs3Client, RpcClient, authSys } from 'nfs-server-ts';
import { relayAddressFile } from '../../src/cluster/relay-address';
import { BFS_CLI, inProcessCluster } from './helpers';

/** Runs `bfs ARGS` (asynchronously: the cluster runs in this process) to its end, or to `ms`. */
function bfs(args: string[], ms = 20_000): Promise<{ code: number | null; stdout: string }> {
  const child = spawn(process.execPath, [BFS_CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout.on('data', (d) => (stdout += d));
  const timer = setTimeout(() => child.kill('SIGTERM'), ms);
  return new Promise((resolve) =>
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout });
    }),
  );
}

/** A loopback port nothing listens on (bound, then closed). */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe('bfs status finds the relay of the cluster in --dir by itself', function () {
  this.timeout(120_000);
  let cluster: Awaited<ReturnType<typeof inProcessCluster>>;

  before(async () => {
    cluster = await inProcessCluster(16 * 2 ** 20, { byzantine: { 2: 'lie' } });
    // Read-write calls through the relay: the liar's replies differ from the accepted ones.
    const rpc = await RpcClient.connect({ port: cluster.relay.port });
    try {
      const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
      const root = await nfs.mount('/');
      for (let i = 0; i < 10; i++) await nfs.create(root, `f${i}`);
    } finally {
      rpc.close();
    }
  });
  after(async () => {
    await cluster?.close();
  });

  it("takes the relay's observations into the verdicts: the lying replica is named for wrong replies", async () => {
    const origin = `http://127.0.0.1:${cluster.relay.httpPort}`;
    const record = JSON.parse(fs.readFileSync(relayAddressFile(cluster.dir, 'relay-0'), 'utf8'));
    assert.deepEqual(record.urls, [origin]);
    assert.equal(record.pid, process.pid);

    const text = await bfs(['status', '--dir', cluster.dir]);
    assert.match(
      text.stdout,
      /^FAULTY: replica 2 is sending wrong replies: \d+ in the last 60 s, seen by relay/m,
    );
    assert.ok(
      text.stdout.includes(`\nrelay: ${origin} (its own observations are in the verdicts)\n`),
      text.stdout,
    );

    const json = JSON.parse((await bfs(['status', '--dir', cluster.dir, '--json'])).stdout);
    assert.deepEqual(json.relay, { url: origin });
    assert.ok(json.relayFaults.recent[2].wrongReply > 0);
    assert.ok(
      json.verdicts.some(
        (v: { replica: number; kind: string }) => v.replica === 2 && v.kind === 'wrongReply',
      ),
    );

    // --watch: every snapshot asks the relay again.
    const watch = await bfs(['status', '--dir', cluster.dir, '--watch'], 4500);
    const snapshots = watch.stdout.split('\nrelay: ').length - 1;
    assert.ok(snapshots >= 2, `${snapshots} snapshots:\n${watch.stdout}`);
    assert.match(watch.stdout, /FAULTY: replica 2 is sending wrong replies/);
  });

  it('says in one line that no relay answers at the recorded address, and asks the replicas', async () => {
    const file = relayAddressFile(cluster.dir, 'relay-0');
    const saved = fs.readFileSync(file, 'utf8');
    const stale = `http://127.0.0.1:${await deadPort()}`;
    fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(saved), urls: [stale] }));
    try {
      const text = await bfs(['status', '--dir', cluster.dir]);
      assert.match(text.stdout, /^3 +127\.0\.0\.1:\d+ +\d+/m, 'the replicas were asked');
      const line = text.stdout.split('\n').filter((l) => l.startsWith('no relay answers'));
      assert.equal(line.length, 1, text.stdout);
      assert.ok(line[0].includes(`tried ${stale} (relay-0, recorded in ${file})`), line[0]);
      assert.match(line[0], /: ECONNREFUSED\): verdicts from the replicas' observations only/);
      assert.doesNotMatch(text.stdout, /sending wrong replies/);
      const json = JSON.parse((await bfs(['status', '--dir', cluster.dir, '--json'])).stdout);
      assert.equal(json.relay.tried[0].url, stale);
      assert.equal(json.relayFaults, null);
    } finally {
      fs.writeFileSync(file, saved);
    }
  });

  it('loses the record when the relay closes', async () => {
    await cluster.relay.close();
    assert.equal(fs.existsSync(relayAddressFile(cluster.dir, 'relay-0')), false);
    const text = await bfs(['status', '--dir', cluster.dir]);
    // Nothing recorded: it tried the port bfs up gives the relay (another cluster's, or none).
    assert.match(
      text.stdout,
      /^no relay answers \(tried http:\/\/127\.0\.0\.1:7080 \(no relay recorded its address; the port bfs up gives it\): .+\): verdicts from the replicas' observations only/m,
    );
  });
});
