#!/usr/bin/env node
import { Command } from 'commander';
import { VERSION } from './version';

/** The `bfs` command. Subcommands arrive with the bfs issue; until then `up` says so plainly. */
export function buildProgram(): Command {
  const program = new Command();
  program.name('bfs').description('Byzantine-fault-tolerant NFS service (PBFT)').version(VERSION);
  program
    .command('up')
    .description('start four replicas and a relay on loopback')
    .option('--dir <dir>', 'cluster directory', './data')
    .option('--port <port>', 'NFS port for the relay', '2049')
    .action(() => {
      process.stderr.write(
        'bfs up: the replicated cluster is not built yet (see the open bfs issue); nothing started.\n',
      );
      process.exitCode = 2;
    });
  return program;
}

if (require.main === module) {
  buildProgram().parse(process.argv);
}
