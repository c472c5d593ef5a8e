/**
 * The names of the Byzantine behaviours a replica can be told to show (`bfs replica
 * --byzantine`, the simulator). Only the names live here, so the command line can check them
 * without loading the behaviours, which are in the `@bfs/pbft/testing` entry point.
 */
export const BYZANTINE_MODES = [
  'silent',
  'wrong-replies',
  'wrong-digests',
  'lie',
  'equivocate',
  'bad-nondet',
  'replay',
  'impersonate',
  'slow-primary',
  'slow-primary-commit-timer',
  'selective-primary',
  'flood',
] as const;
/**
 * silent: sends nothing; wrong-replies: wrong results and result digests in replies;
 * wrong-digests: wrong digests in prepares, commits and checkpoints; lie: both;
 * equivocate: as primary, sends about half the backups a different pre-prepare for the same
 * (view, seq) (another nondet value, requests reordered or one dropped);
 * bad-nondet: as primary, proposes a non-deterministic value backups must reject (a far-future
 * time); replay: also re-sends old frames it sent or received (earlier views, sequence numbers,
 * client requests), unchanged so their MACs still check;
 * impersonate: also sends frames claiming to come from another replica or from a client, MAC'd
 * with its own keys;
 * slow-primary: as primary, each PRE-PREPARE (full batches, one at a time) held until just
 * before the backups' commit timer or their per-request timer would fire;
 * slow-primary-commit-timer: the strategy from before primary monitoring, one request per batch
 * and each PRE-PREPARE held for SLOW_PRIMARY_SHARE of the backups' view-change timeout;
 * selective-primary: never lets the requests of the victim clients (`AttackOptions.victims`)
 * reach its core, so it never orders them;
 * flood: also sends well-formed useless frames (stale prepares, replays, junk batches, junk
 * replies) to every replica and every client it heard of, at `AttackOptions.floodBytesPerSec`.
 * These four are attacks on performance (Aardvark, NSDI 2009), not on safety: see
 * docs/pbft.md, "Attacks".
 */
export type ByzantineMode = (typeof BYZANTINE_MODES)[number];

export function isByzantineMode(s: string): s is ByzantineMode {
  return (BYZANTINE_MODES as readonly string[]).includes(s);
}
