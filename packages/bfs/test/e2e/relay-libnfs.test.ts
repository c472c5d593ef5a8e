import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PageStore } from '@bfs/page-store';
import { Relay } from '../../src/relay';
import { BfsService } from '../../src/service/bfs-service';
import { execFileP, nfsUrl } from './helpers';

/**
 * The relay's translation (NFS call -> operation -> agreed result -> NFS reply) with a real
 * client, over a service executed directly in place of replication. The replicated path is the
 * same Relay with the PBFT client's invoke.
 */
describe('bfs relay: NFS calls forwarded as operations, with libnfs-utils', function () {
  this.timeout(60_000);
  let relay: Relay;
  let port: number;
  let service: BfsService;
  let tmp: string;
  const ops: { readOnly: boolean }[] = [];

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-relay-'));
    service = new BfsService(new PageStore({ size: 256 * 2 ** 20 }));
    relay = new Relay({
      invoke: async (op, readOnly) => {
        ops.push({ readOnly });
        return service.execute(op, 1, service.proposeNondet(Date.now()), readOnly);
      },
    });
    port = await relay.listen({ port: 0, host: '127.0.0.1' });
  });
  after(async () => {
    await relay.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('serves nfs-cp in and out byte for byte, and nfs-ls -R lists a tree', async () => {
    const data = randomBytes(200_000);
    const local = path.join(tmp, 'in.bin');
    fs.writeFileSync(local, data);
    await execFileP('nfs-cp', [local, nfsUrl(port, '//top.bin')]);
    const back = path.join(tmp, 'out.bin');
    await execFileP('nfs-cp', [nfsUrl(port, '//top.bin'), back]);
    assert.ok(fs.readFileSync(back).equals(data));
    const ls = await execFileP('nfs-ls', ['-R', nfsUrl(port, '/')]);
    assert.match(ls.stdout, /top\.bin/);
  });

  it('sends reading calls down the read-only path and writing ones through agreement', () => {
    assert.ok(
      ops.some((o) => o.readOnly),
      'READ/LOOKUP/GETATTR went read-only',
    );
    assert.ok(
      ops.some((o) => !o.readOnly),
      'CREATE/WRITE went read-write',
    );
    assert.equal(relay.stats.failed, 0);
  });

  it('answers with an RPC error, not a wrong result, when replication fails', async () => {
    const broken = new Relay({ invoke: () => Promise.reject(new Error('no quorum')) });
    const p = await broken.listen({ port: 0, host: '127.0.0.1' });
    try {
      await assert.rejects(execFileP('nfs-ls', [nfsUrl(p, '/')]));
      assert.ok(broken.stats.failed >= 1);
    } finally {
      await broken.close();
    }
  });
});
