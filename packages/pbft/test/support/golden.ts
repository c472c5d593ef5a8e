/**
 * Golden transcript files (test/testdata/*.txt): a small script of commands, each followed by
 * the transcript it prints, in the manner of etcd-io/raft's datadriven testdata.
 *
 *   # comments (kept when the file is rewritten)
 *   <command> <args...>
 *   ----
 *   <output lines, never blank>
 *   <blank line>
 *
 * Commands:
 *   cluster [f=1] [clients=1] [<replica option>=<number|true|false>...]
 *                         must come first; options are those of SCRIPT_OPTIONS
 *   request c<id> add <key> <delta> | request c<id> read <key>
 *                         the client starts a request (read: read-only); its frames are queued
 *   deliver [<count>]     delivers queued frames in order, all of them or `count`
 *   tick <ms>             moves the clock and ticks every running replica and client
 *   run <ms> [step=<ms>]  `tick step` then `deliver`, until `ms` passed (step 10 by default)
 *   crash r<i>            the replica takes no input and no ticks from now on
 *   isolate r<i>          everything to or from it is lost; it keeps ticking
 *   heal r<i>             ends `isolate`
 *   drop [<KIND>] [from=<node>] [to=<node>] [view=<v>] [seq=<n>]
 *                         frames that match are lost (and printed as dropped); `drop clear`
 *                         ends every drop rule
 *   state                 one line per replica: view, water marks, progress, log
 *
 * transcript.ts says what each output line holds.
 */
import { ReplicaOptions } from '../../src';
import { addOp, readOp } from './kv';
import { DropRule, Transcript } from './transcript';
import { MESSAGE_KINDS } from './transcript-format';

/** The replica options a `cluster` line may set (scalars only). */
export const SCRIPT_OPTIONS = [
  'checkpointInterval',
  'logWindow',
  'maxBatchRequests',
  'maxBatchBytes',
  'maxOutstandingPrePrepares',
  'largeRequestBytes',
  'tentative',
  'idleCheckpointMs',
  'holdCommits',
  'statusIntervalMs',
  'resendIntervalMs',
  'retainBelowStable',
  'viewChangeTimeoutMs',
  'stateTransferDelayMs',
  'fetchTimeoutMs',
] as const satisfies readonly (keyof ReplicaOptions)[];

/** The tick of `run` when the command does not name one (the rule tests' own step). */
export const DEFAULT_RUN_STEP_MS = 10;

export interface Block {
  /** Comment lines before the command, as written. */
  comments: string[];
  command: string;
  /** 1-based line of the command, for error messages. */
  line: number;
  expected: string[];
}

export const SEPARATOR = '----';

export function parseGolden(text: string): { blocks: Block[]; trailer: string[] } {
  const lines = text.split('\n');
  const blocks: Block[] = [];
  let comments: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const l = lines[i]!;
    if (l.trim() === '') {
      i++;
      continue;
    }
    if (l.startsWith('#')) {
      comments.push(l);
      i++;
      continue;
    }
    const line = i + 1;
    if (lines[i + 1] !== SEPARATOR)
      throw new Error(`line ${line}: '${SEPARATOR}' must follow a command`);
    const expected: string[] = [];
    for (i += 2; i < lines.length && lines[i]!.trim() !== ''; i++) expected.push(lines[i]!);
    blocks.push({ comments, command: l.trim(), line, expected });
    comments = [];
  }
  return { blocks, trailer: comments };
}

export function formatGolden(blocks: Block[], outputs: string[][], trailer: string[]): string {
  const parts = blocks.map((b, i) =>
    [...b.comments, b.command, SEPARATOR, ...outputs[i]!].join('\n'),
  );
  if (trailer.length > 0) parts.push(trailer.join('\n'));
  return parts.join('\n\n') + '\n';
}

/** The first command whose output differs from what the file expects, with both texts. */
export function firstMismatch(
  blocks: Block[],
  outputs: string[][],
): { block: Block; actual: string; expected: string } | undefined {
  for (let i = 0; i < blocks.length; i++) {
    const actual = outputs[i]!.join('\n');
    const expected = blocks[i]!.expected.join('\n');
    if (actual !== expected) return { block: blocks[i]!, actual, expected };
  }
  return undefined;
}

/** `key=value` arguments and the positional ones, in order. */
function splitArgs(args: string[]): { named: Map<string, string>; positional: string[] } {
  const named = new Map<string, string>();
  const positional: string[] = [];
  for (const a of args) {
    const eq = a.indexOf('=');
    if (eq > 0) named.set(a.slice(0, eq), a.slice(eq + 1));
    else positional.push(a);
  }
  return { named, positional };
}

