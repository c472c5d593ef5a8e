import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import {
  Client,
  FIRST_CLIENT_ID,
  MAX_OP_BYTES,
  MAX_SOCKET_BACKLOG_BYTES,
  MemoryNetwork,
  Replica,
  ReplicaNode,
  TcpTransport,
} from '../src';
import { KvService, addOp, readOp } from './support/kv';
import { startProcesses } from './support/processes';
import { authFor } from './support/keys';

function value(r: Uint8Array): number {
  return Buffer.from(r).readUInt32BE(0);
}

describe('pbft client library over the in-memory transport', () => {
  it('resolves many concurrent invocations with the agreed results, writes and reads', async () => {
    const mem = new MemoryNetwork();
    const nodes = Array.from({ length: 4 }, (_, i) => {
      const n = new ReplicaNode(
        new Replica({ n: 4, id: i }, new KvService(), authFor(i, 4, 8)),
        mem.endpoint([i]),
      );
      n.start();
      return n;
    });
    const ids = Array.from({ length: 8 }, (_, i) => FIRST_CLIENT_ID + i);
    const client = new Client({
      n: 4,
      transport: mem.endpoint(ids),
      auth: (id) => authFor(id, 4, 8),
    });
    const writes = await Promise.all(Array.from({ length: 100 }, () => client.invoke(addOp(3, 2))));
    // Every add returns the counter after it: all distinct, the last one 200.
    assert.deepEqual(
      writes.map(value).sort((a, b) => a - b),
      Array.from({ length: 100 }, (_, i) => 2 * (i + 1)),
    );
    assert.equal(value(await client.invoke(readOp(3), { readOnly: true })), 200);
    await assert.rejects(client.invoke(new Uint8Array(MAX_OP_BYTES + 1)), RangeError);
    await client.close();
    await Promise.all(nodes.map((n) => n.stop()));
  });
});

