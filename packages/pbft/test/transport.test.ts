import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import {
  Client,
  FIRST_CLIENT_ID,
  MAGIC,
  MAX_FRAME_BYTES,
  MAX_OP_BYTES,
  MAX_SOCKET_BACKLOG_BYTES,
  MsgType,
  MemoryNetwork,
  Replica,
  ReplicaNode,
  TcpTransport,
} from '../src';
import { KvService, addOp, readOp } from './support/kv';
import { startProcesses } from './support/processes';
import { authFor } from './support/keys';
import { NullService } from './support/null-service';

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

/**
 * Dials `port` as node `id` (a raw hello), announces a frame of `length` bytes (with its magic
 * and type byte when `type` is given) and waits for the transport to close the connection.
 */
async function announceAndClose(
  port: number,
  id: number,
  length: number,
  type?: MsgType,
): Promise<void> {
  const s = net.connect(port, '127.0.0.1');
  await new Promise((r) => s.once('connect', r));
  const head = Buffer.alloc(type === undefined ? 16 : 18);
  head.writeUInt32BE(8, 0);
  head.writeUInt32BE(id, 4);
  head.writeUInt32BE(1, 8);
  head.writeUInt32BE(length, 12);
  if (type !== undefined) {
    head[16] = MAGIC;
    head[17] = type;
  }
  s.write(head);
  await new Promise((r) => s.once('close', r));
}

describe('pbft TCP transport', () => {
  it('drops a connection that announces a frame above the size bound, without crashing', async () => {
    const t = await TcpTransport.open({ ids: [0], listen: { host: '127.0.0.1', port: 0 } });
    const got: Uint8Array[] = [];
    t.onMessage((_f, b) => got.push(b));
    await announceAndClose(t.port, FIRST_CLIENT_ID, 0xfffffff0);
    assert.equal(t.stats.dropBadStream, 1);
    assert.equal(got.length, 0);
    await t.close();
  });

  it('carries a VIEW-CHANGE above MAX_FRAME_BYTES between replicas, and refuses one from a client or a big frame of any other type', async () => {
    const replica = await TcpTransport.open({ ids: [1], listen: { host: '127.0.0.1', port: 0 } });
    const got: Uint8Array[] = [];
    replica.onMessage((_f, b) => got.push(b));
    const frameOf = (type: MsgType): Buffer => {
      const b = Buffer.alloc(MAX_FRAME_BYTES + 100_000, 7);
      b[1] = type;
      return b;
    };
    // From another replica (its dialed connection names replica id 0).
    const peer = await TcpTransport.open({
      ids: [0],
      peers: new Map([[1, { host: '127.0.0.1', port: replica.port }]]),
    });
    peer.send(1, frameOf(MsgType.ViewChange));
    peer.send(1, frameOf(MsgType.PrePrepare));
    assert.equal(peer.stats.dropOversizeSend, 1, 'the sender refuses the big PRE-PREPARE');
    for (let i = 0; i < 200 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(got.length, 1);
    assert.equal(got[0]!.length, MAX_FRAME_BYTES + 100_000);
    assert.equal(got[0]![1], MsgType.ViewChange);
    // From a client id: the connection is dropped at the length prefix.
    for (const [ids, type] of [
      [FIRST_CLIENT_ID, MsgType.ViewChange],
      [2, MsgType.Request],
    ] as const) {
      await announceAndClose(replica.port, ids, MAX_FRAME_BYTES + 100_000, type);
    }
    assert.equal(replica.stats.dropBadStream, 2);
    assert.equal(got.length, 1);
    await peer.close();
    await replica.close();
  });

  it("refuses a VIEW-CHANGE above the cluster's NEW-VIEW bound even from a replica id (four replicas: MAX_FRAME_BYTES)", async () => {
    const replica = await TcpTransport.open({
      ids: [1],
      listen: { host: '127.0.0.1', port: 0 },
      maxViewChangeFrameBytes: new Replica({ n: 4, id: 1 }, new NullService(), authFor(1, 4, 1))
        .maxReplicaFrameBytes,
    });
    await announceAndClose(replica.port, 2, MAX_FRAME_BYTES + 1, MsgType.ViewChange);
    assert.equal(replica.stats.dropBadStream, 1);
    await replica.close();
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
