/**
 * Where a relay's HTTP port (status page, /api/status, /metrics) can be reached, recorded in the
 * cluster directory while the relay runs, so that `bfs status --dir D` finds the relay by itself
 * and takes its observations (wrong replies) into the verdicts. cluster.json stays as `bfs init`
 * wrote it (it is the same on every host); the record is a file of its own, written by the relay
 * when its HTTP port opens and removed when it closes. Best effort: a read-only cluster directory
 * (docker compose mounts it so) gets no record, and `bfs status` then tries the port `bfs up`
 * gives the relay, on this host.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ClusterConfig } from './config';

/** The record of relay `name` in cluster directory `dir`. */
export function relayAddressFile(dir: string, name: string): string {
  return path.join(dir, `${name}.http.json`);
}

export interface RelayAddress {
  name: string;
  /** Where to reach its HTTP port, the most specific first. */
  urls: string[];
  /** The relay process (a record whose process is gone is stale). */
  pid: number;
  /** ISO time the relay opened its HTTP port. */
  started: string;
}

/**
 * URLs of an HTTP port listening on `host`: that address itself, or for a wildcard address the
 * host's name (what other hosts of a deployment reach) and loopback.
 */
export function relayUrls(host: string, port: number): string[] {
  if (host === '0.0.0.0' || host === '::' || host === '')
    return [`http://${os.hostname()}:${port}`, `http://127.0.0.1:${port}`];
  return [`http://${host.includes(':') ? `[${host}]` : host}:${port}`];
}

/** Records where relay `name` serves HTTP; returns the error when the directory is read-only. */
export function recordRelayAddress(
  dir: string,
  name: string,
  host: string,
  port: number,
): Error | undefined {
  const record: RelayAddress = {
    name,
    urls: relayUrls(host, port),
    pid: process.pid,
    started: new Date().toISOString(),
  };
  const file = relayAddressFile(dir, name);
  try {
    fs.writeFileSync(`${file}.tmp`, JSON.stringify(record) + '\n');
    fs.renameSync(`${file}.tmp`, file);
    return undefined;
  } catch (e) {
    return e as Error;
  }
}

/** Removes the record of relay `name` if it is this process's (a newer relay's stays). */
export function forgetRelayAddress(dir: string, name: string): void {
  const file = relayAddressFile(dir, name);
  if (readRelayAddress(file)?.pid === process.pid) fs.rmSync(file, { force: true });
}

function readRelayAddress(file: string): RelayAddress | undefined {
  try {
    const r = JSON.parse(fs.readFileSync(file, 'utf8')) as RelayAddress;
    return Array.isArray(r.urls) && r.urls.every((u) => typeof u === 'string') ? r : undefined;
  } catch {
    return undefined;
  }
}

/** One place `bfs status` may find a relay, and why it looks there. */
export interface RelayCandidate {
  url: string;
  /** `recorded in D/relay-0.http.json`, or `the port bfs up gives it`. */
  why: string;
}

/**
 * Where to look for the cluster's relays: every relay's record in `dir`, or, when no relay left
 * one, `fallbackPort` on loopback (the port `bfs up` gives the relay when it is free).
 */
export function relayCandidates(
  dir: string,
  cfg: ClusterConfig,
  fallbackPort: number,
): RelayCandidate[] {
  const out: RelayCandidate[] = [];
  for (const r of cfg.relays) {
    const file = relayAddressFile(dir, r.name);
    const rec = readRelayAddress(file);
    for (const url of rec?.urls ?? []) out.push({ url, why: `${r.name}, recorded in ${file}` });
  }
  if (out.length === 0)
    out.push({
      url: `http://127.0.0.1:${fallbackPort}`,
      why: 'no relay recorded its address; the port bfs up gives it',
    });
  return out;
}
