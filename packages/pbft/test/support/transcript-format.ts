/**
 * Frames and actions as short text for golden transcripts (see transcript.ts): each message by
 * its kind and the fields its rules read (view, sequence number, digest, sender), each action
 * by what it asks the host to do. Everything printed comes from the bytes or the action, never
 * from time or object identity, so the same run prints the same lines on every machine.
 */
import {
  Action,
  Body,
  FETCH_HAS_META,
  FETCH_MISSING,
  MsgType,
  PrePrepareMsg,
  REPLY_DIGEST_ONLY,
  REPLY_READ_ONLY,
  REPLY_TENTATIVE,
  ReplicaStats,
  Slot,
  prePrepareBatch,
  tryDecodeFrame,
} from '../../src';
import { NULL_DIGEST } from '../../src/replica/new-view';
import { decodeTransferMessage } from '@bfs/page-store';

/** Hex digits of a digest shown: digests are deterministic, and 6 tell a run's apart. */
export const DIGEST_HEX_DIGITS = 6;

/** The wire names of the message kinds, as the paper writes them. */
const KIND: Record<MsgType, string> = {
  [MsgType.Request]: 'REQUEST',
  [MsgType.Reply]: 'REPLY',
  [MsgType.PrePrepare]: 'PRE-PREPARE',
  [MsgType.Prepare]: 'PREPARE',
  [MsgType.Commit]: 'COMMIT',
  [MsgType.Checkpoint]: 'CHECKPOINT',
  [MsgType.Status]: 'STATUS',
  [MsgType.ViewChange]: 'VIEW-CHANGE',
  [MsgType.NewView]: 'NEW-VIEW',
  [MsgType.Fetch]: 'FETCH',
  [MsgType.FetchReply]: 'FETCH-REPLY',
  [MsgType.ReplyBatch]: 'REPLY-BATCH',
  [MsgType.BatchFetch]: 'BATCH-FETCH',
  [MsgType.ForwardedNewView]: 'FORWARDED-NEW-VIEW',
};

/** Every kind's name, for scripts that name one (`drop PREPARE`). */
export const MESSAGE_KINDS: readonly string[] = Object.values(KIND);

export function hex(digest: Uint8Array): string {
  return Buffer.from(digest)
    .subarray(0, DIGEST_HEX_DIGITS / 2)
    .toString('hex');
}

/** A batch digest, `d:null` for the null request a NEW-VIEW fills a gap with. */
function batchHex(digest: Uint8Array): string {
  return NULL_DIGEST.equals(digest) ? 'd:null' : `d:${hex(digest)}`;
}

/** A node id as the transcripts write it: replicas `r0..`, clients `c1000..`. */
export function node(id: number, n: number): string {
  return id < n ? `r${id}` : `c${id}`;
}

export function nodes(ids: readonly number[], n: number): string {
  return ids.map((id) => node(id, n)).join(',');
}

/** The kv service's operations (test/support/kv.ts): add key delta, read key. */
function op(bytes: Uint8Array): string {
  const b = Buffer.from(bytes);
  if (b.length >= 7 && b[0] === 1) return `add ${b.readUInt16BE(1)} ${b.readUInt32BE(3)}`;
  if (b.length >= 7 && b[0] === 2) return `read ${b.readUInt16BE(1)}`;
  return `op ${b.length}B`;
}

/** A kv result is a counter value and the agreed time; the value is what a reader follows. */
export function describeResult(bytes: Uint8Array): string {
  return bytes.length >= 4 ? `=${Buffer.from(bytes).readUInt32BE(0)}` : `${bytes.length}B`;
}

function replyFlags(flags: number, body: Uint8Array): string {
  const parts = [];
  if (flags & REPLY_TENTATIVE) parts.push('tentative');
  if (flags & REPLY_READ_ONLY) parts.push('read-only');
  parts.push(flags & REPLY_DIGEST_ONLY ? `d:${hex(body)}` : describeResult(body));
  return parts.join(' ');
}

