#!/usr/bin/env node
/** `nfs-server-ts --memory|--dir PATH --port P`: serve one export '/' over TCP and UDP. */
import { Command } from 'commander';
import type { FileSystem } from './filesystem';
import { LocalFileSystem } from './localfs';
import { MemoryFileSystem } from './memfs';
import { NfsServer } from './nfs-server';

const program = new Command()
  .name('nfs-server-ts')
  .description('NFSv3/v2 + MOUNT + portmapper on one port, over memory or a local directory')
  .option('--memory', 'serve an in-memory file system')
  .option('--dir <path>', 'serve a local directory')
  .option('--port <port>', 'TCP and UDP port (0: any free port)', '2049')
  .option('--host <address>', 'address to listen on', '127.0.0.1')
  .option('--portmap', 'also listen on port 111 (needs privileges)')
  .option('--read-only', 'export read-only')
  .option('--no-root-squash', 'do not map uid 0 to nobody')
  .option('--check-permissions', 'enforce mode/owner/group permissions on every call')
  .option('--allow <cidr...>', 'client addresses or IPv4 CIDR blocks allowed (default all)')
  .option('--no-udp', 'TCP only');

async function main(): Promise<void> {
  program.parse();
  const o = program.opts<{
    memory?: boolean;
    dir?: string;
    port: string;
    host: string;
    portmap?: boolean;
    readOnly?: boolean;
    checkPermissions?: boolean;
    rootSquash: boolean;
    allow?: string[];
    udp: boolean;
  }>();
  if (!!o.memory === !!o.dir) program.error('give exactly one of --memory or --dir PATH');
  const port = Number(o.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) program.error(`bad port ${o.port}`);
  let fs: FileSystem;
  if (o.dir) {
    fs = new LocalFileSystem(o.dir);
  } else fs = new MemoryFileSystem();
  const server = new NfsServer({
    fs,
    export: {
      readOnly: o.readOnly,
      rootSquash: o.rootSquash,
      checkPermissions: o.checkPermissions,
      clients: o.allow,
    },
  });
  const bound = await server.listen({ port, host: o.host, udp: o.udp });
  if (o.portmap) await server.rpc.listen({ port: 111, host: o.host, udp: o.udp });
  const shown = o.host === '0.0.0.0' || o.host === '::' ? '127.0.0.1' : o.host;
  process.stdout.write(`ready nfs://${shown}/?nfsport=${bound}&mountport=${bound}&version=3\n`);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((e: unknown) => {
  process.stderr.write(`nfs-server-ts: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
