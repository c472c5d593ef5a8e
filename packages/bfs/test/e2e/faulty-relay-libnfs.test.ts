import { strict as assert } from 'node:assert';
import { type ChildProcess, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { CONFIG_FILE, STATUS_PORT_OFFSET, initCluster } from '../../src/cluster/config';
import { freeConsecutivePorts } from '../../src/cluster/ports';
import { BFS_CLI, execFileP, nfsUrl, startBfs, stop } from './helpers';

/**
 * Faulty clients (Clement et al., NSDI 2009) as whole relay processes, `bfs relay
 * --faulty-client <mode>` next to a correct relay whose libnfs clients copy files throughout.
 * The MAC attack (partial-mac) seals each request so that its MACs check at the primary and fail
 * at f + 1 backups, its signature failing everywhere: signed requests (docs/pbft.md, "Defenses")
 * must keep it from costing a view change, and without them it does. bad-mac and bad-signature
 * requests are refused by everyone; a retransmitting relay re-sends its latest request to every
 * replica at every turn of its event loop, and the replicas stop reading it for a while.
 */
const run = promisify(execFile);

interface LiveReplica {
  view: number;
  active: boolean;
  stats: Record<string, number>;
  transport: Record<string, number>;
}

async function replicas(dir: string): Promise<(LiveReplica | undefined)[]> {
  const out = (await execFileP(process.execPath, [BFS_CLI, 'status', '--dir', dir, '--json']))
    .stdout;
  const s = JSON.parse(out) as { replicas: (LiveReplica | { error: string })[] };
  return s.replicas.map((r) => ('error' in r ? undefined : r));
}

describe('bfs cluster with a faulty relay: no view change caused by a client, the correct relay serves on', function () {
  this.timeout(240_000);

  /** Four replicas, a correct relay and one started with `--faulty-client mode`. */
  async function withCluster(
    mode: string,
    signatures: boolean,
    body: (dir: string, goodPort: number, badPort: number) => Promise<void>,
  ): Promise<void> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-faulty-relay-'));
    const basePort = await freeConsecutivePorts(4, STATUS_PORT_OFFSET);
    await initCluster({ dir, replicas: 4, relays: 2, basePort, stateSize: 64 * 2 ** 20 });
    if (!signatures) {
      const file = path.join(dir, CONFIG_FILE);
      const cfg = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
      fs.writeFileSync(file, JSON.stringify({ ...cfg, requestSignatures: false }, null, 2));
    }
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
        ['relay', '--dir', dir, '--name', 'relay-1', '--port', '0', '--faulty-client', mode],
        60_000,
      );
      children.push(bad.child);
      await body(dir, good.port, bad.port);
    } finally {
      await Promise.all(children.map((c) => stop(c)));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  /** nfs-cp through the faulty relay until stopped; resolves to the copies that completed. */
  function faultyLoad(dir: string, port: number): { stop: () => Promise<number> } {
    let stopped = false;
    let done = 0;
    const local = path.join(dir, 'bad.bin');
    fs.writeFileSync(local, randomBytes(4096));
    const loop = (async () => {
      for (let i = 0; !stopped; i++)
        await run('nfs-cp', [local, nfsUrl(port, `//bad-${i}.bin`)], { timeout: 3000 })
          .then(() => done++)
          .catch(() => undefined);
    })();
    return {
      stop: async () => {
        stopped = true;
        await loop;
        return done;
      },
    };
  }

  /** Copies through the correct relay, each read back and compared. */
  async function correctCopies(dir: string, port: number, copies: number): Promise<void> {
    for (let i = 0; i < copies; i++) {
      const data = randomBytes(4096 + i);
      const local = path.join(dir, `in-${i}.bin`);
      const back = path.join(dir, `out-${i}.bin`);
      fs.writeFileSync(local, data);
      await execFileP('nfs-cp', [local, nfsUrl(port, `//f${i}.bin`)]);
      await execFileP('nfs-cp', [nfsUrl(port, `//f${i}.bin`), back]);
      assert.ok(fs.readFileSync(back).equals(data), `f${i}.bin read back differs`);
    }
  }

  async function live(dir: string): Promise<LiveReplica[]> {
    const all = (await replicas(dir)).filter((r): r is LiveReplica => r !== undefined);
    assert.equal(all.length, 4);
    return all;
  }

  function sum(rs: LiveReplica[], k: string, part: 'stats' | 'transport' = 'stats'): number {
    return rs.reduce((a, r) => a + (r[part][k] ?? 0), 0);
  }

  const refusedModes: { mode: string; signatures: boolean; counters: string[]; why: string }[] = [
    {
      mode: 'partial-mac',
      signatures: true,
      // The primary refused them on their signature; backups whose MAC failed dropped them.
      counters: ['requestSignatureBad', 'dropBadMac'],
      why: 'its requests are refused on their signature',
    },
    {
      mode: 'bad-mac',
      signatures: true,
      counters: ['dropBadMac'],
      why: 'every replica drops its requests on their MACs',
    },
    {
      mode: 'bad-mac',
      signatures: false,
      counters: ['dropBadMac'],
      why: 'every replica drops its requests on their MACs, signatures or not',
    },
    {
      mode: 'bad-signature',
      signatures: true,
      counters: ['requestSignatureBad'],
      why: 'its requests, MACs valid, are refused on their signature',
    },
  ];
  for (const c of refusedModes)
    it(`a --faulty-client ${c.mode} relay (request signatures ${c.signatures ? 'on' : 'off'}) under nfs-cp load next to a correct one: ${c.why}, views stay 0, every copy through the correct relay reads back`, async () => {
      await withCluster(c.mode, c.signatures, async (dir, goodPort, badPort) => {
        const load = faultyLoad(dir, badPort);
        await correctCopies(dir, goodPort, 12);
        assert.equal(await load.stop(), 0, 'a copy through the faulty relay completed');
        const rs = await live(dir);
        const reasons = (r: LiveReplica) =>
          Object.entries(r.stats).filter(([k]) => k.startsWith('viewChange'));
        for (const r of rs)
          assert.equal(r.view, 0, `a replica changed views: ${JSON.stringify(rs.map(reasons))}`);
        for (const k of c.counters)
          assert.ok(sum(rs, k) > 0, `${k}: ${JSON.stringify(rs.map((r) => r.stats))}`);
        assert.equal(sum(rs, 'viewChangeStarted'), 0);
      });
    });

  it('a --faulty-client retransmit relay (its latest request to every replica at every turn of its event loop): the replicas throttle its connection, views stay 0, every copy through the correct relay reads back', async () => {
    await withCluster('retransmit', true, async (dir, goodPort, badPort) => {
      const load = faultyLoad(dir, badPort);
      await correctCopies(dir, goodPort, 12);
      await load.stop();
      const rs = await live(dir);
      for (const r of rs) assert.equal(r.view, 0, `a replica changed views: ${r.view}`);
      assert.ok(sum(rs, 'dropRetransmissionTooSoon') > 0, 'copies refused on their header');
      assert.ok(
        sum(rs, 'inputThrottled', 'transport') > 0,
        `no replica throttled it: ${JSON.stringify(rs.map((r) => r.transport))}`,
      );
      assert.equal(sum(rs, 'viewChangeStarted'), 0);
    });
  });

  it('without request signatures the MAC attack works: a --faulty-client partial-mac relay makes the replicas change views (why signatures are on by default)', async () => {
    await withCluster('partial-mac', false, async (dir, _goodPort, badPort) => {
      const load = faultyLoad(dir, badPort);
      try {
        const deadline = Date.now() + 60_000;
        let views = 0;
        while (views === 0 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 1000));
          views = sum(await live(dir), 'viewChangeStarted');
        }
        assert.ok(views > 0, 'no view change within 60 s');
      } finally {
        await load.stop();
      }
    });
  });
});
