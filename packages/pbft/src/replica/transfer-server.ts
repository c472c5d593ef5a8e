/**
 * The serving side of state transfer (OSDI 1999 section 4.3, TOCS 2002 section 5.3.2): pieces
 * of a kept checkpoint for a replica that fetches it, at most MAX_FETCH_REPLY_BYTES a reply.
 */
import { decodeTransferMessage, encodeTransferMessage, serveFetch } from '@bfs/page-store';
import type { TransferableState } from '@bfs/page-store';
import { MAX_FETCH_REPLY_BYTES } from '../constants';
import { FETCH_HAS_META, FETCH_MISSING, FetchMsg, FetchReplyMsg, MsgType } from '../codec';
import type { Outbox } from './outbox';
import { ClientRecord, encodeReplyTable } from './reply-table';

const EMPTY = new Uint8Array(0);

/**
 * The reply to a FETCH for checkpoint `msg.seq`, given the state, the reply table as of that
 * checkpoint (if kept) and our stable checkpoint: only checkpoints a quorum vouched for (at or
 * above our stable one) are served.
 */
export function answerFetch(
  state: TransferableState,
  table: Map<number, ClientRecord> | undefined,
  lowWater: number,
  msg: FetchMsg,
  io: Outbox,
): FetchReplyMsg {
  const root = state.digestAt(msg.seq);
  const reply: FetchReplyMsg = {
    type: MsgType.FetchReply,
    seq: msg.seq,
    flags: 0,
    meta: EMPTY,
    pieces: [],
  };
  if (!table || !root || msg.seq < lowWater) {
    reply.flags = FETCH_MISSING;
    io.count('fetchMissing');
    return reply;
  }
  if (msg.meta) {
    reply.flags = FETCH_HAS_META;
    reply.meta = Buffer.concat([root, encodeReplyTable(table)]);
  }
  let bytes = reply.meta.length;
  for (const raw of msg.requests) {
    const d = decodeTransferMessage(raw);
    if (
      !d.ok ||
      (d.message.kind !== 'partition' && d.message.kind !== 'page') ||
      'data' in d.message ||
      'children' in d.message ||
      d.message.seq !== msg.seq
    ) {
      io.count('dropBadFetch');
      continue;
    }
    let piece: Uint8Array;
    try {
      piece = encodeTransferMessage(serveFetch(state, d.message));
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      io.count('dropBadFetch');
      continue;
    }
    if (bytes + piece.length > MAX_FETCH_REPLY_BYTES) break;
    bytes += piece.length;
    reply.pieces.push(piece);
  }
  io.count('fetchServed');
  return reply;
}