function int(s: string | undefined, what: string): number {
  const v = Number(s);
  if (s === undefined || !Number.isInteger(v) || v < 0)
    throw new Error(`${what}: want a number, got ${s}`);
  return v;
}

/** `r2` or `c1000` to a node id. */
function nodeId(s: string | undefined, prefix?: 'r' | 'c'): number {
  const m = /^([rc])(\d+)$/.exec(s ?? '');
  if (!m || (prefix && m[1] !== prefix))
    throw new Error(`want ${prefix ?? 'r or c'}<id>, got ${s}`);
  return Number(m[2]);
}

function clusterOf(args: string[]): Transcript {
  const { named, positional } = splitArgs(args);
  if (positional.length > 0)
    throw new Error(`cluster takes key=value options, got ${positional[0]}`);
  const opts: Partial<Record<(typeof SCRIPT_OPTIONS)[number], number | boolean>> = {};
  let f = 1;
  let clients = 1;
  for (const [k, v] of named) {
    if (k === 'f') f = int(v, k);
    else if (k === 'clients') clients = int(v, k);
    else if ((SCRIPT_OPTIONS as readonly string[]).includes(k))
      opts[k as (typeof SCRIPT_OPTIONS)[number]] =
        v === 'true' ? true : v === 'false' ? false : int(v, k);
    else throw new Error(`unknown cluster option ${k}`);
  }
  return new Transcript(f, opts as Partial<ReplicaOptions>, clients);
}

function dropRule(args: string[]): DropRule {
  const { named, positional } = splitArgs(args);
  const rule: DropRule = {};
  if (positional.length > 1) throw new Error(`drop names one kind, got ${positional.join(' ')}`);
  const kind = positional[0];
  if (kind !== undefined && !MESSAGE_KINDS.includes(kind))
    throw new Error(`no message kind ${kind}`);
  if (kind !== undefined) rule.kind = kind;
  for (const [k, v] of named) {
    if (k === 'from') rule.from = nodeId(v);
    else if (k === 'to') rule.to = nodeId(v);
    else if (k === 'view') rule.view = int(v, k);
    else if (k === 'seq') rule.seq = int(v, k);
    else throw new Error(`unknown drop field ${k}`);
  }
  return rule;
}

function request(t: Transcript, args: string[]): string[] {
  const [client, kind, key, delta] = args;
  const id = nodeId(client, 'c');
  if (kind === 'add') return t.request(id, addOp(int(key, 'key'), int(delta, 'delta')), false);
  if (kind === 'read') return t.request(id, readOp(int(key, 'key')), true);
  throw new Error(`request: want add or read, got ${kind}`);
}

/** Runs a scenario's commands in order; returns each command's output lines. */
export function runGolden(blocks: Block[]): string[][] {
  let t: Transcript | undefined;
  return blocks.map((b) => {
    const [cmd, ...args] = b.command.split(/\s+/);
    try {
      if (cmd === 'cluster') {
        if (t) throw new Error('one cluster per file');
        t = clusterOf(args);
        return [];
      }
      if (!t) throw new Error('the first command must be cluster');
      return step(t, cmd!, args);
    } catch (e) {
      throw new Error(`line ${b.line}: ${b.command}: ${(e as Error).message}`, { cause: e });
    }
  });
}

function step(t: Transcript, cmd: string, args: string[]): string[] {
  const { named, positional } = splitArgs(args);
  switch (cmd) {
    case 'request':
      return request(t, args);
    case 'deliver':
      return t.deliver(positional[0] === undefined ? undefined : int(positional[0], 'count'));
    case 'tick':
      return t.tick(int(positional[0], 'ms'));
    case 'run':
      return t.run(
        int(positional[0], 'ms'),
        named.has('step') ? int(named.get('step'), 'step') : DEFAULT_RUN_STEP_MS,
      );
    case 'crash':
      t.crash(nodeId(positional[0], 'r'));
      return [];
    case 'isolate':
      t.isolate(nodeId(positional[0], 'r'));
      return [];
    case 'heal':
      t.heal(nodeId(positional[0], 'r'));
      return [];
    case 'drop':
      if (args[0] === 'clear') t.clearDrops();
      else t.drop(dropRule(args));
      return [];
    case 'state':
      return t.state();
    default:
      throw new Error(`unknown command ${cmd}`);
  }
}
