import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { mulberry32 } from '@bfs/pbft';
import {
  type Attributes,
  type FileHandle,
  MemoryFileSystem,
  Nfs3Client,
  NfsError,
  NfsServer,
  RpcClient,
  authSys,
} from 'nfs-server-ts';
import { initCluster } from '../../src/cluster/config';
import {
  type RunningRelay,
  type RunningReplica,
  startRelay,
  startReplica,
} from '../../src/cluster/node';
import { freeConsecutivePorts } from '../../src/cluster/ports';

/** What is compared: statuses and contents, never times, file ids or handle bytes. */
type Outcome = string;

function attrs(a: Attributes | undefined): string {
  if (!a) return 'no-attrs';
  return `type=${a.type} mode=${a.mode.toString(8)} nlink=${a.nlink} size=${a.type === 2 ? '-' : a.size}`;
}

async function outcome(p: Promise<string>): Promise<Outcome> {
  try {
    return `ok ${await p}`;
  } catch (e) {
    if (e instanceof NfsError) return `err ${e.status}`;
    throw e;
  }
}

/** One side of the comparison: a client and the handles of the names it created. */
class Side {
  readonly handles = new Map<string, FileHandle>();
  constructor(
    readonly nfs: Nfs3Client,
    readonly root: FileHandle,
  ) {
    this.handles.set('', root);
  }
  dir(name: string): FileHandle {
    return this.handles.get(name) ?? this.root;
  }
}

const NAMES = ['a', 'b', 'c', 'd/x', 'd/y', 'e'];

async function step(
  s: Side,
  op: number,
  r: { name: string; other: string; n: number; off: number },
): Promise<Outcome> {
  const parentOf = (name: string) => (name.includes('/') ? s.dir(name.split('/')[0]) : s.root);
  const leaf = (name: string) => name.split('/').pop()!;
  const fh = () => s.handles.get(r.name) ?? s.root;
  const nfs = s.nfs;
  switch (op) {
    case 0:
      return outcome(
        nfs
          .create(parentOf(r.name), leaf(r.name), { mode: 'guarded', attributes: { mode: 0o640 } })
          .then((c) => {
            s.handles.set(r.name, c.handle);
            return attrs(c.attributes);
          }),
      );
    case 1:
      return outcome(
        nfs.mkdir(parentOf(r.name), leaf(r.name), { mode: 0o750 }).then((c) => {
          s.handles.set(r.name, c.handle);
          return attrs(c.attributes);
        }),
      );
    case 2: {
      const data = Buffer.alloc(r.n, r.name.charCodeAt(0) + r.off);
      return outcome(nfs.write(fh(), r.off, data).then((w) => `count=${w.count}`));
    }
    case 3:
      return outcome(
        nfs
          .read(fh(), r.off, r.n)
          .then((x) => `${Buffer.from(x.data).toString('hex')} eof=${x.eof}`),
      );
    case 4:
      return outcome(nfs.remove(parentOf(r.name), leaf(r.name)).then(() => ''));
    case 5:
      return outcome(nfs.rmdir(parentOf(r.name), leaf(r.name)).then(() => ''));
    case 6:
      return outcome(
        nfs.rename(parentOf(r.name), leaf(r.name), parentOf(r.other), leaf(r.other)).then(() => {
          const h = s.handles.get(r.name);
          if (h) s.handles.set(r.other, h);
          return '';
        }),
      );
    case 7:
      return outcome(nfs.lookup(parentOf(r.name), leaf(r.name)).then((l) => attrs(l.attributes)));
    case 8:
      return outcome(nfs.getattr(fh()).then(attrs));
    case 9:
      return outcome(nfs.setattr(fh(), { size: r.off }).then(() => ''));
    case 10:
      return outcome(
        nfs.listAll(s.root).then((es) =>
          es
            .map((e) => `${e.name}:${attrs(e.attributes)}`)
            .sort()
            .join(','),
        ),
      );
    case 11:
      return outcome(nfs.link(fh(), parentOf(r.other), leaf(r.other)).then(() => ''));
    default:
      return outcome(
        nfs.symlink(parentOf(r.name), leaf(r.name), `target-${r.off}`).then(async (c) => {
          s.handles.set(r.name, c.handle);
          return nfs.readlink(c.handle);
        }),
      );
  }
}

describe('bfs cluster vs the in-memory reference server: same NFS calls, same replies', function () {
  this.timeout(180_000);
  let dir: string;
  let replicas: RunningReplica[] = [];
  let relay: RunningRelay;
  let reference: NfsServer;
  const clients: RpcClient[] = [];

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-diff-'));
    await initCluster({
      dir,
      replicas: 4,
      basePort: await freeConsecutivePorts(4, 100),
      stateSize: 64 * 2 ** 20,
    });
    replicas = await Promise.all([0, 1, 2, 3].map((id) => startReplica({ dir, id })));
    relay = await startRelay({ dir, port: 0 });
    // The replicas' root (1777) and their permission checks, so replies can match.
    reference = new NfsServer({
      fs: new MemoryFileSystem({ rootMode: 0o1777 }),
      export: { checkPermissions: true },
    });
  });
  after(async () => {
    for (const c of clients) c.close();
    await relay?.close();
    await Promise.all(replicas.map((r) => r.close()));
    await reference?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const seed of [1, 2, 3]) {
    it(`agrees on every reply of a random sequence of 120 calls (seed ${seed})`, async () => {
      const refPort = await reference.listen({ port: 0, host: '127.0.0.1' });
      const sides: Side[] = [];
      for (const port of [relay.port, refPort]) {
        const rpc = await RpcClient.connect({ port });
        clients.push(rpc);
        const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
        const root = await nfs.mount('/');
        const { handle } = await nfs.mkdir(root, `seed-${seed}`);
        sides.push(new Side(nfs, handle));
      }
      const rand = mulberry32(seed);
      const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
      const seen = { ok: 0, err: 0 };
      for (let i = 0; i < 120; i++) {
        const op = Math.floor(rand() * 13);
        const r = {
          name: pick(NAMES),
          other: pick(NAMES),
          n: Math.floor(rand() * 9000),
          off: Math.floor(rand() * 6000),
        };
        const [got, want] = [await step(sides[0], op, r), await step(sides[1], op, r)];
        assert.equal(got, want, `seed ${seed}, call ${i}: op ${op} ${JSON.stringify(r)}`);
        seen[got.startsWith('ok') ? 'ok' : 'err']++;
      }
      // Both successes and NFS errors were compared, not just one kind.
      assert.ok(seen.ok >= 30 && seen.err >= 10, JSON.stringify(seen));
    });
  }

  it('persists every stable checkpoint to LevelDB on every replica', async () => {
    for (const r of replicas) {
      assert.ok(r.replica.lowWater >= 128, `replica ${r.replica.id} reached a checkpoint`);
      await r.store.flush();
      assert.equal(r.store.persistedSeq, r.replica.lowWater, `replica ${r.replica.id}`);
    }
  });
});
