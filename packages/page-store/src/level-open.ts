/**
 * Opening a LevelDB database so that damage is never used silently. LevelDB (as `classic-level`
 * builds it, without paranoid checks) repairs a damaged write-ahead log at open by dropping the
 * records it cannot read, and says so only in the database's info log, the `LOG` file, which it
 * starts afresh at every open. A torn MANIFEST fails the open; a damaged table fails the reads
 * that touch it. All three come back here as damage. A database found damaged is marked so
 * (DAMAGE_MARK_FILE) and stays damaged until the caller moves it aside.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Level } from 'level';

/** The `code`s of `e` and of the errors it wraps (`cause`), outermost first. */
export function errorCodes(e: unknown): string[] {
  const codes: string[] = [];
  for (let c = e, depth = 0; c instanceof Error && depth < 8; depth++) {
    const code = (c as { code?: unknown }).code;
    if (typeof code === 'string') codes.push(code);
    c = (c as { cause?: unknown }).cause;
  }
  return codes;
}

/** True when `e` (or an error it wraps) is LevelDB saying its files are damaged. */
export function isCorruption(e: unknown): boolean {
  return errorCodes(e).includes('LEVEL_CORRUPTION');
}

/** The lines of this open's info log that report damage LevelDB recovered from by dropping data. */
function recoveredDamage(dir: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, 'LOG'), 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').filter((l) => /corruption/i.test(l));
}

/**
 * File left in a database found damaged: LevelDB has rewritten it by then, so the next open
 * (after a crash before the caller moved it aside) would find nothing wrong with it.
 */
export const DAMAGE_MARK_FILE = 'DAMAGED';

/** Writes `file` and fsyncs it before returning. */
export function writeSynced(file: string, text: string): void {
  const fd = fs.openSync(file, 'w', 0o600);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export class LevelDamageError extends Error {
  constructor(
    readonly dir: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${dir}: ${message}`, options);
    this.name = 'LevelDamageError';
  }
}

/**
 * Opens the database at `dir` (creating it if needed). Throws LevelDamageError when the open
 * fails for damage, or succeeded only by dropping unreadable records; other failures (the
 * database locked by another process, a full disk) are thrown as they come. `compression`
 * (Snappy, on by default) applies to what is written from now on; LevelDB reads either.
 */
export async function openLevelChecked(
  dir: string,
  options: { compression?: boolean } = {},
): Promise<Level<Uint8Array, Uint8Array>> {
  const mark = path.join(dir, DAMAGE_MARK_FILE);
  if (fs.existsSync(mark)) throw new LevelDamageError(dir, fs.readFileSync(mark, 'utf8').trim());
  const db = new Level<Uint8Array, Uint8Array>(dir, {
    keyEncoding: 'view',
    valueEncoding: 'view',
    compression: options.compression ?? true,
  });
  try {
    await db.open();
  } catch (e) {
    if (isCorruption(e)) throw new LevelDamageError(dir, 'LevelDB cannot open it', { cause: e });
    throw e;
  }
  const damage = recoveredDamage(dir);
  if (damage.length > 0) {
    await db.close();
    const why = `LevelDB dropped unreadable records when it opened: ${damage[0].trim()}`;
    writeSynced(mark, `${why}\n`);
    throw new LevelDamageError(dir, why);
  }
  return db;
}
