import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { initCluster } from '../../src/cluster/config';
import { freeConsecutivePorts } from '../../src/cluster/ports';
import {
  type RunningRelay,
  type RunningReplica,
  startRelay,
  startReplica,
} from '../../src/cluster/node';

/** Debian's chromium (`apt-get install chromium`; .ci/run installs it). */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SCREENSHOT_DIR = path.resolve(__dirname, '../../../../test-output');

describe('relay status page in a real headless browser', function () {
  this.timeout(120_000);
  let dir: string;
  let replicas: RunningReplica[] = [];
  let relay: RunningRelay;
  let browser: Browser;

  before(async () => {
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} not found: apt-get install chromium (or set CHROMIUM_PATH)`);
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-page-'));
    await initCluster({
      dir,
      replicas: 4,
      basePort: await freeConsecutivePorts(4, 100),
      stateSize: 32 * 2 ** 20,
    });
    replicas = await Promise.all([0, 1, 2, 3].map((id) => startReplica({ dir, id })));
    relay = await startRelay({ dir, port: 0, httpPort: 0 });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
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
