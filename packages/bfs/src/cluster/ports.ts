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

/**
 * A base port B such that B .. B + count - 1 and, when `alsoOffset` is given, the same range
 * shifted by it are all free: replicas use B + i and their status servers B + i + offset.
 */
export async function freeConsecutivePorts(count: number, alsoOffset?: number): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    const ports = Array.from({ length: count }, (_, i) => base + i);
    if (alsoOffset !== undefined) ports.push(...ports.map((p) => p + alsoOffset));
    if (await allFree(ports)) return base;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}
