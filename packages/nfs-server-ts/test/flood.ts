/** Helpers for connection-flood tests (also used by packages/bfs's relay tests). */
import * as fs from 'node:fs';
import * as net from 'node:net';
import { DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_MAX_CONNECTIONS } from '../src/connections';

/**
 * What a flood of idle and half-sent connections may add to a server process's resident
 * memory: the buffered budget, one socket read (64 KiB) per connection before it is paused, and
 * 64 MiB for the bookkeeping of DEFAULT_MAX_CONNECTIONS sockets (about 16 KiB each measured) and
 * garbage not yet collected. A flood sends no whole calls, so the in-progress budget stays
 * empty.
 */
export const FLOOD_RSS_BOUND =
  DEFAULT_MAX_BUFFERED_BYTES + DEFAULT_MAX_CONNECTIONS * 64 * 1024 + 64 * 2 ** 20;

/** Resident memory of a process, from /proc/PID/status (VmRSS). */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for process ${pid}`);
  return Number(m[1]) * 1024;
}

export async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface RawConnection {
  socket: net.Socket;
  closed(): boolean;
}

/** A raw TCP connection from `localAddress` (any 127.x.y.z works on Linux loopback). */
export function connectFrom(port: number, localAddress: string): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    let closed = false;
    socket.on('close', () => (closed = true));
    socket.on('data', () => {});
    socket.once('error', (e) => {
      closed = true;
      reject(e);
    });
    socket.once('connect', () => {
      socket.on('error', () => {});
      resolve({ socket, closed: () => closed });
    });
  });
}

export interface Flood {
  opened: number;
  /** Flood connections the server has not closed yet. */
  open(): number;
  close(): void;
}

/**
 * Opens `addresses` x `perAddress` connections from 127.0.0.2 on; connection i then sends the
 * header of a 1 MiB record and `partialBytes(i)` bytes of it (0: it stays idle).
 */
export async function floodConnections(o: {
  port: number;
  addresses: number;
  perAddress: number;
  partialBytes: (i: number) => number;
  batch?: number;
}): Promise<Flood> {
  const conns: RawConnection[] = [];
  const header = Buffer.alloc(4);
  header.writeUInt32BE((0x80000000 | (1 << 20)) >>> 0);
  const total = o.addresses * o.perAddress;
  const batch = o.batch ?? 250;
  const body = Buffer.alloc(1 << 20, 0x5a);
  for (let start = 0; start < total; start += batch) {
    const opened = await Promise.allSettled(
      Array.from({ length: Math.min(batch, total - start) }, (_, k) => {
        const i = start + k;
        const a = i % o.addresses;
        return connectFrom(o.port, `127.0.${2 + Math.floor(a / 250)}.${2 + (a % 250)}`).then(
          (c) => {
            const n = o.partialBytes(i);
            if (n > 0) c.socket.write(Buffer.concat([header, body.subarray(0, n)]));
            return c;
          },
        );
      }),
    );
    for (const r of opened) if (r.status === 'fulfilled') conns.push(r.value);
  }
  return {
    opened: conns.length,
    open: () => conns.filter((c) => !c.closed()).length,
    close: () => conns.forEach((c) => c.socket.destroy()),
  };
}
