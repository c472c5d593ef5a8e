import { strict as assert } from 'node:assert';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { NfsStatus } from '../src/filesystem';
import { Nfs3Proc } from '../src/nfs3';
import { MOUNT_PROGRAM, NFS_PROGRAM } from '../src/programs';
import { AuthStat, RpcError, type OpaqueAuth, decodeReply, encodeCall } from '../src/rpc';
import { PortmapClient, RpcClient, authSys } from '../src/client';
import { NfsServer } from '../src/nfs-server';
import { IPPROTO_TCP, IPPROTO_UDP } from '../src/portmap';
import { XdrReader, XdrWriter } from '../src/xdr';
import { type Harness, client3, startServer } from './helpers';

/** Wall-clock bound of the fuzz test; it also stops after FUZZ_MAX_INPUTS. */
const FUZZ_BUDGET_MS = 4000;
const FUZZ_MAX_INPUTS = 100_000;

function record(msg: Uint8Array, last = true): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(((last ? 0x80000000 : 0) | msg.length) >>> 0);
  return Buffer.concat([h, msg]);
}

/** A raw TCP connection that collects reply records. */
async function rawTcp(port: number) {
  const sock = net.connect({ port, host: '127.0.0.1' });
  await new Promise((r) => sock.once('connect', r));
  let buf = Buffer.alloc(0);
  const replies: Uint8Array[] = [];
  const waiters: (() => void)[] = [];
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 4) {
      const len = buf.readUInt32BE(0) & 0x7fffffff;
      if (buf.length < 4 + len) break;
      replies.push(buf.subarray(4, 4 + len));
      buf = buf.subarray(4 + len);
      waiters.splice(0).forEach((w) => w());
    }
  });
  sock.on('error', () => {});
  return {
    sock,
    replies,
    async next(): Promise<Uint8Array> {
      while (replies.length === 0) await new Promise<void>((r) => waiters.push(r));
      return replies.shift()!;
    },
  };
}

const cred: OpaqueAuth = authSys(1000, 1000);