/** A batch by its requests (`c1000#1` is client 1000's request with timestamp 1). */
function batch(pp: PrePrepareMsg): string {
  const d = prePrepareBatch(pp);
  const digest = d ? batchHex(d) : 'd:malformed';
  if (pp.batch) return `${digest} (digest only)`;
  const reqs = pp.entries.map((e) => {
    if ('digest' in e) return `large:${hex(e.digest)}`;
    const f = tryDecodeFrame(e.inline);
    return f?.body.type === MsgType.Request ? `c${f.body.clientId}#${f.body.timestamp}` : '?';
  });
  return `${digest} [${reqs.length === 0 ? 'null' : reqs.join(' ')}]`;
}

/**
 * State-transfer pieces (the page-store transfer codec): a partition of the state's tree by
 * level and index, or a page by index; replies say how many children a partition lists.
 */
function pieces(list: Uint8Array[]): string {
  const each = list.map((bytes) => {
    const d = decodeTransferMessage(bytes);
    if (!d.ok) return 'malformed';
    const m = d.message;
    if (m.kind === 'page') return `page ${m.index}`;
    const part = `partition ${m.level}/${m.index}`;
    return 'children' in m ? `${part} children=${m.children.length}` : part;
  });
  return `[${each.join(' ')}]`;
}

/** An embedded frame (a certificate's or a NEW-VIEW's) by its sender and fields. */
function embedded(bytes: Uint8Array, n: number): string {
  const f = tryDecodeFrame(bytes);
  return f ? `${node(f.sender, n)}:${describeBody(f.body, n)}` : 'malformed';
}

export function describeBody(b: Body, n: number): string {
  const k = KIND[b.type];
  switch (b.type) {
    case MsgType.Request:
      return `${k} c${b.clientId}#${b.timestamp} ${op(b.op)}${b.readOnly ? ' read-only' : ''}`;
    case MsgType.Reply:
      return `${k} v${b.view} c${b.clientId}#${b.timestamp} ${replyFlags(b.flags, b.result)}`;
    case MsgType.ReplyBatch:
      return `${k} ${b.replies.map((r) => `c${r.clientId}#${r.timestamp}`).join(' ')}`;
    case MsgType.PrePrepare:
      return `${k} v${b.view} n${b.seq} ${batch(b)}`;
    case MsgType.Prepare:
    case MsgType.Commit:
      return `${k} v${b.view} n${b.seq} ${batchHex(b.digest)}`;
    case MsgType.Checkpoint:
      return `${k} n${b.seq} d:${hex(b.digest)}`;
    case MsgType.Status:
      return `${k} v${b.view} committed=${b.lastExecuted} h=${b.stable}`;
    case MsgType.ViewChange: {
      const certs = b.certs.map((c) => {
        const pp = tryDecodeFrame(c.prePrepare)?.body;
        if (pp?.type !== MsgType.PrePrepare) return 'malformed';
        const d = prePrepareBatch(pp);
        return `n${pp.seq}/v${pp.view}/${d ? batchHex(d) : '?'}+${c.prepares.length}p`;
      });
      return `${k} v${b.view} h=${b.stable} d:${hex(b.stableDigest)} prepared=[${certs.join(' ')}]`;
    }
    case MsgType.NewView: {
      const from = b.viewChanges.map((vc) => {
        const f = tryDecodeFrame(vc);
        return f ? node(f.sender, n) : '?';
      });
      const pps = b.prePrepares.map((pp) => {
        const body = tryDecodeFrame(pp)?.body;
        return body?.type === MsgType.PrePrepare ? `n${body.seq} ${batch(body)}` : 'malformed';
      });
      return `${k} v${b.view} V={${from.join(',')}} O={${pps.join('; ')}}`;
    }
    case MsgType.Fetch:
      return `${k} n${b.seq}${b.meta ? ' meta' : ''} ${pieces(b.requests)}`;
    case MsgType.FetchReply: {
      const flags = [
        b.flags & FETCH_HAS_META ? ' meta' : '',
        b.flags & FETCH_MISSING ? ' missing' : '',
      ];
      return `${k} n${b.seq}${flags.join('')} ${pieces(b.pieces)}`;
    }
    case MsgType.BatchFetch:
      return `${k} v${b.view} [${b.wanted.map((w) => `n${w.seq} ${batchHex(w.digest)}`).join(' ')}]`;
    case MsgType.ForwardedNewView:
      return `${k} ${embedded(b.newView, n)}`;
  }
}

