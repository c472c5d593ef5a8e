import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type ByzantineMode, FAULT_KINDS, type FaultKind } from '@bfs/pbft';
import { Nfs3Client, RpcClient, authSys } from 'nfs-server-ts';
import { initCluster } from '../../src/cluster/config';
import { startRelay, startReplica } from '../../src/cluster/node';
import { freeConsecutivePorts } from '../../src/cluster/ports';
import { converged } from './helpers';

/**
 * One replica lies or stays silent; clients must still get correct answers (OSDI 1999 section
 * 4: f + 1 matching replies, 2f + 1 tentative or read-only ones, certificates of 2f + 1).
 */
const STATE = 32 * 2 ** 20;

describe('bfs cluster with one Byzantine replica: clients still get correct answers', function () {
  this.timeout(120_000);
  const cases: [number, ByzantineMode, string][] = [
    [2, 'lie', 'a backup lying in replies, prepares, commits and checkpoints'],
    [0, 'wrong-replies', 'the primary sending wrong results'],
    [3, 'silent', 'a silent backup'],
  ];
  for (const [id, mode, what] of cases) {
    it(`with ${what} (replica ${id}, --byzantine ${mode})`, async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-byz-'));
      const base = await freeConsecutivePorts(4, 100);
      await initCluster({ dir, replicas: 4, basePort: base, stateSize: STATE });
      const replicas = await Promise.all(
        [0, 1, 2, 3].map((i) =>
          startReplica({ dir, id: i, byzantine: i === id ? mode : undefined }),
        ),
      );
      const relay = await startRelay({ dir, port: 0 });
      const rpc = await RpcClient.connect({ port: relay.port });
      try {
        const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
        const root = await nfs.mount('/');
        const written = new Map<string, Buffer>();
        for (let i = 0; i < 40; i++) {
          const data = randomBytes(500 + i * 50);
          const { handle } = await nfs.create(root, `f${i}`);
          await nfs.writeAll(handle, data);
          written.set(`f${i}`, data);
        }
        for (const [name, data] of written) {
          const { handle } = await nfs.lookup(root, name);
          assert.ok(Buffer.from(await nfs.readAll(handle)).equals(data), name);
        }
        // The honest replicas converge to byte-identical state.
        const honest = replicas.filter((r) => r.replica.id !== id);
        await converged(honest);
        const states = honest.map((r) => Buffer.from(r.service.state.read(0, STATE)));
        for (const st of states.slice(1)) assert.ok(st.equals(states[0]), 'honest replicas differ');
        const lies = (replicas[id].node.transport as { lies?: number }).lies ?? 0;
        assert.ok(lies > 0, 'the Byzantine replica did misbehave');
        // Fault attribution: the relay and the honest replicas blame the liar and no one else.
        const seen = [
          { who: 'relay', faults: relay.client.faults },
          ...honest.map((r) => ({
            who: `replica ${r.replica.id}`,
            faults: r.replica.faults.snapshot(),
          })),
        ];
        for (const { who, faults } of seen)
          for (const h of honest.map((r) => r.replica.id))
            for (const k of FAULT_KINDS)
              assert.equal(faults[h]![k], 0, `${who} blames honest replica ${h}: ${k}`);
        const blamed = (k: FaultKind) => seen.reduce((a, s) => a + s.faults[id]![k], 0);
        if (mode !== 'silent') assert.ok(blamed('wrongReply') > 0, 'wrong replies seen');
        if (mode === 'lie') assert.ok(blamed('digestMismatch') > 0, 'wrong digests seen');
      } finally {
        rpc.close();
        await relay.close();
        await Promise.all(replicas.map((r) => r.close()));
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