describe('RPC errors for unknown and malformed calls', () => {
  let h: Harness;
  let rpc: RpcClient;
  before(async () => {
    h = await startServer();
    rpc = await RpcClient.connect({ port: h.port });
  });
  after(async () => {
    rpc.close();
    await h.close();
  });

  const rejection = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (e) {
      if (e instanceof RpcError) return e.reply;
      throw e;
    }
    throw new Error('expected an RPC error');
  };

  it('answers PROG_UNAVAIL for an unknown program', async () => {
    assert.deepEqual(await rejection(rpc.call(100021, 4, 0, new Uint8Array(0))), {
      kind: 'prog_unavail',
    });
  });

  it('answers PROG_MISMATCH with the supported range for NFSv4 and MOUNT v2', async () => {
    assert.deepEqual(await rejection(rpc.call(NFS_PROGRAM, 4, 0, new Uint8Array(0))), {
      kind: 'prog_mismatch',
      low: 2,
      high: 3,
    });
    assert.deepEqual(await rejection(rpc.call(MOUNT_PROGRAM, 2, 0, new Uint8Array(0))), {
      kind: 'prog_mismatch',
      low: 1,
      high: 3,
    });
  });

  it('answers PROC_UNAVAIL for procedure numbers past the last one', async () => {
    assert.deepEqual(await rejection(rpc.call(NFS_PROGRAM, 3, 22, new Uint8Array(0))), {
      kind: 'proc_unavail',
    });
    assert.deepEqual(await rejection(rpc.call(NFS_PROGRAM, 2, 18, new Uint8Array(0))), {
      kind: 'proc_unavail',
    });
  });

  it('answers GARBAGE_ARGS to truncated arguments, huge lengths and trailing bytes', async () => {
    const garbage = { kind: 'garbage_args' };
    assert.deepEqual(
      await rejection(rpc.call(NFS_PROGRAM, 3, Nfs3Proc.GETATTR, Uint8Array.of(0, 0, 0, 8))),
      garbage,
    );
    const huge = new XdrWriter().u32(0xffffffff).bytes();
    assert.deepEqual(await rejection(rpc.call(NFS_PROGRAM, 3, Nfs3Proc.GETATTR, huge)), garbage);
    const fh65 = new XdrWriter().opaque(new Uint8Array(65)).bytes();
    assert.deepEqual(await rejection(rpc.call(NFS_PROGRAM, 3, Nfs3Proc.GETATTR, fh65)), garbage);
    const trailing = new XdrWriter().opaque(h.fs.root()).u32(1).bytes();
    assert.deepEqual(
      await rejection(rpc.call(NFS_PROGRAM, 3, Nfs3Proc.GETATTR, trailing)),
      garbage,
    );
    const bigWrite = new XdrWriter()
      .opaque(h.fs.root())
      .u64(0)
      .u32(4)
      .u32(0)
      .u32(0x7fffffff)
      .bytes();
    assert.deepEqual(await rejection(rpc.call(NFS_PROGRAM, 3, Nfs3Proc.WRITE, bigWrite)), garbage);
  });

  it('answers AUTH_ERROR: BADCRED for malformed AUTH_SYS, TOOWEAK for unsupported flavors', async () => {
    const bad = { flavor: 1, body: Uint8Array.of(0, 0, 0, 1) };
    assert.deepEqual(await rejection(rpc.call(NFS_PROGRAM, 3, 0, new Uint8Array(0), bad)), {
      kind: 'auth_error',
      stat: AuthStat.BADCRED,
    });
    const gss = { flavor: 6, body: new Uint8Array(8) };
    assert.deepEqual(await rejection(rpc.call(NFS_PROGRAM, 3, 0, new Uint8Array(0), gss)), {
      kind: 'auth_error',
      stat: AuthStat.TOOWEAK,
    });
  });

  it('answers RPC_MISMATCH to RPC version 3', async () => {
    const msg = new XdrWriter().u32(77).u32(0).u32(3).u32(NFS_PROGRAM).u32(3).u32(0);
    msg.u32(0).u32(0).u32(0).u32(0);
    const t = await rawTcp(h.port);
    t.sock.write(record(msg.bytes()));
    assert.deepEqual(decodeReply(await t.next()), {
      xid: 77,
      ok: false,
      error: { kind: 'rpc_mismatch', low: 2, high: 2 },
    });
    t.sock.destroy();
  });

  it('NFS-level bad handles are NFS errors (BADHANDLE, STALE), not RPC errors', async () => {
    const c = await client3(h.port);
    try {
      const r = new XdrReader(
        await c.rpc.call(
          NFS_PROGRAM,
          3,
          Nfs3Proc.GETATTR,
          new XdrWriter().opaque(Uint8Array.of(1, 2, 3)).bytes(),
          cred,
        ),
      );
      assert.equal(r.u32(), NfsStatus.BADHANDLE);
    } finally {
      c.rpc.close();
    }
  });
});

describe('portmapper on the NFS port', () => {
  it('GETPORT finds every program and version on TCP and UDP; DUMP lists them; SET/UNSET work from loopback', async () => {
    const h = await startServer();
    const rpc = await RpcClient.connect({ port: h.port, transport: 'udp' });
    try {
      const pm = new PortmapClient(rpc);
      for (const proto of [IPPROTO_TCP, IPPROTO_UDP]) {
        assert.equal(await pm.getport(NFS_PROGRAM, 3, proto), h.port);
        assert.equal(await pm.getport(NFS_PROGRAM, 2, proto), h.port);
        assert.equal(await pm.getport(MOUNT_PROGRAM, 1, proto), h.port);
        assert.equal(await pm.getport(MOUNT_PROGRAM, 3, proto), h.port);
      }
      assert.equal(await pm.getport(100021, 4, IPPROTO_TCP), 0);
      assert.equal((await pm.dump()).length, 10);
      assert.equal(
        await pm.set({ program: 400000, version: 1, protocol: IPPROTO_TCP, port: 999 }),
        true,
      );
      assert.equal(
        await pm.set({ program: 400000, version: 1, protocol: IPPROTO_TCP, port: 998 }),
        false,
      );
      assert.equal(await pm.getport(400000, 1, IPPROTO_TCP), 999);
      assert.equal(await pm.unset(400000, 1), true);
      assert.equal(await pm.getport(400000, 1, IPPROTO_TCP), 0);
    } finally {
      rpc.close();
      await h.close();
    }
  });
});

