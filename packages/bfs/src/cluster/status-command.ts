import { type ClusterConfig, loadCluster } from './config';
import { relayCandidates } from './relay-address';
import { type ClusterStatus, clusterStatus } from './status-page';
import { UP_STATUS_PAGE_PORT } from './up';

/** `bfs status --watch` redraws this often. */
export const WATCH_INTERVAL_MS = 1000;
/** How long `bfs status` waits for a relay it found by itself before asking the replicas. */
export const RELAY_FIND_TIMEOUT_MS = 1500;

export interface StatusOptions {
  json?: boolean;
  /**
   * The relay's HTTP address (`http://127.0.0.1:7080`): its /api/status adds what the relay
   * observed itself (wrong replies) to the verdicts. Without it the relay is looked for where
   * it recorded its address in the cluster directory (cluster/relay-address.ts), and the
   * replicas are asked directly when none answers.
   */
  relay?: string;
}

/** Whose observations a snapshot carries: a relay's, or why none answered. */
export type RelaySource =
  { url: string } | { tried: { url: string; why: string; error: string }[] };

export type StatusSnapshot = ClusterStatus & { relay: RelaySource };

/** The relay's /api/status at `base`; throws with the reason (ECONNREFUSED...) when it gives none. */
async function fetchRelay(base: string, timeoutMs: number): Promise<ClusterStatus> {
  let res: Response;
  try {
    res = await fetch(`${base.replace(/\/+$/, '')}/api/status`, {
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause;
    throw new Error(cause?.code ?? (e as Error).message, { cause: e });
  }
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return (await res.json()) as ClusterStatus;
}

/** Whether a relay's status is of the cluster `cfg` describes (its replicas at their addresses). */
function sameCluster(s: ClusterStatus, cfg: ClusterConfig): boolean {
  const want = cfg.replicas.map((r) => `${r.host}:${r.port}`);
  return (
    Array.isArray(s.replicas) &&
    s.replicas.length === want.length &&
    s.replicas.every((r, i) => r.address === want[i])
  );
}

/**
 * One snapshot of the cluster: the relay's view when one is named; else every replica's status,
 * now, with the observations of the first relay of the cluster that answers where it recorded
 * its address, or without a relay's when none does.
 */
export async function takeStatus(dir: string, relay?: string): Promise<StatusSnapshot> {
  if (relay) {
    const s = await fetchRelay(relay, 3000).catch((e: Error) => {
      throw new Error(`relay ${relay}: ${e.message}`, { cause: e });
    });
    return { ...s, relay: { url: relay } };
  }
  const cfg = loadCluster(dir);
  const tried: { url: string; why: string; error: string }[] = [];
  for (const c of relayCandidates(dir, cfg, UP_STATUS_PAGE_PORT)) {
    try {
      const s = await fetchRelay(c.url, RELAY_FIND_TIMEOUT_MS);
      // The relay's snapshot of the replicas may be a second or two old: the replicas are asked
      // now, and the relay gives what only it observed (its fault report) to the verdicts.
      if (sameCluster(s, cfg))
        return { ...(await clusterStatus(cfg, 2000, s.relayFaults)), relay: { url: c.url } };
      tried.push({ ...c, error: 'it serves another cluster' });
    } catch (e) {
      tried.push({ ...c, error: (e as Error).message });
    }
  }
  return { ...(await clusterStatus(cfg, 2000)), relay: { tried } };
}

/** The line that says whose observations the verdicts are of. */
export function relayLine(relay: RelaySource): string {
  if ('url' in relay) return `relay: ${relay.url} (its own observations are in the verdicts)`;
  const tried = relay.tried.map((t) => `${t.url} (${t.why}): ${t.error}`).join('; ');
  return (
    `no relay answers (tried ${tried}): verdicts from the replicas' observations only, ` +
    'without wrong replies; --relay URL names a relay'
  );
}

/** The status as `bfs status` prints it: a table, the digest verdict, then every verdict. */
export function formatStatus(s: ClusterStatus & { relay?: RelaySource }): string {
  const lines: string[] = [];
  const bad = s.disagreeing;
  const rows = [['replica', 'address', 'view', 'primary', 'executed', 'stable', 'stable digest']];
  s.replicas.forEach((r, i) => {
    if ('error' in r) rows.push([String(i), r.address, 'down', `(${r.error})`, '', '', '']);
    else
      rows.push([
        String(i),
        r.address,
        // A replica waiting for the NEW-VIEW takes no part in ordering yet.
        r.active ? String(r.view) : `${r.view} (changing)`,
        String(r.primary),
        String(r.lastExecuted),
        String(r.stable),
        (r.stableDigest ?? '').slice(0, 16) + (bad.includes(i) ? '  DISAGREES' : ''),
      ]);
  });
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  for (const row of rows)
    lines.push(
      row
        .map((c, k) => c.padEnd(widths[k]))
        .join('  ')
        .trimEnd(),
    );
  const down = s.replicas.filter((r) => 'error' in r).length;
  lines.push(
    bad.length > 0
      ? `checkpoint digests DISAGREE: replica(s) ${bad.join(', ')}`
      : `checkpoint digests agree among the ${s.replicas.length - down} replicas up (${down} down, f = ${s.f})`,
  );
  for (const r of s.replicas) {
    if ('error' in r || !r.disk?.failed) continue;
    const f = r.disk.failed;
    lines.push(
      `replica ${r.id}: DISK FAILING since ${f.at}: ${f.what}: ${f.error}; it votes no more ` +
        `and restarts from disk by itself once writes succeed${r.disk.restarting ? ' (restarting now)' : ''}`,
    );
  }
  for (const id of s.exportsDiffer ?? [])
    lines.push(
      `replica ${id}: EXPORTS DIFFER from the other replicas' (cluster.json exports or ` +
        'keys/exports.key): stop every replica, give them the same files, start them again',
    );
  if (s.split !== null)
    lines.push(
      `checkpoint ${s.split}: every replica voted and no digest has 2f + 1 votes: the replicas' ` +
        'histories FORKED (see "Replicas whose histories forked" in docs/operations.md)',
    );
  // Down and disk failures are said above; the verdicts add the faults attributed.
  const faults = (s.verdicts ?? []).filter((v) => v.kind !== 'down' && v.kind !== 'diskFailing');
  for (const v of faults) lines.push(`FAULTY: ${v.text}`);
  if (faults.length === 0)
    lines.push(
      `no replica is attributed a fault${s.relayFaults ? '' : " (replicas' observations only)"}`,
    );
  if (s.relay) lines.push(relayLine(s.relay));
  return lines.join('\n') + '\n';
}

/** Prints the cluster's status; returns the exit code (0 healthy, 1 disagreement or > f down). */
export async function printStatus(dir: string, o: StatusOptions = {}): Promise<number> {
  const s = await takeStatus(dir, o.relay);
  process.stdout.write(o.json ? JSON.stringify(s) + '\n' : formatStatus(s));
  return s.healthy ? 0 : 1;
}

/**
 * `bfs status --watch`: redraws every WATCH_INTERVAL_MS (one JSON line each with --json) until
 * interrupted; a snapshot that fails is said and tried again.
 */
export async function watchStatus(dir: string, o: StatusOptions = {}): Promise<never> {
  for (;;) {
    let text: string;
    try {
      const s = await takeStatus(dir, o.relay);
      text = o.json
        ? JSON.stringify(s) + '\n'
        : `${new Date().toLocaleTimeString()}  (every ${WATCH_INTERVAL_MS / 1000} s, ^C to stop)\n` +
          formatStatus(s);
    } catch (e) {
      text = o.json
        ? JSON.stringify({ error: (e as Error).message }) + '\n'
        : `status failed: ${(e as Error).message}\n`;
    }
    // In a terminal: clear and redraw in place; piped: one snapshot after the other.
    process.stdout.write(!o.json && process.stdout.isTTY ? `\x1b[H\x1b[2J${text}` : text);
    await new Promise((r) => setTimeout(r, WATCH_INTERVAL_MS));
  }
}
