import { strict as assert } from 'node:assert';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Nfs3Client, RpcClient, authSys } from 'nfs-server-ts';
import { type Browser, chromium } from 'playwright-core';
import { initCluster } from '../../src/cluster/config';
import { freeConsecutivePorts } from '../../src/cluster/ports';
import {
  type RunningRelay,
  type RunningReplica,
  startRelay,
  startReplica,
} from '../../src/cluster/node';
import { takeStatus } from '../../src/cluster/status-command';
import { BFS_CLI, startBfs } from './helpers';

/** Debian's chromium (`apt-get install chromium`; .ci/run installs it). */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SCREENSHOT_DIR = path.resolve(__dirname, '../../../../test-output');
const BROWSER_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** A fresh four-replica cluster directory on free ports. */
async function newCluster(prefix: string): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  await initCluster({
    dir,
    replicas: 4,
    basePort: await freeConsecutivePorts(4, 100),
    stateSize: 32 * 2 ** 20,
  });
  return dir;
}

function launchBrowser(): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: apt-get install chromium (or set CHROMIUM_PATH)`);
  }
  return chromium.launch({ executablePath: CHROMIUM, args: BROWSER_ARGS });
}

describe('relay status page in a real headless browser', function () {
  this.timeout(120_000);
  let dir: string;
  let replicas: RunningReplica[] = [];
  let relay: RunningRelay;
  let browser: Browser;

  before(async () => {
    dir = await newCluster('bfs-page-');
    replicas = await Promise.all([0, 1, 2, 3].map((id) => startReplica({ dir, id })));
    relay = await startRelay({ dir, port: 0, httpPort: 0 });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await relay?.close();
    await Promise.all(replicas.map((r) => r.close().catch(() => undefined)));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('shows every replica, the primary and agreeing digests, and follows a replica going down live', async () => {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${relay.httpPort}/`);
    const state = (i: number) => page.locator(`tr[data-replica="${i}"] td:nth-child(3)`);
    for (let i = 0; i < 4; i++)
      await assert.doesNotReject(state(i).filter({ hasText: 'up' }).waitFor());
    const banner = page.locator('#banner');
    await banner.filter({ hasText: 'digests agree' }).waitFor();
    assert.match((await banner.textContent()) ?? '', /primary is replica 0/);
    assert.equal(
      await page.locator('tr[data-replica="0"] td:nth-child(5)').textContent(),
      'primary',
    );
    fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
    const shot = path.join(SCREENSHOT_DIR, 'status-page.png');
    await page.screenshot({ path: shot });
    console.log(`      screenshot: ${shot}`);
    assert.ok(fs.statSync(shot).size > 1000);

    await replicas[3].close();
    await state(3).filter({ hasText: 'down' }).waitFor({ timeout: 10_000 });
    await banner.filter({ hasText: '1 of 4 down' }).waitFor();
    assert.match((await banner.getAttribute('class')) ?? '', /\bok\b/, 'one down is within f');
  });
});

