/**
 * The view change's pure rules (OSDI 1999 section 4.4, with MAC-authenticated proofs): what a
 * VIEW-CHANGE must prove, and which pre-prepares 2f + 1 of them oblige a NEW-VIEW to carry. The
 * new primary and every backup run the same functions on the same VIEW-CHANGEs.
 */
import { primaryOf, quorum } from '../constants';
import { Frame, MsgType, ViewChangeMsg, reframe } from '../codec';
import { batchDigest } from '../crypto';

const EMPTY = new Uint8Array(0);

/** Digest of a null request (a gap a NEW-VIEW fills): no nondet value, no requests. */
export const NULL_DIGEST = batchDigest(EMPTY, []);

/** A VIEW-CHANGE whose proofs checked out: the prepared certificates it holds, by sequence number. */
export interface CheckedViewChange {
  sender: number;
  view: number;
  stable: number;
  stableDigest: Buffer;
  proof: Uint8Array[];
  /** seq -> view prepared in and batch digest. */
  certs: Map<number, { view: number; digest: Buffer }>;
  frame: Uint8Array;
}

/** What a NEW-VIEW must re-propose: the checkpoint it starts from and one digest per sequence number. */
export interface NewViewPlan {
  minS: number;
  stableDigest: Buffer;
  proof: Uint8Array[];
  /** `sources`: the replicas whose certificates name the digest, so hold the body. */
  slots: { seq: number; digest: Buffer; sources: number[] }[];
}

/** The cluster's parameters a VIEW-CHANGE is checked against. */
export interface ViewChangeRules {
  n: number;
  f: number;
  /** Checkpoint interval and log window. */
  K: number;
  L: number;
  /** The largest VIEW-CHANGE a correct replica sends (codec.ts). */
  maxViewChangeBytes: number;
  /** Digest of checkpoint 0, which a VIEW-CHANGE from 0 names without proof. */
  initialDigest: Buffer;
}

/**
 * Checks a VIEW-CHANGE's stable checkpoint proof and every prepared certificate in it.
 * `embedded` decodes and authenticates a quoted frame (undefined when it does not check).
 */
export function checkViewChange(
  rules: ViewChangeRules,
  embedded: (bytes: Uint8Array) => Frame | undefined,
  sender: number,
  msg: ViewChangeMsg,
  frame: Uint8Array,
): CheckedViewChange | undefined {
  const { n, f: faulty, K, L } = rules;
  const stableDigest = Buffer.from(msg.stableDigest);
  // What a NEW-VIEW quotes must fit in one (MAX_VIEW_CHANGE_FRAME_BYTES).
  if (frame.length > rules.maxViewChangeBytes) return undefined;
  if (msg.stable % K !== 0) return undefined;
  if (msg.stable > 0) {
    const signers = new Set<number>();
    for (const p of msg.proof) {
      const f = embedded(p);
      if (!f || f.body.type !== MsgType.Checkpoint) return undefined;
      if (f.body.seq !== msg.stable || !stableDigest.equals(f.body.digest)) return undefined;
      signers.add(f.sender);
    }
    if (signers.size < quorum(n)) return undefined;
  } else if (msg.proof.length !== 0 || !stableDigest.equals(rules.initialDigest)) return undefined;
  const certs = new Map<number, { view: number; digest: Buffer }>();
  for (const c of msg.certs) {
    const ppf = embedded(c.prePrepare);
    if (!ppf || ppf.body.type !== MsgType.PrePrepare) return undefined;
    const pp = ppf.body;
    if (!pp.batch) return undefined; // certificates carry digests, not batches
    if (ppf.sender !== primaryOf(pp.view, n) || pp.view >= msg.view) return undefined;
    if (pp.seq <= msg.stable || pp.seq > msg.stable + L || certs.has(pp.seq)) return undefined;
    const digest = Buffer.from(pp.batch);
    const backups = new Set<number>();
    for (const p of c.prepares) {
      const f = embedded(p);
      if (!f || f.body.type !== MsgType.Prepare || f.sender === ppf.sender) return undefined;
      if (f.body.view !== pp.view || f.body.seq !== pp.seq || !digest.equals(f.body.digest))
        return undefined;
      backups.add(f.sender);
    }
    if (backups.size < 2 * faulty) return undefined;
    certs.set(pp.seq, { view: pp.view, digest });
  }
  const { view, stable, proof } = msg;
  return { sender, view, stable, stableDigest, proof, certs, frame };
}

/**
 * The pre-prepares a NEW-VIEW must carry, computed from 2f + 1 checked VIEW-CHANGEs alike by
 * the new primary and every backup: from the latest stable checkpoint among them (min-s) to
 * the highest prepared sequence number (max-s), the certificate of the highest view for each
 * sequence number, a null request where none is prepared.
 */
export function planNewView(vcs: CheckedViewChange[]): NewViewPlan {
  let best = vcs[0]!;
  for (const c of vcs) if (c.stable > best.stable) best = c;
  const minS = best.stable;
  let maxS = minS;
  for (const c of vcs) for (const seq of c.certs.keys()) maxS = Math.max(maxS, seq);
  const slots: NewViewPlan['slots'] = [];
  for (let seq = minS + 1; seq <= maxS; seq++) {
    let chosen: { view: number; digest: Buffer } | undefined;
    for (const c of vcs) {
      const cert = c.certs.get(seq);
      if (cert && (!chosen || cert.view > chosen.view)) chosen = cert;
    }
    const digest = chosen?.digest ?? NULL_DIGEST;
    const sources = vcs.filter((c) => c.certs.get(seq)?.digest.equals(digest)).map((c) => c.sender);
    slots.push({ seq, digest, sources });
  }
  return { minS, stableDigest: best.stableDigest, proof: best.proof, slots };
}

/** A pre-prepare frame stripped to its batch digest (its MACs stand, see PrePrepareMsg). */
export function stripped(frame: Uint8Array, view: number, seq: number, batch: Buffer): Buffer {
  return reframe(frame, {
    type: MsgType.PrePrepare,
    view,
    seq,
    nondet: EMPTY,
    entries: [],
    batch,
  });
}
