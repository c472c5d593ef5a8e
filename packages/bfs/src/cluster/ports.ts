import * as fs from 'node:fs';
import * as net from 'node:net';

/** Whether `port` can be bound on `host` right now. */
export function canBind(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

/** Whether every port in `ports` can be bound. */
export async function allFree(ports: number[], host = '127.0.0.1'): Promise<boolean> {
  for (const p of ports) if (!(await canBind(p, host))) return false;
  return true;
}

/** Lowest base port tried: above the well-known and registered services most hosts run. */
export const FREE_PORT_FLOOR = 10000;
/** The kernel's ephemeral range when /proc does not say (Linux's default). */
const DEFAULT_EPHEMERAL_LOW = 32768;

/**
 * The first port of the kernel's ephemeral range. Ports the kernel hands out on its own (to
 * outgoing connections and to listeners on port 0) come from there, so a port below it that was
 * free when checked stays free until its owner binds it, unless another program picks it by
 * number too.
 */
export function ephemeralLow(): number {
  try {
    const [low] = fs
      .readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/);
    const n = Number(low);
    if (Number.isInteger(n) && n > 0 && n <= 65535) return n;
  } catch {
    // Not Linux, or no /proc: assume the default range.
  }
  return DEFAULT_EPHEMERAL_LOW;
}

/**
 * A base port B such that B .. B + count - 1 and, when `alsoOffset` is given, the same range
 * shifted by it are all free: replicas use B + i and their status servers B + i + offset. The
 * ports are chosen below the ephemeral range: replicas bind them only after the cluster's
 * config is written, and a port inside the range could meanwhile go to any outgoing connection.
 */
export async function freeConsecutivePorts(count: number, alsoOffset?: number): Promise<number> {
  const span = count + (alsoOffset ?? 0);
  let top = ephemeralLow() - span;
  // A host whose ephemeral range starts low leaves no such room: fall back to the ports above it.
  let bottom = FREE_PORT_FLOOR;
  if (top - bottom < 1000) {
    bottom = 20000;
    top = 65535 - span;
  }
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = bottom + Math.floor(Math.random() * (top - bottom));
    const ports = Array.from({ length: count }, (_, i) => base + i);
    if (alsoOffset !== undefined) ports.push(...ports.map((p) => p + alsoOffset));
    if (await allFree(ports)) return base;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}
