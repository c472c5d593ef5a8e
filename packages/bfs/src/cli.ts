#!/usr/bin/env node
import { Command, InvalidArgumentError } from 'commander';
import { BYZANTINE_MODES, type ByzantineMode, isByzantineMode } from '@bfs/pbft';
import {
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
  DEFAULT_RECORD_TIMEOUT_MS,
} from 'nfs-server-ts';
import { VERSION } from './version';
import { readyUrl, serveUnreplicated } from './serve';
import { startRelay } from './cluster/node';
import { type SupervisedReplica, superviseReplica } from './cluster/supervisor';
import { type Say, commandMessages, createLogger } from './log';
import { up } from './cluster/up';
import { printStatus, watchStatus } from './cluster/status-command';
import { forkCheck, formatForkReport } from './cluster/fork-check';
import {
  RESTART_NOTE,
  addExports,
  createExportKey,
  listExports,
  removeExports,
} from './cluster/exports-command';
import { formatExportEntry } from './exports';
import { LOOKUP_CACHE_MS } from './lookup-cache';
import { PHASES, andrew } from './bench/andrew';
import { compare, formatCompare } from './bench/compare';
import { micro } from './bench/micro';
import { parseNfsUrl } from './bench/target';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CONFIG_FILE, initCluster, keyFile, replicaName } from './cluster/config';

function secondsArg(v: string): number {
  const x = Number(v);
  if (!(x >= 0)) throw new InvalidArgumentError('a number of seconds');
  return x;
}

function countArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('a positive integer');
  return n;
}

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
  const err = e as NodeJS.ErrnoException & { address?: string; port?: number };
  // A replica's ports come from cluster.json, not from an option: name what was taken.
  const where = `port ${err?.port ?? port}${err?.address ? ` of ${err.address}` : ''}`;
  const hint = port !== undefined ? '; pick another with --port' : ' (see cluster.json)';
  if (err?.code === 'EADDRINUSE') return `${where} is in use${hint}`;
  if (err?.code === 'EACCES')
    return `no permission to listen on ${where} (ports below 1024 need root)`;
  return err?.message ?? String(e);
}

/** One-shot commands (init, status, bench...) say their failure as a plain line. */
const plainly: Say = (msg) => process.stderr.write(msg + '\n');

/**
 * Runs a command's body; any failure becomes one message on stderr and exit status 1. Service
 * commands (up, replica, relay, serve) pass `say` from commandMessages: a JSON record when their
 * log is JSON.
 */
async function attempt(
  what: string,
  body: () => Promise<void>,
  port?: number,
  say: Say = plainly,
): Promise<void> {
  try {
    await body();
  } catch (e) {
    say(`${what}: ${explain(e, port)}`, 'error');
    process.exitCode = 1;
  }
}

/**
 * Shuts down cleanly on SIGINT or SIGTERM. Call it before printing a ready line: until a
 * handler is installed the signal's default action kills the process, and whoever read the line
 * may signal at once.
 */
