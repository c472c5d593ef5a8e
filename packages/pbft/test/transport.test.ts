import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import {
  Client,
  FIRST_CLIENT_ID,
  HANDSHAKE_BUFFER_BYTES,
  HELLO_BYTES,
  HANDSHAKE_TIMEOUT_MS,
  HandshakeRole,
  INPUT_QUANTUM_BYTES,
  type IdRange,
  MAX_CONNECTION_INPUT_BYTES,
  MAX_INPUT_BYTES,
  MAX_HANDSHAKES_PER_ADDRESS,
  MAX_HANDSHAKE_FRAME_BYTES,
  MAGIC,
  MAX_FRAME_BYTES,
  MAX_OP_BYTES,
  MAX_REFUSED_FRAMES_PER_WINDOW,
  MAX_SOCKET_BACKLOG_BYTES,
  MsgType,
  MemoryNetwork,
  REFUSED_INPUT_PENALTY_BYTES,
  Replica,
  ReplicaNode,
  TcpTransport,
  UNCOPIED_FRAME_BYTES,
  type TcpOptions,
  decodeChallenge,
  decodeHello,
  decodeWelcome,
  encodeChallenge,
  encodeHello,
  encodeWelcome,
  handshakeMac,
  macEquals,
  newNonce,
} from '../src';
import { testConnectionKey } from '../src/testing';
import { KvService, addOp, readOp } from './support/kv';
import { startProcesses } from './support/processes';
import { KEY_SEED, authFor, connectionKeysFor, requestSignerFor } from './support/keys';
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

/** A raw socket to `port` and everything it received, until the other end closed it. */
interface Raw {
  socket: net.Socket;
  received: () => Buffer;
  closed: Promise<void>;
  /** The next length-prefixed frame from the other end. */
  frame: () => Promise<Buffer>;
}

async function raw(port: number): Promise<Raw> {
  const socket = net.connect(port, '127.0.0.1');
  let got = Buffer.alloc(0);
  let taken = 0;
  let wake: (() => void) | undefined;
  socket.on('data', (d: Buffer) => {
    got = Buffer.concat([got, d]);
    wake?.();
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((r) => socket.once('close', () => (r(), wake?.())));
  await new Promise((r) => socket.once('connect', r));
  const frame = async (): Promise<Buffer> => {
    for (;;) {
      if (got.length - taken >= 4) {
        const len = got.readUInt32BE(taken);
        if (got.length - taken >= 4 + len) {
          const f = got.subarray(taken + 4, taken + 4 + len);
          taken += 4 + len;
          return f;
        }
      }
      if (socket.destroyed) throw new Error('closed before a whole frame');
      await new Promise<void>((r) => (wake = r));
    }
  };
  return { socket, received: () => got, closed, frame };
}

function framed(f: Uint8Array): Buffer {
  const b = Buffer.alloc(4 + f.length);
  b.writeUInt32BE(f.length, 0);
  b.set(f, 4);
  return b;
}

/**
 * Completes the handshake with the endpoint holding `acceptor` at `port` as the node holding
 * `dialer`, with `key` (the test key of the pair unless given): an authenticated raw connection.
 */
async function authenticated(
  port: number,
  dialer: IdRange,
  acceptor: IdRange,
  key: Uint8Array = testConnectionKey(KEY_SEED, dialer, acceptor),
): Promise<Raw> {
  const { r, na, nd } = await sendHello(port, dialer, acceptor, key);
  const mac = decodeWelcome(await r.frame());
  assert.ok(mac, 'a welcome');
  assert.ok(
    macEquals(mac, handshakeMac(key, HandshakeRole.Acceptor, dialer, acceptor, na, nd)),
    'the acceptor proved its key',
  );
  return r;
}

/** Two authenticated client connections (the first two client ids) to replica 0 at `port`. */
async function twoClients(port: number): Promise<[Raw, Raw]> {
  const acceptor = { first: 0, count: 1 };
  return [
    await authenticated(port, { first: FIRST_CLIENT_ID, count: 1 }, acceptor),
    await authenticated(port, { first: FIRST_CLIENT_ID + 1, count: 1 }, acceptor),
  ];
}

/** Reads the acceptor's CHALLENGE and answers it with a HELLO of `dialer` under `key`. */
async function sendHello(
  port: number,
  dialer: IdRange,
  acceptor: IdRange,
  key: Uint8Array,
): Promise<{ r: Raw; na: Uint8Array; nd: Uint8Array }> {
  const r = await raw(port);
  const na = decodeChallenge(await r.frame());
  assert.ok(na, 'a challenge first');
  const nd = newNonce();
  r.socket.write(
    framed(
      encodeHello(dialer, nd, handshakeMac(key, HandshakeRole.Dialer, dialer, acceptor, na, nd)),
    ),
  );
  return { r, na, nd };
}

/**
 * As node `id` (an authenticated connection), announces a frame of `length` bytes (with its
 * magic and type byte when `type` is given) and waits for the transport to close the connection.
 */
async function announceAndClose(
  port: number,
  acceptor: number,
  id: number,
  length: number,
  type?: MsgType,
): Promise<void> {
  const r = await authenticated(port, { first: id, count: 1 }, { first: acceptor, count: 1 });
  const head = Buffer.alloc(type === undefined ? 4 : 6);
  head.writeUInt32BE(length, 0);
  if (type !== undefined) {
    head[4] = MAGIC;
    head[5] = type;
  }
  r.socket.write(head);
  await r.closed;
}

/**
 * A bare TCP server that plays the acceptor's side of the handshake as node `id` (test keys) and
 * hands each connection that completed it to `then`, which may stop reading or stay silent.
 */
async function fakeAcceptor(
  id: number,
  then: (s: net.Socket) => void,
): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    const na = newNonce();
    s.write(framed(encodeChallenge(na)));
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 4 || buf.length < 4 + buf.readUInt32BE(0)) return;
      s.off('data', onData);
      const h = decodeHello(buf.subarray(4, 4 + buf.readUInt32BE(0)))!;
      const acceptor = { first: id, count: 1 };
      const key = testConnectionKey(KEY_SEED, h.dialer, acceptor);
      s.write(
        framed(
          encodeWelcome(handshakeMac(key, HandshakeRole.Acceptor, h.dialer, acceptor, na, h.nd)),
        ),
      );
      then(s);
    };
    s.on('data', onData);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as net.AddressInfo).port };
}

