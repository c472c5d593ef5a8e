/** An NFS server to benchmark, named by the URL its ready line prints. */
import { type FileHandle, Nfs3Client, RpcClient, authSys } from 'nfs-server-ts';

export interface Target {
  host: string;
  port: number;
  /** MOUNT's port when it differs from NFS's (nfs-ganesha, knfsd with rpc.mountd). */
  mountPort?: number;
  path: string;
}

/** Parses `nfs://HOST/PATH?nfsport=P&mountport=P&version=3` (only version 3 is benchmarked). */
export function parseNfsUrl(url: string): Target {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`not a URL: ${url}`);
  }
  if (u.protocol !== 'nfs:') throw new Error(`not an nfs:// URL: ${url}`);
  const port = Number(u.searchParams.get('nfsport') ?? 2049);
  const mountport = Number(u.searchParams.get('mountport') ?? port);
  const version = u.searchParams.get('version') ?? '3';
  if (version !== '3') throw new Error(`only NFSv3 is benchmarked, not version ${version}`);
  for (const p of [port, mountport]) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`bad port in ${url}`);
  }
  const target: Target = {
    host: u.hostname || '127.0.0.1',
    port,
    path: decodeURIComponent(u.pathname) || '/',
  };
  if (mountport !== port) target.mountPort = mountport;
  return target;
}

export interface Session {
  nfs: Nfs3Client;
  root: FileHandle;
  close(): void;
}

export async function connect(t: Target): Promise<Session> {
  const rpc = await RpcClient.connect({ host: t.host, port: t.port, timeoutMs: 60_000 });
  const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
  let root: FileHandle;
  try {
    if (t.mountPort === undefined) root = await nfs.mount(t.path);
    else {
      const mrpc = await RpcClient.connect({ host: t.host, port: t.mountPort, timeoutMs: 60_000 });
      try {
        root = await new Nfs3Client(mrpc, authSys(1000, 1000)).mount(t.path);
      } finally {
        mrpc.close();
      }
    }
  } catch (e) {
    rpc.close();
    throw e;
  }
  return { nfs, root, close: () => rpc.close() };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
