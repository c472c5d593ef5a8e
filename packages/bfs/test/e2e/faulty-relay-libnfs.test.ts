import { strict as assert } from 'node:assert';
import { type ChildProcess, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { STATUS_PORT_OFFSET, initCluster } from '../../src/cluster/config';
import { freeConsecutivePorts } from '../../src/cluster/ports';
import { BFS_CLI, execFileP, nfsUrl, startBfs, stop } from './helpers';

/**
 * Aardvark's MAC attack (Clement et al., NSDI 2009, section 2) by a whole relay process:
 * `bfs relay --faulty-client partial-mac` seals each request so that its MACs check at the
 * primary and fail at f + 1 backups, its signature failing everywhere. Signed requests
 * (docs/pbft.md, "Defenses") must keep it from costing a view change, while a correct relay's
 * libnfs clients copy files throughout.
 */
const run = promisify(execFile);

interface LiveReplica {
  view: number;
  active: boolean;
  stats: Record<string, number>;
}

async function replicas(dir: string): Promise<(LiveReplica | undefined)[]> {
  const out = (await execFileP(process.execPath, [BFS_CLI, 'status', '--dir', dir, '--json']))
    .stdout;
  const s = JSON.parse(out) as { replicas: (LiveReplica | { error: string })[] };
  return s.replicas.map((r) => ('error' in r ? undefined : r));
}

describe('bfs cluster with a faulty relay (the MAC attack): no view change, the correct relay serves on', function () {
  this.timeout(240_000);

  it('a --faulty-client partial-mac relay under nfs-cp load next to a correct one: its requests are refused, views stay 0, every copy through the correct relay reads back', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-faulty-relay-'));
    const basePort = await freeConsecutivePorts(4, STATUS_PORT_OFFSET);
    await initCluster({ dir, replicas: 4, relays: 2, basePort, stateSize: 64 * 2 ** 20 });
    const children: ChildProcess[] = [];
    try {
      children.push(
        ...(await Promise.all(
          [0, 1, 2, 3].map((id) =>
            startBfs(
              ['replica', '--dir', dir, '--id', String(id)],
              60_000,
              /^ready replica (\d+)$/m,
            ).then((r) => r.child),
          ),
        )),
      );
      const good = await startBfs(['relay', '--dir', dir, '--port', '0'], 60_000);
      children.push(good.child);
      const bad = await startBfs(
        [
          'relay',
          '--dir',
          dir,
          '--name',
          'relay-1',
          '--port',
          '0',
          '--faulty-client',
          'partial-mac',
        ],
        60_000,
      );
      children.push(bad.child);

      // The faulty relay's clients keep trying; none of their calls can complete.
      let stopBad = false;
      let badDone = 0;
      const badLoad = (async () => {
        const local = path.join(dir, 'bad.bin');
        fs.writeFileSync(local, randomBytes(4096));
        for (let i = 0; !stopBad; i++)
          await run('nfs-cp', [local, nfsUrl(bad.port, `//bad-${i}.bin`)], { timeout: 3000 })
            .then(() => badDone++)
            .catch(() => undefined);
      })();

      const COPIES = 12;
      for (let i = 0; i < COPIES; i++) {
        const data = randomBytes(4096 + i);
        const local = path.join(dir, `in-${i}.bin`);
        const back = path.join(dir, `out-${i}.bin`);
        fs.writeFileSync(local, data);
        await execFileP('nfs-cp', [local, nfsUrl(good.port, `//f${i}.bin`)]);
        await execFileP('nfs-cp', [nfsUrl(good.port, `//f${i}.bin`), back]);
        assert.ok(fs.readFileSync(back).equals(data), `f${i}.bin read back differs`);
      }
      stopBad = true;
      await badLoad;
      assert.equal(badDone, 0, 'a copy through the faulty relay completed');

      const live = (await replicas(dir)).filter((r): r is LiveReplica => r !== undefined);
      assert.equal(live.length, 4);
      for (const r of live) assert.equal(r.view, 0, `a replica changed views: ${r.view}`);
      const sum = (k: string) => live.reduce((a, r) => a + (r.stats[k] ?? 0), 0);
      // The primary refused them on their signature; backups whose MAC failed dropped them.
      assert.ok(sum('requestSignatureBad') > 0, JSON.stringify(live.map((r) => r.stats)));
      assert.ok(sum('dropBadMac') > 0, 'backups saw the spoiled MACs');
      assert.equal(sum('viewChangeStarted'), 0);
    } finally {
      await Promise.all(children.map((c) => stop(c)));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
