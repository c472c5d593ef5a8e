import type { FileSystem } from '../src/filesystem';
import { MemoryFileSystem } from '../src/memfs';
import { NfsServer, type NfsServerOptions } from '../src/nfs-server';
import { Nfs2Client, Nfs3Client, RpcClient, authSys } from '../src/client';

export interface Harness {
  server: NfsServer;
  port: number;
  fs: FileSystem;
  close(): Promise<void>;
}

/** An in-process server on an OS-assigned loopback port. */
export async function startServer(opts: Partial<NfsServerOptions> = {}): Promise<Harness> {
  const fs = opts.fs ?? new MemoryFileSystem();
  const server = new NfsServer({ ...opts, fs });
  const port = await server.listen({ port: 0, host: '127.0.0.1' });
  return { server, port, fs, close: () => server.close() };
}

export async function client3(port: number, transport: 'tcp' | 'udp' = 'tcp', uid = 1000) {
  const rpc = await RpcClient.connect({ port, transport });
  return new Nfs3Client(rpc, authSys(uid, uid));
}

export async function client2(port: number, transport: 'tcp' | 'udp' = 'udp', uid = 1000) {
  const rpc = await RpcClient.connect({ port, transport });
  return new Nfs2Client(rpc, authSys(uid, uid));
}

/** Resolves with the NfsError status a promise rejects with. */
export async function statusOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (e) {
    const s = (e as { status?: number }).status;
    if (typeof s === 'number') return s;
    throw e;
  }
  throw new Error('expected an NFS error, got success');
}
