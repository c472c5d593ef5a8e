import { strict as assert } from 'node:assert';
import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import {
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
  RecordReader,
} from '../src/server';
import { Nfs3Client, RpcClient, authSys } from '../src/client';
import { type Harness, startServer } from './helpers';
import {
  FLOOD_RSS_BOUND,
  type RawConnection,
  connectFrom,
  floodConnections,
  rssBytes,
  until,
} from './flood';

/** A program number of the user-defined range, for a handler that waits. */
const SLOW_PROGRAM = 0x20000001;

async function call(port: number, localAddress?: string): Promise<void> {
  const rpc = await RpcClient.connect({ port, localAddress, timeoutMs: 5000 });
  try {
    const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
    const root = await nfs.mount('/');
    await nfs.getattr(root);
  } finally {
    rpc.close();
  }
}

describe('TCP connection limits: a flood of idle and half-sent connections', function () {
  this.timeout(60_000);
  let child: ChildProcess;
  let port: number;

  before(async () => {
    // The real CLI process with its default limits, one process (tsx loaded in-process), so
    // /proc/PID/status is the server's own memory.
    const cli = path.join(__dirname, '..', 'src', 'cli.ts');
    child = spawn(
      process.execPath,
      ['-r', require.resolve('tsx/cjs'), cli, '--memory', '--port', '0'],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    port = await new Promise<number>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d) => {
        out += d;
        const m = /nfsport=(\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
    });
  });
  after(() => {
    child.kill('SIGKILL');
  });

  it('a new client is still served, connections stay under the cap, and memory stays under a bound', async () => {
    for (let i = 0; i < 20; i++) await call(port); // warm up code paths before the baseline
    const before = rssBytes(child.pid!);
    // 3,000 connections from 60 other loopback addresses: half idle, half stalled part-way
    // through a 1 MiB record (128 KiB sent), twice DEFAULT_MAX_BUFFERED_BYTES in all.
    const flood = await floodConnections({
      port,
      addresses: 60,
      perAddress: 50,
      partialBytes: (i) => (i % 2 === 0 ? 128 * 1024 : 0),
    });
    try {
      const t0 = performance.now();
      await call(port);
      const served = performance.now() - t0;
      await until(() => flood.open() <= DEFAULT_MAX_CONNECTIONS, 5000, 'flood connections closed');
      const after = rssBytes(child.pid!);
      console.log(
        `      flood: ${flood.opened} opened, ${flood.open()} still open; new client served in ` +
          `${served.toFixed(0)} ms; RSS ${(before / 2 ** 20).toFixed(0)} -> ${(after / 2 ** 20).toFixed(0)} MiB`,
      );
      assert.ok(flood.opened >= 2900, `only ${flood.opened} connections could be opened`);
      assert.ok(after - before < FLOOD_RSS_BOUND, `RSS grew by ${after - before} bytes`);
    } finally {
      flood.close();
    }
    await call(port);
  });
});