/**
 * A frame on the wire; bytes that do not decode are said to be malformed, not thrown on. A frame
 * passed on by another node than its signer (a checkpoint proof, a relayed request) names its
 * signer with `by`, since the rules count votes by signer, not by who delivered them.
 */
export function describeFrame(bytes: Uint8Array, n: number, via: number): string {
  const f = tryDecodeFrame(bytes);
  if (!f) return `malformed ${bytes.length}B`;
  const signer =
    f.sender !== via && f.body.type !== MsgType.Request ? ` by ${node(f.sender, n)}` : '';
  return describeBody(f.body, n) + signer;
}

/** The kind of a frame, as `drop` rules name it; undefined when it does not decode. */
export function frameKind(bytes: Uint8Array): string | undefined {
  const f = tryDecodeFrame(bytes);
  return f ? KIND[f.body.type] : undefined;
}

/** The view or sequence number a frame names, for `drop ... view=v seq=n`; undefined for kinds without one. */
export function frameField(bytes: Uint8Array, field: 'view' | 'seq'): number | undefined {
  const b = tryDecodeFrame(bytes)?.body;
  return b && field in b ? (b as unknown as Record<typeof field, number>)[field] : undefined;
}

/** A frame `from` sent, and to whom: `PREPARE v0 n1 d:3fa2c1 >r0,r2,r3`. */
export function describeSend(
  s: { to: readonly number[]; bytes: Uint8Array },
  from: number,
  n: number,
): string {
  return `${describeFrame(s.bytes, n, from)} >${nodes(s.to, n)}`;
}

/** An action replica `r` returned. */
export function describeAction(a: Action, r: number, n: number): string {
  switch (a.kind) {
    case 'send':
      return describeSend(a, r, n);
    case 'executed': {
      const reqs = a.requests.map(
        (r) => `c${r.clientId}#${r.timestamp}${r.skipped ? ' skipped' : ''}`,
      );
      const mode = a.tentative ? ' tentative' : '';
      return `executed n${a.seq} ${batchHex(a.digest)}${mode} [${reqs.join(' ') || 'null'}]`;
    }
    case 'committed':
      return `committed n${a.seq}`;
    case 'prepared':
      return `prepared v${a.view} n${a.seq}`;
    case 'stable':
      return `stable n${a.seq} d:${hex(a.digest)} proof=${a.proof.length}`;
    case 'view':
      return `view ${a.view}`;
    case 'transferred':
      return `transferred n${a.seq} pages=${a.pages}`;
  }
}

/** A log entry by its sequence number, view and how far it got (the furthest phase). */
export function describeSlot(s: Slot): string {
  const phase = s.committed
    ? 'committed'
    : s.executed
      ? 'tentative'
      : s.prepared
        ? 'prepared'
        : s.pp
          ? 'pre-prepared'
          : s.header
            ? 'digest-only'
            : 'votes';
  return `n${s.seq}/v${s.view}:${phase}`;
}

/** The counters that moved between two snapshots, as `+name` (`+name=k` when by more than one). */
export function countersMoved(before: ReplicaStats, after: ReplicaStats): string[] {
  const moved: string[] = [];
  for (const key of Object.keys(after).sort() as (keyof ReplicaStats)[]) {
    const d = (after[key] ?? 0) - (before[key] ?? 0);
    if (d !== 0) moved.push(d === 1 ? `+${key}` : `+${key}=${d}`);
  }
  return moved;
}
