#!/usr/bin/env node
/** `nfs-server-ts --memory|--dir PATH --port P`: serve one export '/' over TCP and UDP. */
import { randomBytes } from 'node:crypto';
import * as nodefs from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import type { FileSystem } from './filesystem';
import { LocalFileSystem } from './localfs';
import { MemoryFileSystem } from './memfs';
import { NfsServer } from './nfs-server';
import {
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
  DEFAULT_RECORD_TIMEOUT_MS,
} from './connections';

function count(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('a positive integer');
  return n;
}

function seconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('a number of seconds');
  return n;
}

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
  .option(
    '--check-permissions',
    'enforce mode/owner/group permissions on every call (with --dir as root, new files belong to the caller)',
  )
  .option('--allow <cidr...>', 'client addresses or IPv4 CIDR blocks allowed (default all)')
  .option('--no-udp', 'TCP only')
  .option(
    '--handle-key-file <path>',
    'with --dir: key file (created with a random key if missing, mode 0600) that makes handles unforgeable',
  )
  .option('--max-connections <n>', 'TCP connections in all', count, DEFAULT_MAX_CONNECTIONS)
  .option(
    '--max-connections-per-client <n>',
    'TCP connections from one client address',
    count,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
  )
  .option(
    '--idle-timeout <seconds>',
    'close a TCP connection idle this long (0: never)',
    seconds,
    DEFAULT_IDLE_TIMEOUT_MS / 1000,
  )
  .option(
    '--record-timeout <seconds>',
    'close a TCP connection whose call takes longer than this to arrive (0: never)',
    seconds,
    DEFAULT_RECORD_TIMEOUT_MS / 1000,
  );

/** Reads the key in `file` (hex), writing a fresh random one first if there is none. */
function handleKey(file: string): Uint8Array {
  if (!nodefs.existsSync(file)) {
    nodefs.writeFileSync(file, randomBytes(32).toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
  }
  const hex = nodefs.readFileSync(file, 'utf8').trim();
  if (!/^([0-9a-f]{2}){16,}$/i.test(hex)) {
    throw new Error(`${file}: expected at least 16 bytes in hex`);
  }
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

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
    maxConnections: number;
    maxConnectionsPerClient: number;
    idleTimeout: number;
    recordTimeout: number;
    handleKeyFile?: string;
  }>();
  if (!!o.memory === !!o.dir) program.error('give exactly one of --memory or --dir PATH');
  const port = Number(o.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) program.error(`bad port ${o.port}`);
  let fs: FileSystem;
  if (o.dir) {
    fs = new LocalFileSystem(o.dir, {
      handleKey: o.handleKeyFile ? handleKey(o.handleKeyFile) : undefined,
      // Checks against owners mean something only if new files get the caller's (needs root).
      ownNewObjects: !!o.checkPermissions && process.getuid?.() === 0,
    });
  } else fs = new MemoryFileSystem();
  const server = new NfsServer({
    fs,
    maxConnections: o.maxConnections,
    maxConnectionsPerAddress: o.maxConnectionsPerClient,
    idleTimeoutMs: o.idleTimeout * 1000,
    recordTimeoutMs: o.recordTimeout * 1000,
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