describe('TCP transport limits', () => {
  let h: Harness;
  before(async () => {
    h = await startServer({ maxRecordSize: 4096 });
  });
  after(() => h.close());

  it('accepts a call split over several fragments', async () => {
    const t = await rawTcp(h.port);
    const msg = encodeCall(5, NFS_PROGRAM, 3, 0, new Uint8Array(0));
    t.sock.write(
      Buffer.concat([
        record(msg.subarray(0, 10), false),
        record(msg.subarray(10, 11), false),
        record(msg.subarray(11)),
      ]),
    );
    const reply = decodeReply(await t.next());
    assert.equal(reply.ok, true);
    assert.equal(reply.xid, 5);
    t.sock.destroy();
  });

  it('answers an oversized record with GARBAGE_ARGS without buffering it, and keeps the connection', async () => {
    const t = await rawTcp(h.port);
    const big = encodeCall(6, NFS_PROGRAM, 3, Nfs3Proc.WRITE, new Uint8Array(100_000));
    t.sock.write(record(big));
    const r1 = decodeReply(await t.next());
    assert.deepEqual(r1, { xid: 6, ok: false, error: { kind: 'garbage_args' } });
    t.sock.write(record(encodeCall(7, NFS_PROGRAM, 3, 0, new Uint8Array(0))));
    assert.equal(decodeReply(await t.next()).xid, 7);
    assert.equal(h.server.rpc.stats.oversizedRecords, 1);
    t.sock.destroy();
  });

  it('serves several connections at once', async () => {
    const clients = await Promise.all([1, 2, 3, 4].map(() => client3(h.port)));
    try {
      await Promise.all(
        clients.map((c) => Promise.all([c.null(), c.getattr(h.fs.root()), c.null()])),
      );
    } finally {
      clients.forEach((c) => c.rpc.close());
    }
  });
});

describe('duplicate-request cache', () => {
  for (const transport of ['tcp', 'udp'] as const) {
    it(`answers a retransmitted CREATE GUARDED and REMOVE from the cache over ${transport}`, async () => {
      const h = await startServer();
      const rpc = await RpcClient.connect({ port: h.port, transport });
      try {
        const args = new XdrWriter().opaque(h.fs.root()).string('once').u32(1);
        // sattr3 with nothing set
        args.u32(0).u32(0).u32(0).u32(0).u32(0).u32(0);
        const xid = rpc.nextXid();
        const msg = encodeCall(xid, NFS_PROGRAM, 3, Nfs3Proc.CREATE, args.bytes(), cred);
        const first = await rpc.callRaw(msg);
        const again = await rpc.callRaw(msg);
        assert.equal(new XdrReader(first).u32(), NfsStatus.OK);
        assert.deepEqual(again, first, 'the retransmission gets the cached reply, not EXIST');
        // A new xid is a new call: now it is EXIST.
        const fresh = await rpc.call(NFS_PROGRAM, 3, Nfs3Proc.CREATE, args.bytes(), cred);
        assert.equal(new XdrReader(fresh).u32(), NfsStatus.EXIST);
        const rm = encodeCall(
          rpc.nextXid(),
          NFS_PROGRAM,
          3,
          Nfs3Proc.REMOVE,
          new XdrWriter().opaque(h.fs.root()).string('once').bytes(),
          cred,
        );
        assert.equal(new XdrReader(await rpc.callRaw(rm)).u32(), NfsStatus.OK);
        assert.equal(new XdrReader(await rpc.callRaw(rm)).u32(), NfsStatus.OK);
        assert.ok(h.server.rpc.stats.drcHits >= 2);
      } finally {
        rpc.close();
        await h.close();
      }
    });
  }
});

describe('pluggable call handlers (what a relay uses)', () => {
  it('routes NFS calls to an async handler that may answer bytes or an RpcError', async () => {
    const h = await startServer();
    const seen: number[] = [];
    h.server.rpc.setHandler(NFS_PROGRAM, 3, async (call) => {
      seen.push(call.procedure);
      assert.equal(call.authSys?.uid, 1000);
      if (call.procedure === 0) return new Uint8Array(0);
      return new RpcError({ kind: 'system_err' });
    });
    const rpc = await RpcClient.connect({ port: h.port });
    try {
      await rpc.call(NFS_PROGRAM, 3, 0, new Uint8Array(0), cred);
      await assert.rejects(rpc.call(NFS_PROGRAM, 3, 1, new Uint8Array(0), cred), /system_err/);
      assert.deepEqual(seen, [0, 1]);
    } finally {
      rpc.close();
      await h.close();
    }
  });

  it('a server without a local backend serves the portmapper and only the handlers it is given', async () => {
    const server = new NfsServer({});
    const port = await server.listen({ port: 0 });
    const rpc = await RpcClient.connect({ port });
    try {
      const pm = new PortmapClient(rpc);
      assert.equal(await pm.getport(NFS_PROGRAM, 3, IPPROTO_TCP), port);
      await assert.rejects(rpc.call(NFS_PROGRAM, 3, 0, new Uint8Array(0)), /prog_unavail/);
      server.rpc.setHandler(MOUNT_PROGRAM, 3, async () => new XdrWriter().u32(13).bytes());
      const r = new XdrReader(
        await rpc.call(MOUNT_PROGRAM, 3, 1, new XdrWriter().string('/').bytes()),
      );
      assert.equal(r.u32(), 13);
    } finally {
      rpc.close();
      await server.close();
    }
  });

  it('a global handler takes programs no specific handler serves; a throwing handler is SYSTEM_ERR', async () => {
    const h = await startServer();
    h.server.rpc.setGlobalHandler(() => {
      throw new Error('boom');
    });
    const rpc = await RpcClient.connect({ port: h.port });
    try {
      await assert.rejects(rpc.call(300000, 1, 0, new Uint8Array(0)), /system_err/);
      assert.equal(h.server.rpc.stats.handlerErrors, 1);
    } finally {
      rpc.close();
      await h.close();
    }
  });
});

