#!/usr/bin/env node
// Writes one file of MB MiB through an NFS server with the project's NFSv3 client: CHUNK-byte
// UNSTABLE WRITEs, WINDOW in flight, then COMMIT; prints MB/s. Usage: bulk-write.mjs PORT [MB]
import { performance } from 'node:perf_hooks';
import { Nfs3Client, RpcClient, authSys } from '../packages/nfs-server-ts/dist/index.js';

const port = Number(process.argv[2]);
const mb = Number(process.argv[3] ?? 20);
const chunk = Number(process.env.CHUNK ?? 131072);
const window = Number(process.env.WINDOW ?? 8);
const rpc = await RpcClient.connect({ port, timeoutMs: 60000 });
const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
const root = await nfs.mount('/');
const { handle } = await nfs.create(root, `bulk-${process.pid}-${Date.now()}`);
const data = Buffer.alloc(mb * 2 ** 20, 7);
const t0 = performance.now();
let next = 0;
async function worker() {
  while (next < data.length) {
    const at = next;
    next += chunk;
    await nfs.write(handle, at, data.subarray(at, at + chunk), 'unstable');
  }
}
await Promise.all(Array.from({ length: window }, worker));
await nfs.commit(handle);
const s = (performance.now() - t0) / 1000;
console.log(
  `${(mb / s).toFixed(1)} MB/s write (${mb} MiB, ${chunk / 1024} KiB x ${window} in flight, UNSTABLE + COMMIT)`,
);
rpc.close();
