/**
 * `bfs exports`: shows and changes the exports in cluster.json. The replicas read them at start
 * and must all hold the same list (a replica with other rules would answer differently and its
 * state would diverge), so a change takes effect when every replica and relay is restarted
 * together; the commands say so.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type ExportEntry, ExportsError, formatExportEntry, parseExportsLine } from '../exports';
import {
  CONFIG_FILE,
  type ClusterConfig,
  ConfigError,
  EXPORT_KEY_FILE,
  loadCluster,
  writeExportKey,
} from './config';

/** Printed after every change: what an operator must do for it to take effect. */
export const RESTART_NOTE =
  'exports changed: stop every replica and relay, copy cluster.json to every host, then start ' +
  'them again (replicas must change their exports together; handles of a changed export go STALE)';

function save(dir: string, cfg: ClusterConfig): void {
  const file = path.join(dir, CONFIG_FILE);
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(cfg, null, 2) + '\n');
  fs.renameSync(tmp, file);
}

function entries(cfg: ClusterConfig): ExportEntry[] {
  return cfg.exports ?? [];
}

/** The exports as /etc/exports lines, each with its index (what handles are bound to). */
export function listExports(dir: string): string {
  const cfg = loadCluster(dir);
  const key = fs.existsSync(path.join(dir, EXPORT_KEY_FILE))
    ? ''
    : `# no ${EXPORT_KEY_FILE}: replicas derive the handle key from cluster.json (see \`bfs exports key\`)\n`;
  return (
    entries(cfg)
      .map((e, i) => `${i}\t${formatExportEntry(e)}`)
      .join('\n') +
    '\n' +
    key
  );
}

/** Appends the entries of one /etc/exports line. */
export function addExports(dir: string, line: string): ExportEntry[] {
  const cfg = loadCluster(dir);
  const added = parseExportsLine(line);
  cfg.exports = [...entries(cfg), ...added];
  save(dir, cfg);
  return added;
}

/** Removes the entries of `exportPath` (only those admitting `client` when given). */
export function removeExports(dir: string, exportPath: string, client?: string): number {
  const cfg = loadCluster(dir);
  const norm = '/' + exportPath.split('/').filter(Boolean).join('/');
  const keep = entries(cfg).filter(
    (e) => !(e.path === norm && (client === undefined || e.clients.includes(client))),
  );
  const removed = entries(cfg).length - keep.length;
  if (removed === 0)
    throw new ExportsError(`no export of ${norm}${client ? ` for ${client}` : ''}`);
  if (keep.length === 0) throw new ExportsError('a cluster needs at least one export');
  cfg.exports = keep;
  save(dir, cfg);
  return removed;
}

/** Writes keys/exports.key (refusing to replace one unless `force`). */
export function createExportKey(dir: string, force = false): string {
  loadCluster(dir);
  const file = path.join(dir, EXPORT_KEY_FILE);
  if (fs.existsSync(file) && !force)
    throw new ConfigError(`${file} exists; --force replaces it (every handle goes STALE)`);
  writeExportKey(dir);
  return file;
}
