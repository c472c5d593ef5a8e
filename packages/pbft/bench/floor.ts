/**
 * The message-pattern floor: what the operating system and Node's event loop alone cost on this
 * host, for the message patterns the benchmark compares. Four processes relay length-prefixed
 * frames over loopback TCP (no crypto, no protocol state, no log):
 *
 * - ping-pong: client -> server -> client, the unreplicated pattern;
 * - read: client -> 3 servers -> client, which waits for all 3 (read-only, 2f + 1 replies);
 * - read-write: client -> primary -> PRE-PREPARE to 3 backups -> each backup PREPAREs to the
 *   other 3 -> each replica replies once it holds 2f matching prepares (the primary's
 *   pre-prepare counting as a backup's own), and the client waits for 3 replies. COMMITs are
 *   left out: held commits travel in the same writes as the next batch's messages.
 *
 * The ratio of read-write to ping-pong here bounds what any implementation of the PBFT pattern
 * can reach against the unreplicated pattern on the same host (see docs/pbft.md, "Benchmark").
 */
import * as net from 'node:net';
import * as path from 'node:path';
import { startProcesses } from '../test/support/processes';
import { latency, r3 } from './measure';

export enum FloorMsg {
  Echo = 1,
  Request = 2,
  PrePrepare = 3,
  Prepare = 4,
  Reply = 5,
  Hello = 6,
}

/** Frame: u32 length, then u8 type, u32 seq, u32 sender. */
export function floorFrame(type: FloorMsg, seq: number, sender: number): Buffer {
  const b = Buffer.allocUnsafe(13);
  b.writeUInt32BE(9, 0);
  b[4] = type;
  b.writeUInt32BE(seq, 5);
  b.writeUInt32BE(sender, 9);
  return b;
}

/** Calls `on` for every whole frame on the socket. */
export function onFloorFrames(
  socket: net.Socket,
  on: (type: FloorMsg, seq: number, sender: number) => void,
): void {
  let buf: Buffer = Buffer.alloc(0);
  socket.on('data', (d: Buffer) => {
    buf = buf.length > 0 ? Buffer.concat([buf, d]) : d;
    while (buf.length >= 13) {
      on(buf[4] as FloorMsg, buf.readUInt32BE(5), buf.readUInt32BE(9));
      buf = buf.subarray(13);
    }
  });
}

export const CLIENT = 1000;

/** Runs the three patterns `ops` times each (after a warm-up) and returns the p50s in ms. */
export async function messagePatternFloor(ops: number): Promise<Record<string, number>> {
  const cluster = await startProcesses(4, (id) => ({ id }), path.join(__dirname, 'floor-process'));
  const socks: net.Socket[] = [];
  try {
    let seq = 0;
    let need = 0;
    let got = 0;
    let done: (() => void) | undefined;
    for (const port of cluster.ports.values()) {
      const s = net.connect(port, '127.0.0.1');
      s.setNoDelay(true);
      await new Promise((r) => s.once('connect', r));
      s.write(floorFrame(FloorMsg.Hello, 0, CLIENT));
      onFloorFrames(s, (type, at) => {
        if (type === FloorMsg.Reply && at === seq && ++got === need) done?.();
      });
      socks.push(s);
    }
    const run = (pattern: 'pingpong' | 'read' | 'readWrite'): Promise<void> =>
      new Promise((resolve) => {
        seq++;
        got = 0;
        done = resolve;
        if (pattern === 'pingpong') {
          need = 1;
          socks[0]!.write(floorFrame(FloorMsg.Echo, seq, CLIENT));
        } else if (pattern === 'read') {
          need = 3;
          for (let i = 0; i < 3; i++) socks[i]!.write(floorFrame(FloorMsg.Echo, seq, CLIENT));
        } else {
          need = 3;
          socks[0]!.write(floorFrame(FloorMsg.Request, seq, CLIENT));
        }
      });
    const pingpong = (await latency(() => run('pingpong'), ops)).p50;
    const read = (await latency(() => run('read'), ops)).p50;
    const readWrite = (await latency(() => run('readWrite'), ops)).p50;
    return {
      floorPingPongP50Ms: pingpong,
      floorReadP50Ms: read,
      floorReadWriteP50Ms: readWrite,
      floorReadWriteVsPingPong: r3(readWrite / pingpong),
      floorReadVsPingPong: r3(read / pingpong),
    };
  } finally {
    for (const s of socks) s.destroy();
    // The floor processes print no STATS: stop them directly.
    for (const p of cluster.procs) p.kill('SIGKILL');
  }
}