describe('TCP connection limits (rules)', function () {
  this.timeout(20_000);
  let h: Harness;
  afterEach(async () => {
    await h?.close();
  });

  it('closes a connection idle for the idle timeout, and keeps a busy one', async () => {
    h = await startServer({ idleTimeoutMs: 300 });
    const idle = await connectFrom(h.port, '127.0.0.1');
    const rpc = await RpcClient.connect({ port: h.port });
    const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
    const root = await nfs.mount('/');
    const t0 = Date.now();
    while (Date.now() - t0 < 900) {
      await nfs.getattr(root);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(idle.closed(), 'the idle connection was closed');
    await nfs.getattr(root); // the busy one was kept
    rpc.close();
    assert.ok(h.server.rpc.connectionStats.idleClosed >= 1);
  });

  it('closes a connection whose record does not arrive whole within the record timeout', async () => {
    h = await startServer({ recordTimeoutMs: 300, idleTimeoutMs: 0 });
    const slow = await connectFrom(h.port, '127.0.0.1');
    const header = Buffer.alloc(4);
    header.writeUInt32BE((0x80000000 | 1000) >>> 0);
    slow.socket.write(header);
    // Trickle a byte every 50 ms: never idle, never complete.
    const trickle = setInterval(() => slow.socket.write(Buffer.from([0])), 50);
    try {
      await until(() => slow.closed(), 2000, 'the trickling connection closed');
    } finally {
      clearInterval(trickle);
    }
    assert.equal(h.server.rpc.connectionStats.slowRecordClosed, 1);
    await call(h.port);
  });

  it("caps one address's connections by closing its own oldest, leaving other addresses alone", async () => {
    h = await startServer({ maxConnectionsPerAddress: 4 });
    const other = await connectFrom(h.port, '127.0.0.3');
    const mine: RawConnection[] = [];
    for (let i = 0; i < 7; i++) {
      mine.push(await connectFrom(h.port, '127.0.0.2'));
      await new Promise((r) => setTimeout(r, 5)); // distinct opening times
    }
    await until(() => mine.filter((c) => c.closed()).length === 3, 2000, 'three evicted');
    assert.deepEqual(
      mine.map((c) => c.closed()),
      [true, true, true, false, false, false, false],
      'the oldest went first',
    );
    assert.ok(!other.closed());
    await call(h.port, '127.0.0.2'); // the address is still served: its oldest makes room
    assert.equal(h.server.rpc.connectionStats.open, 5);
    for (const c of [other, ...mine]) c.socket.destroy();
  });

  it('at the total cap, a newcomer replaces an idle connection of the address holding the most', async () => {
    h = await startServer({ maxConnections: 8, maxConnectionsPerAddress: 8 });
    // A legitimate client that made a call and is now idle, from its own address.
    const rpc = await RpcClient.connect({ port: h.port, localAddress: '127.0.0.1' });
    const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
    const root = await nfs.mount('/');
    const flood: RawConnection[] = [];
    for (let i = 0; i < 30; i++) flood.push(await connectFrom(h.port, `127.0.0.${2 + (i % 2)}`));
    await until(() => h.server.rpc.connectionStats.open <= 8, 2000, 'at most 8 open');
    await nfs.getattr(root); // never evicted: its address holds one connection
    assert.ok(h.server.rpc.connectionStats.evicted >= 23);
    rpc.close();
    for (const c of flood) c.socket.destroy();
  });

  it('refuses a newcomer only when every connection has a call in progress', async () => {
    h = await startServer({ maxConnections: 2 });
    const stuck: (() => void)[] = [];
    // A program of our own whose calls wait until released.
    h.server.rpc.setHandler(
      SLOW_PROGRAM,
      1,
      () => new Promise((r) => stuck.push(() => r(new Uint8Array(0)))),
    );
    const clients = await Promise.all([0, 1].map(() => RpcClient.connect({ port: h.port })));
    const calls = clients.map((c) => c.call(SLOW_PROGRAM, 1, 0, new Uint8Array(0)));
    await until(() => stuck.length === 2, 2000, 'two calls in progress');
    const third = await connectFrom(h.port, '127.0.0.1');
    await until(() => third.closed(), 2000, 'the newcomer refused');
    assert.equal(h.server.rpc.connectionStats.refused, 1);
    stuck.forEach((r) => r());
    await Promise.all(calls);
    await call(h.port); // with the calls done, a newcomer replaces an idle one
    clients.forEach((c) => c.close());
  });

  it('keeps the bytes of half-sent records under the buffered budget by closing the longest stalled', async () => {
    const budget = 1024 * 1024;
    h = await startServer({ maxBufferedBytes: budget });
    const header = Buffer.alloc(4);
    header.writeUInt32BE((0x80000000 | (1024 * 1024)) >>> 0);
    const stalled: RawConnection[] = [];
    for (let i = 0; i < 12; i++) {
      const c = await connectFrom(h.port, `127.0.0.${2 + i}`);
      c.socket.write(Buffer.concat([header, Buffer.alloc(200 * 1024)]));
      stalled.push(c);
    }
    const rpc = h.server.rpc;
    await until(() => rpc.connectionStats.bufferEvicted > 0, 3000, 'stalled connections evicted');
    await until(() => rpc.connections.held().buffered <= budget, 3000, 'back under the budget');
    assert.ok(stalled[0].closed(), 'the first (longest stalled) went');
    await call(h.port);
    for (const c of stalled) c.socket.destroy();
  });
});

describe('TCP record reassembly holds only what arrived', () => {
  it('a header announcing a large record costs nothing until its bytes come', () => {
    const rr = new RecordReader(1 << 20, () => {});
    const h = Buffer.alloc(4);
    h.writeUInt32BE((0x80000000 | (1 << 20)) >>> 0);
    rr.push(h);
    assert.equal(rr.held, 0);
    assert.ok(rr.partial);
    rr.push(Buffer.alloc(10));
    assert.ok(rr.held <= 16 * 1024, `${rr.held} bytes held for 10 received`);
  });

  it('a record sent as one-byte fragments holds no more than twice its bytes', () => {
    let got: Uint8Array | undefined;
    const rr = new RecordReader(1 << 20, (r) => (got = Uint8Array.from(r)));
    const n = 100_000;
    let maxHeld = 0;
    for (let i = 0; i < n; i++) {
      const f = Buffer.alloc(5);
      f.writeUInt32BE(((i === n - 1 ? 0x80000000 : 0) | 1) >>> 0);
      f[4] = i & 0xff;
      rr.push(f);
      maxHeld = Math.max(maxHeld, rr.held);
    }
    assert.equal(got?.length, n);
    assert.equal(got![n - 1], (n - 1) & 0xff);
    assert.ok(maxHeld <= 2 * n, `${maxHeld} bytes held for a ${n}-byte record`);
    assert.equal(rr.held, 0, 'nothing kept once delivered');
  });

  it('per-address and total caps default to named constants', () => {
    assert.equal(DEFAULT_MAX_CONNECTIONS, 1024);
    assert.ok(DEFAULT_MAX_CONNECTIONS_PER_ADDRESS < DEFAULT_MAX_CONNECTIONS);
  });
});
