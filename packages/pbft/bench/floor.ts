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
import { ChildProcess, spawn } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import { createInterface } from 'node:readline';

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

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** Runs the three patterns `ops` times each (after a warm-up) and returns the p50s in ms. */
export async function messagePatternFloor(ops: number): Promise<Record<string, number>> {
  const n = 4;
  const compiled = __filename.endsWith('.js');
  const script = path.join(__dirname, compiled ? 'floor-process.js' : 'floor-process.ts');
  const loader = compiled ? [] : ['--import', 'tsx'];
  const procs: ChildProcess[] = [];
  const ports: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const p = spawn(process.execPath, [...loader, script, String(i)], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      procs.push(p);
      const lines = createInterface({ input: p.stdout! })[Symbol.asyncIterator]();
      const first = await lines.next();
      if (first.done) throw new Error(`floor process ${i} exited`);
      ports.push(Number(String(first.value).split(' ')[1]));
    }
    for (const p of procs) p.stdin!.write(`${JSON.stringify(ports)}\n`);
    const socks: net.Socket[] = [];
    let seq = 0;
    let need = 0;
    let got = 0;
    let done: (() => void) | undefined;
    for (let i = 0; i < n; i++) {
      const s = net.connect(ports[i]!, '127.0.0.1');
      s.setNoDelay(true);
      await new Promise((r) => s.once('connect', r));
      s.write(floorFrame(FloorMsg.Hello, 0, CLIENT));
      onFloorFrames(s, (type, at) => {
        if (type === FloorMsg.Reply && at === seq && ++got === need) done?.();
      });
      socks.push(s);
    }
    // The replicas connect to each other once they have the ports: wait for the mesh.
    await new Promise((r) => setTimeout(r, 300));
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
    const out: Record<string, number> = {};
    for (const pattern of ['pingpong', 'read', 'readWrite'] as const) {
      for (let i = 0; i < Math.min(500, ops); i++) await run(pattern);
      const xs: number[] = [];
      for (let i = 0; i < ops; i++) {
        const t = performance.now();
        await run(pattern);
        xs.push(performance.now() - t);
      }
      out[pattern] = Math.round(pct(xs, 50) * 1000) / 1000;
    }
    for (const s of socks) s.destroy();
    return {
      floorPingPongP50Ms: out.pingpong!,
      floorReadP50Ms: out.read!,
      floorReadWriteP50Ms: out.readWrite!,
      floorReadWriteVsPingPong: Math.round((out.readWrite! / out.pingpong!) * 1000) / 1000,
      floorReadVsPingPong: Math.round((out.read! / out.pingpong!) * 1000) / 1000,
    };
  } finally {
    for (const p of procs) p.kill('SIGKILL');
  }
}