describe('pbft TCP transport', () => {
  it('drops a connection that announces a frame above the size bound, without crashing', async () => {
    const t = await TcpTransport.open({ ids: [0], listen: { host: '127.0.0.1', port: 0 } });
    const got: Uint8Array[] = [];
    t.onMessage((_f, b) => got.push(b));
    const s = net.connect(t.port, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    const hello = Buffer.alloc(12);
    hello.writeUInt32BE(8, 0);
    hello.writeUInt32BE(FIRST_CLIENT_ID, 4);
    hello.writeUInt32BE(1, 8);
    const huge = Buffer.alloc(4);
    huge.writeUInt32BE(0xfffffff0);
    s.write(Buffer.concat([hello, huge]));
    await new Promise((r) => s.once('close', r));
    assert.equal(t.stats.dropBadStream, 1);
    assert.equal(got.length, 0);
    await t.close();
  });

  it('delivers frames both ways, answering a dial-only client over its own connection', async () => {
    const server = await TcpTransport.open({ ids: [0], listen: { host: '127.0.0.1', port: 0 } });
    server.onMessage((from, b) => server.send(from, Buffer.concat([Buffer.from('echo:'), b])));
    const client = await TcpTransport.open({
      ids: [FIRST_CLIENT_ID, FIRST_CLIENT_ID + 1],
      peers: new Map([[0, { host: '127.0.0.1', port: server.port }]]),
    });
    const got = new Promise<string>((r) =>
      client.onMessage((_f, b) => r(Buffer.from(b).toString())),
    );
    client.send(0, Buffer.from('hi'));
    assert.equal(await got, 'echo:hi');
    await client.close();
    await server.close();
  });

  it('drops frames to a peer that stops reading once MAX_SOCKET_BACKLOG_BYTES wait unsent, and sends again once it reads', async () => {
    // A peer that never reads: everything we write piles up in our process unless bounded.
    let received = 0;
    let peer!: net.Socket;
    const server = net.createServer((s) => {
      peer = s;
      s.pause();
      s.on('data', (d: Buffer) => (received += d.length));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const t = await TcpTransport.open({
      ids: [0],
      peers: new Map([[1, { host: '127.0.0.1', port }]]),
    });
    t.send(1, Buffer.from('first'));
    while (t.io.writes < 1) await new Promise((r) => setTimeout(r, 10));
    const frame = Buffer.alloc(512 * 1024);
    const attempts = (4 * MAX_SOCKET_BACKLOG_BYTES) / frame.length;
    for (let i = 0; i < attempts; i++) {
      t.send(1, frame);
      if (i % 8 === 7) await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(t.io.framesDropped > attempts / 2, `dropped ${t.io.framesDropped} of ${attempts}`);
    // What the kernel holds for the peer plus at most the bound: far below what was offered.
    assert.ok(t.io.bytesOut < 2 * MAX_SOCKET_BACKLOG_BYTES, `wrote ${t.io.bytesOut} bytes`);

    peer.resume();
    while (received < t.io.bytesOut) await new Promise((r) => setTimeout(r, 10));
    const dropped = t.io.framesDropped;
    t.send(1, frame);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(t.io.framesDropped, dropped, 'a drained socket takes frames again');
    while (received < t.io.bytesOut) await new Promise((r) => setTimeout(r, 10));
    await t.close();
    peer.destroy();
    await new Promise((r) => server.close(r));
  });
  it('drops and redials a connection to a peer silent for peerSilenceMs (a cut link TCP would retry for long)', async () => {
    // The peer accepts and reads but never says anything back.
    const accepted: net.Socket[] = [];
    const server = net.createServer((sock) => {
      accepted.push(sock);
      sock.resume();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const t = await TcpTransport.open({
      ids: [0],
      peers: new Map([[1, { host: '127.0.0.1', port }]]),
      peerSilenceMs: 200,
    });
    t.send(1, Buffer.from('hello?'));
    const deadline = Date.now() + 5000;
    while (accepted.length < 2 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    assert.ok((t.stats.dropSilentPeer ?? 0) >= 1, JSON.stringify(t.stats));
    assert.ok(accepted.length >= 2, `redialled: ${accepted.length} connections`);
    await t.close();
    for (const sock of accepted) sock.destroy();
    await new Promise((r) => server.close(r));
  });
});

describe('pbft TCP transport: reconnection', () => {
  it('re-dials a peer that restarted on the same port and delivers what was queued meanwhile', async () => {
    const first = await TcpTransport.open({ ids: [1], listen: { host: '127.0.0.1', port: 0 } });
    const port = first.port;
    const a = await TcpTransport.open({
      ids: [0],
      peers: new Map([[1, { host: '127.0.0.1', port }]]),
    });
    const got1 = new Promise<string>((r) =>
      first.onMessage((_f, b) => r(Buffer.from(b).toString())),
    );
    a.send(1, Buffer.from('one'));
    assert.equal(await got1, 'one');
    await first.close();
    // Wait until the dialer noticed the close (its backoff starts then).
    while ((a.stats.reconnect ?? 0) < 1) await new Promise((r) => setTimeout(r, 5));
    // Sent while the peer is down and within the reconnection backoff: queued, then re-dialled.
    a.send(1, Buffer.from('two'));
    const second = await TcpTransport.open({ ids: [1], listen: { host: '127.0.0.1', port } });
    const got2 = new Promise<string>((r) =>
      second.onMessage((_f, b) => r(Buffer.from(b).toString())),
    );
    assert.equal(await got2, 'two');
    await a.close();
    await second.close();
  });
});

describe('pbft over TCP between real processes (smoke)', () => {
  it('four replica processes serve a client through the TCP transport', async function () {
    this.timeout(60_000);
    const clients = 4;
    const cluster = await startProcesses(4, (id) => ({
      id,
      n: 4,
      service: 'kv',
      mode: 'replica',
      clients,
    }));
    try {
      const ids = Array.from({ length: clients }, (_, i) => FIRST_CLIENT_ID + i);
      const transport = await TcpTransport.open({
        ids,
        peers: new Map([...cluster.ports].map(([id, port]) => [id, { host: '127.0.0.1', port }])),
      });
      const client = new Client({ n: 4, transport, auth: (id) => authFor(id, 4, clients) });
      const rs = await Promise.all(Array.from({ length: 40 }, () => client.invoke(addOp(1, 1))));
      assert.equal(Math.max(...rs.map(value)), 40);
      assert.equal(value(await client.invoke(readOp(1), { readOnly: true })), 40);
      await client.close();
    } finally {
      const stats = await cluster.stop();
      assert.equal(stats.length, 4);
    }
  });
});