const LOOPBACK = { host: '127.0.0.1', port: 0 };

/** A listening endpoint with test connection keys. */
function listener(id: number, extra: Partial<TcpOptions> = {}): Promise<TcpTransport> {
  return TcpTransport.open({
    ids: [id],
    connectionKeys: connectionKeysFor([id]),
    listen: LOOPBACK,
    ...extra,
  });
}

/** A dial-only endpoint (a client process) toward `peers` (id -> port). */
function dialer(ids: number[], peers: [number, number][], extra: Partial<TcpOptions> = {}) {
  return TcpTransport.open({
    ids,
    connectionKeys: connectionKeysFor(ids),
    peers: new Map(peers.map(([id, port]) => [id, { host: '127.0.0.1', port }])),
    ...extra,
  });
}

async function until(what: string, cond: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('pbft TCP transport', () => {
  it('drops a connection that announces a frame above the size bound, without crashing', async () => {
    const t = await listener(0);
    const got: Uint8Array[] = [];
    t.onMessage((_f, b) => got.push(b));
    await announceAndClose(t.port, 0, FIRST_CLIENT_ID, 0xfffffff0);
    assert.equal(t.stats.dropBadStream, 1);
    assert.equal(got.length, 0);
    await t.close();
  });

  it('sends frames of one event in order, large ones from their own buffers between copied small ones', async () => {
    const replica = await listener(1);
    const got: Uint8Array[] = [];
    replica.onMessage((_f, b) => got.push(b));
    const peer = await dialer([0], [[1, replica.port]]);
    const sizes = [10, UNCOPIED_FRAME_BYTES, 20, 30, MAX_OP_BYTES, UNCOPIED_FRAME_BYTES - 1, 40];
    const frames = sizes.map((n, i) => {
      const b = Buffer.alloc(n, i + 1);
      b[1] = MsgType.Request;
      return b;
    });
    for (const f of frames) peer.send(1, f);
    for (let i = 0; i < 300 && got.length < frames.length; i++)
      await new Promise((r) => setTimeout(r, 10));
    assert.equal(got.length, frames.length);
    got.forEach((g, i) => assert.ok(Buffer.from(g).equals(frames[i]!), `frame ${i}`));
    await peer.close();
    await replica.close();
  });

  it('carries a VIEW-CHANGE above MAX_FRAME_BYTES between replicas, and refuses one from a client or a big frame of any other type', async () => {
    const replica = await listener(1);
    const got: Uint8Array[] = [];
    replica.onMessage((_f, b) => got.push(b));
    const frameOf = (type: MsgType): Buffer => {
      const b = Buffer.alloc(MAX_FRAME_BYTES + 100_000, 7);
      b[1] = type;
      return b;
    };
    // From another replica (its dialed connection names replica id 0).
    const peer = await dialer([0], [[1, replica.port]]);
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
      await announceAndClose(replica.port, 1, ids, MAX_FRAME_BYTES + 100_000, type);
    }
    assert.equal(replica.stats.dropBadStream, 2);
    assert.equal(got.length, 1);
    await peer.close();
    await replica.close();
  });

  it("refuses a VIEW-CHANGE above the cluster's NEW-VIEW bound even from a replica id (four replicas: MAX_FRAME_BYTES)", async () => {
    const replica = await listener(1, {
      maxViewChangeFrameBytes: new Replica({ n: 4, id: 1 }, new NullService(), authFor(1, 4, 1))
        .maxReplicaFrameBytes,
    });
    await announceAndClose(replica.port, 1, 2, MAX_FRAME_BYTES + 1, MsgType.ViewChange);
    assert.equal(replica.stats.dropBadStream, 1);
    await replica.close();
  });

  it('delivers frames both ways, answering a dial-only client over its own connection', async () => {
    const server = await listener(0);
    server.onMessage((from, b) => server.send(from, Buffer.concat([Buffer.from('echo:'), b])));
    const client = await dialer([FIRST_CLIENT_ID, FIRST_CLIENT_ID + 1], [[0, server.port]]);
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
    // (Our HELLO, read by the handshake, counts as received.)
    let received = 4 + HELLO_BYTES;
    let peer!: net.Socket;
    const { server, port } = await fakeAcceptor(1, (s) => {
      peer = s;
      s.pause();
      s.on('data', (d: Buffer) => (received += d.length));
    });
    const t = await dialer([0], [[1, port]]);
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
    const { server, port } = await fakeAcceptor(1, (sock) => {
      accepted.push(sock);
      sock.resume();
    });
    const t = await dialer([0], [[1, port]], { peerSilenceMs: 200 });
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

/** `count` frames of `bytes` each, numbered from `first` (a u32 at the start), in one buffer. */
function numberedFrames(first: number, count: number, bytes: number): Buffer {
  const out = Buffer.alloc(count * (4 + bytes));
  for (let i = 0; i < count; i++) {
    out.writeUInt32BE(bytes, i * (4 + bytes));
    out.writeUInt32BE(first + i, i * (4 + bytes) + 4);
  }
  return out;
}

describe('pbft TCP transport: fair input scheduling (deficit round robin over connections)', () => {
  const FRAME = 1024;
  /** Frames of FRAME bytes one connection may deliver in one round of the scheduler, at most. */
  const PER_ROUND = Math.ceil(INPUT_QUANTUM_BYTES / (4 + FRAME)) + 1;

  it("a connection that floods cannot starve another's frames: they are delivered within a few rounds of the flooder's frames", async () => {
    const server = await listener(0);
    const acceptor = { first: 0, count: 1 };
    const flooder = await authenticated(server.port, { first: 1, count: 1 }, acceptor);
    const other = await authenticated(server.port, { first: 2, count: 1 }, acceptor);
    const flood = 8000;
    let floodSeen = 0;
    let floodWhenOtherWrote = -1;
    let otherSeen = 0;
    let floodWhenOtherDone = -1;
    server.onMessage((from) => {
      if (from === 1) floodSeen++;
      else if (++otherSeen === 20) floodWhenOtherDone = floodSeen;
      if (from === 1 && floodSeen === 1) {
        // The flooder's queue is full by now: the other's frames join behind it.
        floodWhenOtherWrote = floodSeen;
        other.socket.write(numberedFrames(0, 20, 64));
      }
    });
    flooder.socket.write(numberedFrames(0, flood, FRAME));
    await until('the other connection delivered', () => floodWhenOtherDone >= 0, 20_000);
    const meanwhile = floodWhenOtherDone - floodWhenOtherWrote;
    // Synchronous delivery per socket read took up to 32 reads of 64 KiB (some 2,000 of these
    // frames) from the flooder before the other's next read.
    assert.ok(meanwhile <= 4 * PER_ROUND, `${meanwhile} flood frames before the other's 20`);
    await until('the whole flood', () => floodSeen === flood, 20_000);
    flooder.socket.destroy();
    other.socket.destroy();
    await server.close();
  });

  it("charges a connection the penalty its handler returns (a refused frame, REFUSED_INPUT_PENALTY_BYTES): it gets that much less of its class's share, and all of it once alone", async () => {
    const server = await listener(0);
    const [refused, handled] = await twoClients(server.port);
    const count = 4000;
    // Below the rate that throttles a connection (the next test).
    const refusedCount = MAX_REFUSED_FRAMES_PER_WINDOW;
    let refusedSeen = 0;
    let handledSeen = 0;
    let refusedWhenHandledDone = -1;
    server.onMessage((from) => {
      if (from === FIRST_CLIENT_ID) {
        refusedSeen++;
        return REFUSED_INPUT_PENALTY_BYTES;
      }
      if (++handledSeen === count) refusedWhenHandledDone = refusedSeen;
      return undefined;
    });
    refused.socket.write(numberedFrames(0, refusedCount, 64));
    handled.socket.write(numberedFrames(0, count, 64));
    await until('the handled connection delivered', () => refusedWhenHandledDone >= 0, 20_000);
    // Per round each gets a quantum: some 950 handled frames against 4 refused ones.
    assert.ok(
      refusedWhenHandledDone < refusedCount / 4,
      `${refusedWhenHandledDone} refused frames delivered meanwhile`,
    );
    await until('every refused frame, once alone', () => refusedSeen === refusedCount, 20_000);
    assert.equal(server.io.inputThrottles, 0);
    refused.socket.destroy();
    handled.socket.destroy();
    await server.close();
  });

  it('stops reading a client connection past MAX_REFUSED_FRAMES_PER_WINDOW refused frames (a client re-sending as fast as it can), serves the others meanwhile, and delivers the rest of its frames, in order, once they are handled', async () => {
    const server = await listener(0);
    const [spammer, correct] = await twoClients(server.port);
    const spam = 20_000;
    let refusing = true;
    const spamSeen: number[] = [];
    let correctSeen = 0;
    server.onMessage((from, b) => {
      if (from !== FIRST_CLIENT_ID) {
        correctSeen++;
        return undefined;
      }
      spamSeen.push(Buffer.from(b).readUInt32BE(0));
      return refusing ? REFUSED_INPUT_PENALTY_BYTES : undefined;
    });
    spammer.socket.write(numberedFrames(0, spam, 64));
    const started = Date.now();
    await until('the first throttle', () => server.io.inputThrottles >= 1, 5_000);
    correct.socket.write(numberedFrames(0, 1000, 64));
    await until('the correct connection delivered', () => correctSeen === 1000, 5_000);
    await new Promise((r) => setTimeout(r, 1000 - (Date.now() - started)));
    // Unthrottled, the whole spam goes through in a few hundred milliseconds; throttled, a window's
    // worth after each pause of 50, 100, 200, 400 ms...
    const inASecond = spamSeen.length;
    assert.ok(server.io.inputThrottles >= 2, `${server.io.inputThrottles} throttles`);
    assert.ok(
      inASecond <= 8 * (MAX_REFUSED_FRAMES_PER_WINDOW + 1),
      `${inASecond} refused frames read in a second`,
    );
    assert.equal(server.stats.inputThrottled, server.io.inputThrottles);
    // Nothing it sent was dropped: once its frames are handled, the rest is delivered.
    refusing = false;
    await until('the rest of its frames', () => spamSeen.length === spam, 10_000);
    assert.deepEqual(
      spamSeen,
      Array.from({ length: spam }, (_, i) => i),
    );
    spammer.socket.destroy();
    correct.socket.destroy();
    await server.close();
  });

  it('pauses a connection whose queued input exceeds MAX_CONNECTION_INPUT_BYTES and resumes it as it drains, delivering all its frames in order', async () => {
    const server = await listener(0);
    const peer = await authenticated(server.port, { first: 1, count: 1 }, { first: 0, count: 1 });
    const count = Math.ceil((4 * MAX_CONNECTION_INPUT_BYTES) / FRAME);
    const got: number[] = [];
    server.onMessage((_from, b) => {
      got.push(Buffer.from(b).readUInt32BE(0));
    });
    peer.socket.write(numberedFrames(0, count, FRAME));
    await until('every frame', () => got.length === count, 20_000);
    assert.deepEqual(
      got,
      Array.from({ length: count }, (_, i) => i),
    );
    assert.ok(server.io.inputPauses >= 1, 'paused');
    assert.equal(server.io.inputResumes, server.io.inputPauses, 'resumed as often as paused');
    peer.socket.destroy();
    await server.close();
  });

  it('pauses every connection that reads while all queues together hold MAX_INPUT_BYTES, and delivers everything once they drain', async () => {
    const server = await listener(0);
    const acceptor = { first: 0, count: 1 };
    // More connections than MAX_INPUT_BYTES / MAX_CONNECTION_INPUT_BYTES, each sending more than
    // its own bound, to a handler slow enough that their input piles up.
    const conns = Math.ceil(MAX_INPUT_BYTES / MAX_CONNECTION_INPUT_BYTES) + 16;
    const peers = await Promise.all(
      Array.from({ length: conns }, (_, i) =>
        authenticated(server.port, { first: FIRST_CLIENT_ID + i, count: 1 }, acceptor),
      ),
    );
    const FRAME_BYTES = 64 * 1024;
    const perConn = Math.ceil((1.5 * MAX_CONNECTION_INPUT_BYTES) / FRAME_BYTES);
    let got = 0;
    server.onMessage(() => {
      got++;
      const until = performance.now() + 1;
      while (performance.now() < until);
    });
    for (const p of peers) p.socket.write(numberedFrames(0, perConn, FRAME_BYTES));
    await until('every frame', () => got === conns * perConn, 60_000);
    const peak = server.io.inputPeakBytes;
    assert.ok(peak >= 0.9 * MAX_INPUT_BYTES, `the input piled up to the bound: ${peak} bytes`);
    // Past the bound by at most what each connection read before it was paused (a read and a
    // frame being cut); without it, every connection's own MiB could queue at once.
    const slack = conns * 2 * (FRAME_BYTES + 4);
    assert.ok(peak <= MAX_INPUT_BYTES + slack, `${peak} bytes queued at most`);
    assert.ok(peak < conns * MAX_CONNECTION_INPUT_BYTES);
    for (const p of peers) p.socket.destroy();
    await server.close();
  });

  it('serves replica connections and client connections alternately: flooding clients do not starve a replica', async () => {
    const server = await listener(0);
    const acceptor = { first: 0, count: 1 };
    const clients = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        authenticated(server.port, { first: FIRST_CLIENT_ID + i, count: 1 }, acceptor),
      ),
    );
    const replica = await authenticated(server.port, { first: 1, count: 1 }, acceptor);
    let clientFrames = 0;
    let clientWhenReplicaWrote = -1;
    let replicaSeen = 0;
    let clientWhenReplicaDone = -1;
    server.onMessage((from) => {
      if (from >= FIRST_CLIENT_ID) clientFrames++;
      else if (++replicaSeen === 20) clientWhenReplicaDone = clientFrames;
      if (from >= FIRST_CLIENT_ID && clientFrames === 1) {
        clientWhenReplicaWrote = clientFrames;
        replica.socket.write(numberedFrames(0, 20, 64));
      }
    });
    for (const c of clients) c.socket.write(numberedFrames(0, 1000, FRAME));
    await until('the replica delivered', () => clientWhenReplicaDone >= 0, 20_000);
    const meanwhile = clientWhenReplicaDone - clientWhenReplicaWrote;
    // The rest of the round under way and at most one more round of the client class.
    assert.ok(
      meanwhile <= 2 * clients.length * PER_ROUND,
      `${meanwhile} client frames before the replica's 20`,
    );
    for (const c of [...clients, replica]) c.socket.destroy();
    await server.close();
  });
});

describe('pbft TCP transport: the connection handshake (no route without proof of the key)', () => {
  const RELAY: IdRange = { first: FIRST_CLIENT_ID, count: 4 };
  const relayIds = Array.from({ length: RELAY.count }, (_, i) => RELAY.first + i);
  const REPLICA: IdRange = { first: 0, count: 1 };

  /** A replica endpoint that echoes to the sender, and a client with RELAY's ids connected to it. */
  async function replicaWithClient(): Promise<{
    server: TcpTransport;
    client: TcpTransport;
    got: string[];
  }> {
    const server = await listener(0);
    server.onMessage((from, b) => server.send(from, Buffer.concat([Buffer.from('echo:'), b])));
    const client = await dialer(relayIds, [[0, server.port]]);
    const got: string[] = [];
    client.onMessage((_f, b) => got.push(Buffer.from(b).toString()));
    client.send(0, Buffer.from('one'));
    await until('the first echo', () => got.length === 1);
    return { server, client, got };
  }

  it("a hello claiming a client's ids without proving their key gets no route and no replies; the client keeps its route", async () => {
    const { server, client, got } = await replicaWithClient();
    // The old unauthenticated 8-byte hello, and the new format with a MAC under a wrong key.
    const legacy = await raw(server.port);
    const old = Buffer.alloc(12);
    old.writeUInt32BE(8, 0);
    old.writeUInt32BE(RELAY.first, 4);
    old.writeUInt32BE(RELAY.count, 8);
    legacy.socket.write(old);
    const wrong = await authenticatedAttempt(server.port, RELAY, REPLICA, Buffer.alloc(32, 1));
    await Promise.all([legacy.closed, wrong.closed]);
    // Each received the challenge and nothing else: no reply was routed to them.
    for (const r of [legacy, wrong]) assert.equal(r.received().length, 4 + 18, 'only a challenge');
    assert.equal(server.stats.dropBadHello, 2);
    client.send(0, Buffer.from('two'));
    await until('the second echo', () => got.length === 2);
    assert.deepEqual(got, ['echo:one', 'echo:two']);
    assert.equal(server.stats.dropNoRoute, undefined);
    await client.close();
    await server.close();
  });

  it('a HELLO captured from a real connection and replayed on another is refused (the acceptor nonce is fresh)', async () => {
    const server = await listener(0);
    // Capture: a fake replica 0 that sends its challenge and records the client's HELLO.
    let captured: Buffer | undefined;
    const capture = net.createServer((s) => {
      s.on('error', () => {});
      s.write(framed(encodeChallenge(newNonce())));
      s.on('data', (d: Buffer) => (captured = Buffer.concat([captured ?? Buffer.alloc(0), d])));
    });
    await new Promise<void>((r) => capture.listen(0, '127.0.0.1', r));
    const victim = await dialer(relayIds, [[0, (capture.address() as net.AddressInfo).port]]);
    victim.send(0, Buffer.from('queued'));
    await until('a captured hello', () => (captured?.length ?? 0) >= 4 + HELLO_BYTES);
    assert.ok(decodeHello(captured!.subarray(4, 4 + HELLO_BYTES)), 'a well-formed HELLO');
    // Replay it to the real replica, which sends another challenge first.
    const r = await raw(server.port);
    await r.frame();
    r.socket.write(captured!.subarray(0, 4 + HELLO_BYTES));
    await r.closed;
    assert.equal(server.stats.dropBadHello, 1);
    assert.equal(r.received().length, 4 + 18, 'only the challenge');
    server.send(RELAY.first, Buffer.from('reply'));
    assert.equal(server.stats.dropNoRoute, 1, 'no route to the claimed ids');
    await victim.close();
    await new Promise((res) => capture.close(res));
    await server.close();
  });

  it('an authenticated route is not replaced by an unauthenticated connection; a newer authenticated one (a restarted client) takes the ids over', async () => {
    const { server, client, got } = await replicaWithClient();
    const forged = await authenticatedAttempt(server.port, RELAY, REPLICA, Buffer.alloc(32, 2));
    await forged.closed;
    server.send(RELAY.first + 2, Buffer.from('still yours'));
    await until('a frame over the old route', () => got.length === 2);
    // The same ids, restarted: its connection proves the key over a fresh nonce.
    const restarted = await dialer(relayIds, [[0, server.port]]);
    const got2: string[] = [];
    restarted.onMessage((_f, b) => got2.push(Buffer.from(b).toString()));
    restarted.send(0, Buffer.from('back'));
    await until('the restarted client answered', () => got2.length === 1);
    assert.equal(server.stats.routeReplaced, 1, 'the old connection was closed');
    server.send(RELAY.first + 3, Buffer.from('yours now'));
    await until('a frame over the new route', () => got2.length === 2);
    assert.deepEqual(got2, ['echo:back', 'yours now']);
    assert.equal(got.length, 2, 'nothing more for the old connection');
    await restarted.close();
    await client.close();
    await server.close();
  });

  it('a hello naming a range that is not one known node (our own id, or ids without a key) is refused', async () => {
    const server = await TcpTransport.open({
      ids: [0],
      // Knows replica 1 and the client range RELAY only.
      connectionKeys: (first, count) =>
        (first === 1 && count === 1) || (first === RELAY.first && count === RELAY.count)
          ? testConnectionKey(KEY_SEED, { first, count }, REPLICA)
          : undefined,
      listen: LOOPBACK,
    });
    for (const claim of [
      { first: RELAY.first, count: 2 },
      { first: 0, count: 1 },
      { first: 5, count: 1 },
    ]) {
      const r = await authenticatedAttempt(server.port, claim, REPLICA);
      await r.closed;
    }
    assert.equal((server.stats.dropUnknownHello ?? 0) + (server.stats.dropBadHello ?? 0), 3);
    const ok = await authenticated(server.port, RELAY, REPLICA);
    ok.socket.destroy();
    await server.close();
  });

  it('a dialer sends nothing to an acceptor that cannot prove the key of the replica it dialed', async () => {
    // Replica 2 listening where the dialer expects replica 1: it refuses the HELLO (made for
    // replica 1's key), and the dialer never authenticates it.
    const other = await listener(2);
    const got: Uint8Array[] = [];
    other.onMessage((_f, b) => got.push(b));
    const t = await dialer([0], [[1, other.port]]);
    t.send(1, Buffer.from('for replica 1 only'));
    await until('the hello refused', () => (other.stats.dropBadHello ?? 0) >= 1);
    // An impostor that accepts any HELLO answers under its own key: the WELCOME is refused.
    const after: Buffer[] = [];
    const impostor = await fakeAcceptor(2, (s) => s.on('data', (d: Buffer) => after.push(d)));
    t.setPeer(1, { host: '127.0.0.1', port: impostor.port });
    await until('the welcome refused', () => (t.stats.dropBadWelcome ?? 0) >= 1);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(got.length, 0, 'no frame reached replica 2');
    assert.equal(after.length, 0, 'no frame reached the impostor');
    await t.close();
    await other.close();
    await new Promise((r) => impostor.server.close(r));
  });

  it('a connection that has not authenticated holds at most HANDSHAKE_BUFFER_BYTES and is closed at HANDSHAKE_TIMEOUT_MS', async () => {
    const server = await listener(0);
    // A partial frame above the handshake bound: closed at its length prefix.
    const big = await raw(server.port);
    const head = Buffer.alloc(4 + 1000);
    head.writeUInt32BE(MAX_FRAME_BYTES, 0);
    big.socket.write(head);
    await big.closed;
    assert.equal(server.stats['bad: handshake'], 1);
    // A partial hello, then silence: closed at the deadline, not before.
    const slow = await raw(server.port);
    const part = Buffer.alloc(4 + 20);
    part.writeUInt32BE(MAX_HANDSHAKE_FRAME_BYTES, 0);
    assert.ok(part.length < HANDSHAKE_BUFFER_BYTES);
    const t0 = Date.now();
    slow.socket.write(part);
    await slow.closed;
    const ms = Date.now() - t0;
    assert.ok(ms >= HANDSHAKE_TIMEOUT_MS - 50 && ms < HANDSHAKE_TIMEOUT_MS + 1000, `${ms} ms`);
    assert.equal(server.stats.dropHandshakeTimeout, 1);
    await until('both forgotten', () => server.connections.accepted === 0);
    assert.deepEqual(server.connections, { accepted: 0, handshaking: 0 });
    await server.close();
  });

  it('a process busy for longer than HANDSHAKE_TIMEOUT_MS reads the HELLO that came meanwhile before it judges the deadline', async () => {
    const server = await listener(0);
    const r = await raw(server.port);
    const na = decodeChallenge(await r.frame())!;
    const nd = newNonce();
    const key = testConnectionKey(KEY_SEED, RELAY, REPLICA);
    r.socket.write(
      framed(
        encodeHello(RELAY, nd, handshakeMac(key, HandshakeRole.Dialer, RELAY, REPLICA, na, nd)),
      ),
    );
    // The whole process stalls (a replica installing a state transfer): the deadline passes.
    const until = Date.now() + HANDSHAKE_TIMEOUT_MS + 200;
    while (Date.now() < until);
    assert.ok(decodeWelcome(await r.frame()), 'welcomed, not timed out');
    assert.equal(server.stats.dropHandshakeTimeout, undefined);
    r.socket.destroy();
    await server.close();
  });

  it('at most MAX_HANDSHAKES_PER_ADDRESS unauthenticated connections from one address: a new one evicts the oldest, and a real client still gets through', async () => {
    const server = await listener(0);
    server.onMessage((from, b) => server.send(from, b));
    const extra = 20;
    const flood = await Promise.all(
      Array.from({ length: MAX_HANDSHAKES_PER_ADDRESS + extra }, () => raw(server.port)),
    );
    await until('evictions', () => (server.stats.handshakeEvicted ?? 0) >= extra);
    assert.ok(server.connections.handshaking <= MAX_HANDSHAKES_PER_ADDRESS);
    const client = await dialer(relayIds, [[0, server.port]]);
    const got: Uint8Array[] = [];
    client.onMessage((_f, b) => got.push(b));
    client.send(0, Buffer.from('through'));
    await until('the echo', () => got.length === 1);
    assert.equal(server.connections.handshaking <= MAX_HANDSHAKES_PER_ADDRESS, true);
    for (const r of flood) r.socket.destroy();
    await client.close();
    await server.close();
  });
});

/**
 * Plays the dialer's side with `key` (wrong, or for another range) and leaves the connection
 * for the acceptor to close: it must not send a WELCOME.
 */
async function authenticatedAttempt(
  port: number,
  dialer: IdRange,
  acceptor: IdRange,
  key: Uint8Array = testConnectionKey(KEY_SEED, dialer, acceptor),
): Promise<Raw> {
  return (await sendHello(port, dialer, acceptor, key)).r;
}

describe('pbft TCP transport: reconnection', () => {
  it('re-dials a peer that restarted on the same port and delivers what was queued meanwhile', async () => {
    const first = await listener(1);
    const port = first.port;
    const a = await dialer([0], [[1, port]]);
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
    const second = await listener(1, { listen: { host: '127.0.0.1', port } });
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
        connectionKeys: connectionKeysFor(ids),
        peers: new Map([...cluster.ports].map(([id, port]) => [id, { host: '127.0.0.1', port }])),
      });
      // The replica processes check request signatures (by default, as production does).
      const signer = requestSignerFor();
      const client = new Client({ n: 4, transport, auth: (id) => authFor(id, 4, clients), signer });
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
