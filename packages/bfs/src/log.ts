/**
 * Logs of the bfs processes: pino records, one JSON object per line when stderr is not a
 * terminal (for a log collector), readable lines when it is. BFS_LOG_FORMAT=json or text
 * overrides the choice. The service commands' own messages around the log (start-up, shutdown,
 * failures: commandMessages) follow the same rule.
 */
import pino, { type Logger } from 'pino';

export type LogFormat = 'json' | 'text';

/** BFS_LOG_FORMAT when it says json or text; otherwise text on a terminal, JSON elsewhere. */
export function logFormat(stream: { isTTY?: boolean } = process.stderr): LogFormat {
  const wanted = process.env.BFS_LOG_FORMAT;
  if (wanted === 'json' || wanted === 'text') return wanted;
  return stream.isTTY ? 'text' : 'json';
}

/**
 * A logger to stderr in logFormat(). `base` goes on every line (replica id, relay name);
 * `fields`, called for every line, adds what the process knows now (view, sequence numbers).
 */
export function createLogger(
  base: Record<string, unknown>,
  fields?: () => Record<string, unknown>,
): Logger {
  const options = { base, ...(fields ? { mixin: fields } : {}) };
  if (logFormat() === 'json') return pino(options, pino.destination(2));
  return pino(options, {
    write(line: string) {
      process.stderr.write(readableLogLine(line.trimEnd()) + '\n');
    },
  });
}

/** The record of a pino JSON line, or undefined for any other line. */
function logRecord(line: string): Record<string, unknown> | undefined {
  let rec: unknown;
  try {
    rec = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof rec !== 'object' || rec === null || Array.isArray(rec)) return undefined;
  return typeof (rec as { msg?: unknown }).msg === 'string'
    ? (rec as Record<string, unknown>)
    : undefined;
}

/** `line` as one JSON log line: itself if it is a pino record, else an info record of it. */
export function jsonLogLine(line: string, fields: Record<string, unknown> = {}): string {
  if (logRecord(line)) return line;
  return commandMessage(line, 'info', fields, 'json');
}

export type MessageLevel = 'info' | 'warn' | 'error';
const LEVEL_NUMBERS: Readonly<Record<MessageLevel, number>> = { info: 30, warn: 40, error: 50 };

/**
 * A command's own message (start-up, shutdown, a failure) by the rule of its log: a record as
 * pino writes them, with `fields`, in the JSON format; the message as it is in the text format
 * (a terminal shows it plainly, as it shows the command lines to paste).
 */
export function commandMessage(
  msg: string,
  level: MessageLevel = 'info',
  fields: Record<string, unknown> = {},
  format: LogFormat = logFormat(),
): string {
  if (format === 'text') return msg;
  return JSON.stringify({ level: LEVEL_NUMBERS[level], time: Date.now(), ...fields, msg });
}

/** Says a command's own messages on stderr (commandMessage), with `base` in every record. */
export type Say = (msg: string, level?: MessageLevel) => void;

export function commandMessages(base: Record<string, unknown> = {}): Say {
  return (msg, level = 'info') => process.stderr.write(commandMessage(msg, level, base) + '\n');
}

const LEVELS: Record<number, string> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};

/**
 * A pino JSON line as one readable line (time, level, message, fields; the process's own
 * identity left out: a terminal shows one process, or `bfs up` prefixes its name); others as is.
 */
export function readableLogLine(line: string): string {
  const rec = logRecord(line);
  if (!rec) return line;
  const {
    level,
    time,
    msg,
    pid: _pid,
    hostname: _host,
    replica: _replica,
    relay: _relay,
    ...fields
  } = rec;
  const when = typeof time === 'number' ? new Date(time).toISOString().slice(11, 23) : '';
  const extra = Object.entries(fields)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  const lvl = LEVELS[level as number] ?? String(level);
  return `${when} ${lvl === 'info' ? '' : lvl + ' '}${msg}${extra ? '  ' + extra : ''}`;
}
