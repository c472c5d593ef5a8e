#!/usr/bin/env node
import { Command, InvalidArgumentError } from 'commander';
import { VERSION } from './version';
import { serveUnreplicated } from './serve';
import { initCluster, keyFile, replicaName } from './cluster/config';

function portArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('not a port');
  return n;
}

function sizeArg(v: string): number {
  const m = /^(\d+)([KMGT]?)$/i.exec(v.trim());
  if (!m) throw new InvalidArgumentError('a byte count such as 16G or 512M');
  const unit = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }[m[2].toUpperCase()]!;
  return Number(m[1]) * unit;
}

/** Turns the usual start-up failures into one line an operator can act on. */
function explain(e: unknown, port?: number): string {
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'EADDRINUSE') return `port ${port} is already in use; pick another with --port`;
  if (err?.code === 'EACCES')
    return `no permission to listen on port ${port} (ports below 1024 need root)`;
  return err?.message ?? String(e);
}

/** Runs until SIGINT/SIGTERM, then closes cleanly. */
function untilSignal(close: () => Promise<void>): void {
  let closing = false;
  const stop = (sig: string) => {
    if (closing) return;
    closing = true;
    process.stderr.write(`bfs: ${sig}, shutting down\n`);
    close().then(
      () => process.exit(0),
      (e) => {
        process.stderr.write(`bfs: error while shutting down: ${explain(e)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

export function buildProgram(): Command {
  const program = new Command();
  program.name('bfs').description('Byzantine-fault-tolerant NFS service (PBFT)').version(VERSION);

  program
    .command('serve')
    .description('serve the BFS file system unreplicated (BFS-nr), for comparison')
    .option('--dir <dir>', 'directory for the LevelDB store', './data-unreplicated')
    .option('--port <port>', 'TCP and UDP port for portmap, MOUNT and NFS', portArg, 2049)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--size <bytes>', 'logical size of the state (sparse)', sizeArg)
    .action(async (o: { dir: string; port: number; host: string; size?: number }) => {
      try {
        const s = await serveUnreplicated({
          dir: o.dir,
          port: o.port,
          host: o.host,
          stateSize: o.size,
        });
        process.stdout.write(`ready ${s.url}\n`);
        process.stderr.write(
          `bfs serve: unreplicated BFS on ${o.host}:${s.port}, state in ${o.dir}\n`,
        );
        untilSignal(() => s.close());
      } catch (e) {
        process.stderr.write(`bfs serve: ${explain(e, o.port)}\n`);
        process.exitCode = 1;
      }
    });

  program
    .command('init')
    .description('write the cluster config and one key pair per replica and relay')
    .option('--dir <dir>', 'cluster directory', './data')
    .option('--replicas <n>', 'number of replicas (3f + 1)', (v) => Number(v), 4)
    .option('--hosts <list>', 'comma-separated replica host names (one, or one per replica)')
    .option('--base-port <port>', 'port of replica 0 (others follow on one host)', portArg)
    .option('--size <bytes>', 'logical size of the replicated state (sparse)', sizeArg)
    .option('--force', 'replace an existing cluster and its keys')
    .action(
      async (o: {
        dir: string;
        replicas: number;
        hosts?: string;
        basePort?: number;
        size?: number;
        force?: boolean;
      }) => {
        try {
          const cfg = await initCluster({
            dir: o.dir,
            replicas: o.replicas,
            hosts: o.hosts?.split(',').map((h) => h.trim()),
            basePort: o.basePort,
            stateSize: o.size,
            force: o.force,
          });
          process.stdout.write(
            `cluster of ${cfg.replicas.length} replicas (f = ${cfg.f}) written to ${o.dir}\n`,
          );
          for (const [i, r] of cfg.replicas.entries()) {
            process.stdout.write(
              `  replica ${i}  ${r.host}:${r.port}  key ${keyFile(o.dir, replicaName(i))}\n`,
            );
          }
          for (const r of cfg.relays) {
            process.stdout.write(`  ${r.name}  key ${keyFile(o.dir, r.name)}\n`);
          }
        } catch (e) {
          process.stderr.write(`bfs init: ${explain(e)}\n`);
          process.exitCode = 1;
        }
      },
    );

  program
    .command('up')
    .description('start four replicas and a relay on loopback')
    .option('--dir <dir>', 'cluster directory', './data')
    .option('--port <port>', 'NFS port for the relay', '2049')
    .action(() => {
      process.stderr.write(
        'bfs up: the replicated cluster is not wired yet (replica and relay services are an open ' +
          'part of the bfs issue); `bfs serve` runs the same file system unreplicated.\n',
      );
      process.exitCode = 2;
    });
  return program;
}

if (require.main === module) {
  buildProgram().parseAsync(process.argv);
}