function untilSignal(close: () => Promise<void>, say: Say): void {
  let closing = false;
  const stop = (sig: string) => {
    if (closing) return;
    closing = true;
    say(`bfs: ${sig}, shutting down`);
    close().then(
      () => process.exit(0),
      (e) => {
        say(`bfs: error while shutting down: ${explain(e)}`, 'error');
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
      const say = commandMessages();
      await attempt(
        'bfs serve',
        async () => {
          const s = await serveUnreplicated({
            dir: o.dir,
            port: o.port,
            host: o.host,
            stateSize: o.size,
          });
          untilSignal(() => s.close(), say);
          process.stdout.write(`ready ${s.url}\n`);
          say(`bfs serve: unreplicated BFS on ${o.host}:${s.port}, state in ${o.dir}`);
        },
        o.port,
        say,
      );
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
    .option('--if-missing', 'do nothing (and succeed) when DIR already holds a cluster')
    .action(
      async (o: {
        dir: string;
        replicas: number;
        hosts?: string;
        basePort?: number;
        size?: number;
        force?: boolean;
        ifMissing?: boolean;
      }) => {
        await attempt('bfs init', async () => {
          if (o.ifMissing && fs.existsSync(path.join(o.dir, CONFIG_FILE))) {
            process.stdout.write(`cluster already in ${o.dir}; nothing to do\n`);
            return;
          }
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
        });
      },
    );

  program
    .command('replica')
    .description('run replica ID of the cluster described in DIR')
    .option('--dir <dir>', 'cluster directory', './data')
    .requiredOption('--id <id>', 'replica id (0 .. n-1)', (v) => Number(v))
    .option('--listen <host>', 'address to listen on (default: the host in the config)')
    .option('--data <dir>', 'where to keep the LevelDB store (default DIR/replica-ID)')
    .option(
      '--byzantine <mode>',
      `misbehave for demonstrations: ${BYZANTINE_MODES.join(', ')}`,
      (v: string) => {
        if (!isByzantineMode(v))
          throw new InvalidArgumentError(`one of ${BYZANTINE_MODES.join(', ')}`);
        return v;
      },
    )
    .option(
      '--key-refresh <seconds>',
      'refresh the session keys of messages to this replica every this many seconds (0: only at start)',
      secondsArg,
      60,
    )
    .option(
      '--no-costly-invariants',
      'after every step check only the cheap invariants of the protocol core, not the log walk and checkpoint proof (for benchmarks)',
    )
    .action(
      async (o: {
        dir: string;
        id: number;
        listen?: string;
        data?: string;
        byzantine?: ByzantineMode;
        keyRefresh: number;
        costlyInvariants: boolean;
      }) => {
        // Once running, every line also says where the replica is: view and sequence numbers.
        let running: SupervisedReplica | undefined;
        const logger = createLogger({ replica: o.id }, () => {
          const r = running?.current()?.replica;
          return r ? { view: r.view, executed: r.lastExecuted, stable: r.lowWater } : {};
        });
        const say = commandMessages({ replica: o.id });
        await attempt(
          `bfs replica ${o.id}`,
          async () => {
            const r = (running = await superviseReplica({
              dir: o.dir,
              id: o.id,
              listenHost: o.listen,
              dataDir: o.data,
              logger,
              byzantine: o.byzantine,
              keyRefreshMs: o.keyRefresh * 1000,
              costlyInvariants: o.costlyInvariants,
            }));
            untilSignal(() => r.close(), say);
            process.stdout.write(`ready replica ${o.id}\n`);
          },
          undefined,
          say,
        );
      },
    );

  program
    .command('relay')
    .description('serve NFS on PORT and forward every call through PBFT to the replicas')
    .option('--dir <dir>', 'cluster directory', './data')
    .option('--port <port>', 'TCP and UDP port for portmap, MOUNT and NFS', portArg, 2049)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--name <name>', 'which relay of the config this is', 'relay-0')
    .option('--http-port <port>', 'serve the status page (/), /api/status and /metrics', portArg)
    .option(
      '--key-refresh <seconds>',
      'refresh the session keys of replies to this relay every this many seconds (0: only at start)',
      secondsArg,
      60,
    )
    .option(
      '--max-connections <n>',
      'NFS TCP connections in all (at the cap a newcomer replaces an idle one)',
      countArg,
      DEFAULT_MAX_CONNECTIONS,
    )
    .option(
      '--max-connections-per-client <n>',
      'NFS TCP connections from one client address',
      countArg,
      DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    )
    .option(
      '--idle-timeout <seconds>',
      'close an NFS TCP connection idle this long (0: never)',
      secondsArg,
      DEFAULT_IDLE_TIMEOUT_MS / 1000,
    )
    .option(
      '--record-timeout <seconds>',
      'close an NFS TCP connection whose call takes longer than this to arrive (0: never)',
      secondsArg,
      DEFAULT_RECORD_TIMEOUT_MS / 1000,
    )
    .option(
      '--no-write-back',
      'agree on every NFSv3 UNSTABLE WRITE before answering it, instead of answering it from the relay and flushing it before COMMIT',
    )
    .option(
      '--portmap-111',
      'serve the portmapper on port 111 too, where the Linux kernel client asks for the lock manager (NLM) and NSM ports',
    )
    .option(
      '--lookup-cache <seconds>',
      "serve NFSv3 LOOKUP replies from the relay for this long (0: off); changes through this relay drop them at once, other relays' changes show this late",
      secondsArg,
      LOOKUP_CACHE_MS / 1000,
    )
    .option(
      '--faulty-client <mode>',
      'misbehave as a faulty client for demonstrations and tests: partial-mac, bad-mac, bad-signature or retransmit (docs/pbft.md, "Attacks")',
    )
    .action(
      async (o: {
        dir: string;
        port: number;
        host: string;
        name: string;
        httpPort?: number;
        keyRefresh: number;
        maxConnections: number;
        maxConnectionsPerClient: number;
        idleTimeout: number;
        recordTimeout: number;
        writeBack: boolean;
        portmap111?: boolean;
        lookupCache: number;
        faultyClient?: string;
      }) => {
        const logger = createLogger({ relay: o.name });
        const say = commandMessages({ relay: o.name });
        await attempt(
          'bfs relay',
          async () => {
            const r = await startRelay({
              dir: o.dir,
              port: o.port,
              host: o.host,
              name: o.name,
              logger,
              httpPort: o.httpPort,
              keyRefreshMs: o.keyRefresh * 1000,
              writeBack: o.writeBack,
              portmap111: o.portmap111,
              lookupCacheMs: o.lookupCache * 1000,
              faultyClient: o.faultyClient,
              connections: {
                maxConnections: o.maxConnections,
                maxConnectionsPerAddress: o.maxConnectionsPerClient,
                idleTimeoutMs: o.idleTimeout * 1000,
                recordTimeoutMs: o.recordTimeout * 1000,
              },
            });
            untilSignal(() => r.close(), say);
            process.stdout.write(`ready ${readyUrl(o.host, r.port)}\n`);
            logger.info(`NFS on ${o.host}:${r.port}, forwarding to the replicas in ${o.dir}`);
            if (r.httpPort !== undefined) {
              logger.info(`status page http://${o.host}:${r.httpPort}/ (metrics on /metrics)`);
            }
          },
          o.port,
          say,
        );
      },
    );

  program
    .command('up')
    .description('start four replicas and a relay on loopback (creating the cluster if needed)')
    .option('--dir <dir>', 'cluster directory', './data')
    .option('--port <port>', 'NFS port for the relay (a free one if taken)', portArg, 2049)
    .option('--size <bytes>', 'logical size of the replicated state for a new cluster', sizeArg)
    .option(
      '--recovery-period <seconds>',
      'proactive recovery: restart each replica from its disk, in turn, every this many seconds',
      (v) => {
        const x = Number(v);
        if (!(x > 0)) throw new InvalidArgumentError('a positive number of seconds');
        return x;
      },
    )
    .option(
      '--portmap-111',
      "the relay serves the portmapper on port 111 too, so a kernel client's lock manager finds NLM (mount without nolock)",
    )
    .option(
      '--lookup-cache <seconds>',
      'the relay serves NFSv3 LOOKUP replies from its cache for this long (bfs relay --lookup-cache; 0: off)',
      secondsArg,
    )
    .action(
      async (o: {
        dir: string;
        port: number;
        size?: number;
        recoveryPeriod?: number;
        portmap111?: boolean;
        lookupCache?: number;
      }) => {
        const say = commandMessages();
        await attempt(
          'bfs up',
          async () => {
            const started = up({
              dir: o.dir,
              port: o.port,
              stateSize: o.size,
              recoveryPeriodMs:
                o.recoveryPeriod === undefined ? undefined : o.recoveryPeriod * 1000,
              portmap111: o.portmap111,
              lookupCacheMs: o.lookupCache === undefined ? undefined : o.lookupCache * 1000,
            });
            // Before up() prints the ready line; a signal during start-up closes once started.
            untilSignal(async () => (await started).close(), say);
            await started;
          },
          o.port,
          say,
        );
      },
    );

  program
    .command('status')
    .description("show each replica's view, progress and checkpoint digest, and whether they agree")
    .option('--dir <dir>', 'cluster directory', './data')
    .option('--json', 'print one JSON object (with --watch: one a second)')
    .option('--watch', 'redraw every second until interrupted')
    .option(
      '--relay <url>',
      "ask the relay's /api/status (e.g. http://127.0.0.1:7080): adds the relay's own observations",
    )
    .action(async (o: { dir: string; json?: boolean; watch?: boolean; relay?: string }) => {
      await attempt('bfs status', async () => {
        if (o.watch) await watchStatus(o.dir, o);
        process.exitCode = await printStatus(o.dir, o);
      });
    });
  program
    .command('fork-check')
    .description(
      "compare the stopped replicas' commit logs and name the first sequence number they differ at",
    )
    .option('--dir <dir>', 'cluster directory', './data')
    .option('--json', 'print one JSON object')
    .action(async (o: { dir: string; json?: boolean }) => {
      await attempt('bfs fork-check', async () => {
        const r = await forkCheck(o.dir);
        process.stdout.write(o.json ? JSON.stringify(r) + '\n' : formatForkReport(r));
        process.exitCode = r.seq === null ? 0 : 1;
      });
    });
  const exportsCmd = program
    .command('exports')
    .description('show or change what the cluster exports (cluster.json; /etc/exports syntax)');
  exportsCmd
    .command('list', { isDefault: true })
    .description('print each export as an /etc/exports line, after its index')
    .option('--dir <dir>', 'cluster directory', './data')
    .action(async (o: { dir: string }) => {
      await attempt('bfs exports', async () => {
        process.stdout.write(listExports(o.dir));
      });
    });
  exportsCmd
    .command('add')
    .description("add the exports of one /etc/exports line, e.g. '/pub 10.0.0.0/8(ro,all_squash)'")
    .argument(
      '<line>',
      'PATH CLIENT(OPTIONS) ...; options: rw ro root_squash no_root_squash all_squash anonuid=N anongid=N',
    )
    .option('--dir <dir>', 'cluster directory', './data')
    .action(async (line: string, o: { dir: string }) => {
      await attempt('bfs exports add', async () => {
        for (const e of addExports(o.dir, line))
          process.stdout.write(`added ${formatExportEntry(e)}\n`);
        process.stderr.write(RESTART_NOTE + '\n');
      });
    });
  exportsCmd
    .command('remove')
    .description('remove the exports of a path (only the one for CLIENT with --client)')
    .argument('<path>', 'exported path')
    .option('--client <rule>', "the client rule of the entry to remove ('*', address or CIDR)")
    .option('--dir <dir>', 'cluster directory', './data')
    .action(async (p: string, o: { dir: string; client?: string }) => {
      await attempt('bfs exports remove', async () => {
        const n = removeExports(o.dir, p, o.client);
        process.stdout.write(`removed ${n} export${n === 1 ? '' : 's'}\n`);
        process.stderr.write(RESTART_NOTE + '\n');
      });
    });
  exportsCmd
    .command('key')
    .description("write keys/exports.key, the replicas' secret that binds handles to exports")
    .option('--dir <dir>', 'cluster directory', './data')
    .option('--force', 'replace an existing key (every handle goes STALE)')
    .action(async (o: { dir: string; force?: boolean }) => {
      await attempt('bfs exports key', async () => {
        const file = createExportKey(o.dir, o.force);
        process.stdout.write(`wrote ${file}: copy it to every replica host (not to relays)\n`);
        process.stderr.write(RESTART_NOTE + '\n');
      });
    });
  const bench = program
    .command('bench')
    .description('benchmarks over NFSv3 (see docs/benchmarks.md)');
  const progress = (line: string) => process.stderr.write(`bench: ${line}\n`);
  bench
    .command('andrew')
    .description('Andrew-style benchmark: mkdir, copy, stat, read, compile I/O')
    .requiredOption(
      '--url <url>',
      'server, as its ready line prints it (nfs://HOST/?nfsport=P&...)',
    )
    .option('--copies <n>', 'copies of the source tree per run', (v) => Number(v), 1)
    .option('--runs <n>', 'runs; the median is reported', (v) => Number(v), 3)
    .option('--tree <dir>', 'copy this local directory instead of the generated tree')
    .option('--json', 'print, last, one JSON line with the seconds of each phase and total')
    .action(
      async (o: { url: string; copies: number; runs: number; tree?: string; json?: boolean }) => {
        await attempt('bfs bench andrew', async () => {
          const r = await andrew(parseNfsUrl(o.url), { ...o, progress });
          for (const p of [...PHASES, 'total'] as const) {
            process.stdout.write(`${p.padEnd(8)} ${r.median[p].toFixed(3)} s\n`);
          }
          if (o.json) process.stdout.write(JSON.stringify(r.median) + '\n');
        });
      },
    );
  bench
    .command('micro')
    .description("the paper's 0/0, 4/0, 0/4 operations: latency and throughput")
    .requiredOption('--url <url>', 'server, as its ready line prints it')
    .option('--ops <n>', 'sequential calls per latency case', (v) => Number(v), 500)
    .option('--seconds <s>', 'duration of each throughput case', (v) => Number(v), 3)
    .option('--outstanding <n>', 'calls in flight for throughput', (v) => Number(v), 32)
    .option('--json', 'print, last, one JSON line')
    .action(
      async (o: {
        url: string;
        ops: number;
        seconds: number;
        outstanding: number;
        json?: boolean;
      }) => {
        await attempt('bfs bench micro', async () => {
          const r = await micro(parseNfsUrl(o.url), { ...o, progress });
          if (o.json) process.stdout.write(JSON.stringify(r) + '\n');
        });
      },
    );
  bench
    .command('compare')
    .description(
      'BFS replicated vs unreplicated vs nfs-server-ts (and --extra servers), interleaved',
    )
    .option('--runs <n>', 'Andrew runs per system', (v) => Number(v), 3)
    .option('--copies <n>', 'copies of the source tree per run', (v) => Number(v), 1)
    .option('--tree <dir>', 'copy this local directory instead of the generated tree')
    .option(
      '--extra <name=url...>',
      'servers already running, e.g. ganesha=nfs://127.0.0.1/export?...',
    )
    .option('--out <dir>', 'where to write the JSON and SVG', 'bench-results')
    .option('--json', 'print, last, one JSON line with the Andrew medians per system')
    .action(
      async (o: {
        runs: number;
        copies: number;
        tree?: string;
        extra?: string[];
        out: string;
        json?: boolean;
      }) => {
        await attempt('bfs bench compare', async () => {
          const extra = (o.extra ?? []).map((e) => {
            const i = e.indexOf('=');
            if (i < 1) throw new Error(`--extra wants name=url, got ${e}`);
            return { name: e.slice(0, i), url: e.slice(i + 1) };
          });
          const r = await compare({ ...o, extra, outDir: o.out, progress });
          process.stdout.write(formatCompare(r) + '\n');
          if (o.json) {
            const medians = Object.fromEntries(
              Object.entries(r.andrew).map(([k, v]) => [k, v.median]),
            );
            process.stdout.write(
              JSON.stringify({ andrew: medians, ratioToUnreplicated: r.ratioToUnreplicated }) +
                '\n',
            );
          }
        });
      },
    );
  return program;
}

if (require.main === module) {
  buildProgram().parseAsync(process.argv);
}