/** xorshift32: a seeded generator so a failing fuzz run can be replayed. */
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

describe('fuzz: random and mutated packets against a live server', function () {
  this.timeout(30_000);

  it(`survives up to ${FUZZ_MAX_INPUTS} hostile inputs in ${FUZZ_BUDGET_MS} ms over TCP and UDP and still serves`, async () => {
    const h = await startServer();
    const rand = rng(0xc0ffee);
    const root = h.fs.root();
    // Valid calls for every NFSv3 and MOUNT procedure, to be mutated.
    const seeds: Uint8Array[] = [];
    for (let p = 0; p <= 21; p++) {
      const w = new XdrWriter()
        .opaque(root)
        .string('name')
        .u64(0)
        .u32(4096)
        .u32(0)
        .opaque(Uint8Array.of(1, 2, 3));
      seeds.push(encodeCall(p, NFS_PROGRAM, 3, p, w.bytes(), cred));
      seeds.push(encodeCall(p, NFS_PROGRAM, 2, p % 18, new Uint8Array(40), cred));
    }
    for (let p = 0; p <= 6; p++)
      seeds.push(encodeCall(p, MOUNT_PROGRAM, 3, p, new XdrWriter().string('/').bytes()));
    const mutate = (m: Uint8Array): Uint8Array => {
      const out = Uint8Array.from(m);
      const kind = rand() % 4;
      if (kind === 0)
        for (let k = 0; k < 1 + (rand() % 4); k++) out[rand() % out.length] = rand() & 0xff;
      else if (kind === 1) return out.subarray(0, rand() % out.length);
      else if (kind === 2) {
        // Plant a huge length word somewhere.
        const at = (rand() % Math.max(1, out.length - 4)) & ~3;
        new DataView(out.buffer).setUint32(at, 0xffffff00 | (rand() & 0xff));
      } else return Uint8Array.from({ length: rand() % 200 }, () => rand() & 0xff);
      return out;
    };
    const udp = dgram.createSocket('udp4');
    udp.on('message', () => {});
    const conns = await Promise.all([rawTcp(h.port), rawTcp(h.port)]);
    const start = Date.now();
    let inputs = 0;
    try {
      while (inputs < FUZZ_MAX_INPUTS && Date.now() - start < FUZZ_BUDGET_MS) {
        for (let k = 0; k < 200; k++) {
          const msg = mutate(seeds[rand() % seeds.length]);
          if (rand() % 2 === 0) udp.send(msg, h.port, '127.0.0.1');
          else conns[rand() % 2].sock.write(record(msg));
          inputs++;
        }
        // Let the server drain what we sent.
        await new Promise((r) => setImmediate(r));
      }
      // The stream may be desynchronised by design of the inputs; the server must still serve.
      const c = await client3(h.port);
      try {
        await c.null();
        assert.equal((await c.getattr(root)).type, 2);
      } finally {
        c.rpc.close();
      }
      const stats = h.server.rpc.stats;
      assert.ok(stats.calls + stats.dropped > 0);
      console.log(
        `      fuzz: ${inputs} inputs, ${stats.calls} decoded calls, ${stats.garbage} garbage, ${stats.dropped} dropped`,
      );
    } finally {
      udp.close();
      conns.forEach((c) => c.sock.destroy());
      await h.close();
    }
  });
});