describe('status page: a lying replica and a killed one are named (headless browser)', function () {
  this.timeout(180_000);
  let dir: string;
  let replicas: RunningReplica[] = [];
  let killed: ChildProcess | undefined;
  let relay: RunningRelay;
  let browser: Browser;

  before(async () => {
    dir = await newCluster('bfs-page-faults-');
    // Replica 3 is a process of its own, to be killed with SIGKILL; replica 2 lies.
    const three = await startBfs(
      ['replica', '--dir', dir, '--id', '3'],
      30_000,
      /^ready replica (\d+)$/m,
    );
    killed = three.child;
    replicas = await Promise.all(
      [0, 1, 2].map((id) => startReplica({ dir, id, byzantine: id === 2 ? 'lie' : undefined })),
    );
    relay = await startRelay({ dir, port: 0, httpPort: 0 });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await relay?.close();
    killed?.kill('SIGKILL');
    await Promise.all(replicas.map((r) => r.close().catch(() => undefined)));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('names replica 2 as faulty and replica 3 as down, charts the calls, and bfs status --json / --watch say the same', async () => {
    const origin = `http://127.0.0.1:${relay.httpPort}`;
    const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
    const foreign: string[] = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(origin)) foreign.push(r.url());
    });
    await page.goto(`${origin}/`);
    await page.locator('#banner').filter({ hasText: 'digests agree' }).waitFor();

    // Work through the relay while all four run: the liar's replies, commits and checkpoints.
    const rpc = await RpcClient.connect({ port: relay.port });
    try {
      const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
      const root = await nfs.mount('/');
      for (let i = 0; i < 30; i++) {
        const { handle } = await nfs.create(root, `f${i}`);
        await nfs.writeAll(handle, randomBytes(800));
      }
      // Calls in a second second too: a chart line needs two points (with the write-back
      // buffer the loop above can fit in one).
      await new Promise((r) => setTimeout(r, 1100));
      for (let i = 0; i < 5; i++) await nfs.create(root, `g${i}`);
    } finally {
      rpc.close();
    }
    const verdict = (replica: number, kind: string) =>
      page.locator(`#verdicts li[data-replica="${replica}"][data-kind="${kind}"]`);
    await verdict(2, 'wrongReply').waitFor({ timeout: 15_000 });
    await verdict(2, 'digestMismatch').waitFor({ timeout: 15_000 });
    assert.match(
      (await verdict(2, 'wrongReply').textContent()) ?? '',
      /^replica 2 is sending wrong replies: \d+ in the last 60 s, seen by relay/,
    );
    // The charts drew the calls (once the second they were in has passed).
    await page.locator('#ops path[data-series="ops"]').waitFor();
    await page.locator('#latency path[data-series="p50"]').waitFor();
    // The write-back charts: the 30 files' UNSTABLE WRITEs answered by the relay, and flushed.
    await page.locator('#wb-ops path[data-series="buffered"]').waitFor();
    await page.locator('#wb-bytes path[data-series="flushed"]').waitFor();
    assert.match(
      (await page.locator('#wb-now').textContent()) ?? '',
      /^now [\d.]+ KiB held for \d+ file/,
    );
    const view = (await (await fetch(`${origin}/api/status`)).json()) as {
      writeBack: { buffered: number; flushes: number }[];
    };
    assert.ok(
      view.writeBack.some((p) => p.buffered > 0) && view.writeBack.some((p) => p.flushes > 0),
      JSON.stringify(view.writeBack),
    );
    for (const proc of ['CREATE', 'MOUNT MNT'])
      await page.locator(`#procedures tr[data-procedure="${proc}"]`).waitFor();

    killed!.kill('SIGKILL');
    await verdict(3, 'down').waitFor({ timeout: 15_000 });
    await page
      .locator('tr[data-replica="3"] td:nth-child(3)')
      .filter({ hasText: 'down' })
      .waitFor();
    await page
      .locator('#event-rows tr[data-kind="down"]')
      .filter({ hasText: 'replica 3' })
      .waitFor();
    await page
      .locator('#event-rows tr[data-kind="verdict"]')
      .filter({ hasText: 'replica 2' })
      .first()
      .waitFor();
    const banner = page.locator('#banner');
    await banner.filter({ hasText: 'FAULTY: replica 2' }).waitFor();
    assert.match((await banner.getAttribute('class')) ?? '', /\bbad\b/);
    const faultCell = page.locator('#faults tr[data-target="2"] td:nth-child(2)');
    assert.match((await faultCell.getAttribute('class')) ?? '', /\bhot\b/);
    assert.ok(Number(await faultCell.textContent()) > 0);
    for (const honest of [0, 1])
      assert.equal(await page.locator(`#verdicts li[data-replica="${honest}"]`).count(), 0);
    assert.ok((await page.locator('#checkpoints tr[data-seq]').count()) > 0);

    fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
    const shot = path.join(SCREENSHOT_DIR, 'status-page-faults.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`      screenshot: ${shot}`);
    assert.ok(fs.statSync(shot).size > 1000);
    assert.deepEqual(foreign, [], 'the page fetches nothing but from the relay');

    // bfs status --json through the relay carries the same verdicts.
    const s = await takeStatus(dir, origin);
    const kinds = s.verdicts.map((v) => `${v.replica}:${v.kind}`);
    assert.ok(kinds.includes('2:wrongReply') && kinds.includes('3:down'), kinds.join(' '));
    assert.ok(s.relayFaults && s.relayFaults.recent[2]!.wrongReply > 0);

    // bfs status --watch redraws with them every second.
    const watch = spawn(
      process.execPath,
      [BFS_CLI, 'status', '--dir', dir, '--watch', '--relay', origin],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    watch.stdout.on('data', (d) => (out += d));
    await new Promise((r) => setTimeout(r, 2600));
    watch.kill('SIGTERM');
    const snapshots = out.split('checkpoint digests').length - 1;
    assert.ok(snapshots >= 2, `${snapshots} snapshots:\n${out}`);
    assert.match(out, /FAULTY: replica 2 is sending wrong replies/);
    assert.match(out, /^3 +\S+ +down/m);
  });
});
