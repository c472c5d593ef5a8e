/**
 * Replies to clients (OSDI 1999 section 4.1; digest replies and REPLY-BATCH): the full result
 * from the designated replier and its digest from the others, sealed to the client, or, for
 * the client ids of one process that asked for it, batched under one MAC per frame.
 */
import { MAX_REPLY_BATCH_BYTES } from '../constants';
import {
  BatchedReply,
  MsgType,
  REPLY_BATCH_HEAD_BYTES,
  REPLY_DIGEST_ONLY,
  REPLY_READ_ONLY,
  REPLY_TENTATIVE,
  ReplyBatchMsg,
  ReplyMsg,
  RequestMsg,
  batchedReplySize,
} from '../codec';
import type { MacAuthenticator } from '../crypto';
import type { Outbox } from './outbox';
import type { ClientRecord } from './reply-table';

/** Replies of one batch held for their client processes (REPLY-BATCH), by process id. */
export type ReplyGroups = Map<number, BatchedReply[]>;

export class ReplySender {
  constructor(
    private readonly id: number,
    private readonly n: number,
    private readonly auth: MacAuthenticator,
    private readonly io: Outbox,
  ) {}

  /** The reply for `rec`: the full result from the designated replier, else its digest. */
  replyFor(
    clientId: number,
    timestamp: number,
    rec: ClientRecord,
    replier: number,
    readOnly: boolean,
  ): BatchedReply {
    const full = (replier === -1 || replier === this.id) && rec.result !== undefined;
    let flags = full ? 0 : REPLY_DIGEST_ONLY;
    if (rec.tentative) flags |= REPLY_TENTATIVE;
    if (readOnly) flags |= REPLY_READ_ONLY;
    return {
      view: rec.view,
      timestamp,
      clientId,
      flags,
      result: full ? rec.result! : rec.resultDigest,
    };
  }

  /** Sends the reply for `rec` as a REPLY of its own. */
  send(
    clientId: number,
    timestamp: number,
    rec: ClientRecord,
    replier: number,
    readOnly: boolean,
  ): void {
    this.seal(this.replyFor(clientId, timestamp, rec, replier, readOnly));
  }

  private seal(r: BatchedReply): void {
    const msg: ReplyMsg = { type: MsgType.Reply, replica: this.id, ...r };
    this.io.send([r.clientId], this.auth.sealTo(msg, r.clientId));
  }

  /**
   * The reply to request `m` of an executed batch: held in `groups` for its client process if
   * the request asked for that (replyTo, a client id we hold a key for), else sent now.
   */
  deliver(m: RequestMsg, reply: BatchedReply, groups: ReplyGroups): void {
    const g = m.replyTo;
    if (g !== undefined && g !== m.clientId && g >= this.n && this.auth.hasKey(g)) {
      const list = groups.get(g);
      if (list) list.push(reply);
      else groups.set(g, [reply]);
    } else this.seal(reply);
  }

  /** Sends the replies held for each client process. */
  flush(groups: ReplyGroups): void {
    for (const [g, list] of groups) this.sendBatches(g, list);
  }

  /**
   * The replies of one batch to one client process: REPLY-BATCH frames of at most
   * MAX_REPLY_BATCH_BYTES under one MAC each, for the process's group id; a lone reply (or one
   * too big to share a frame) goes as a REPLY.
   */
  private sendBatches(group: number, replies: BatchedReply[]): void {
    let start = 0;
    while (start < replies.length) {
      let end = start;
      let bytes = REPLY_BATCH_HEAD_BYTES;
      while (end < replies.length) {
        const size = batchedReplySize(replies[end]!);
        if (bytes + size > MAX_REPLY_BATCH_BYTES) break;
        bytes += size;
        end++;
      }
      if (end - start <= 1) {
        this.seal(replies[start]!);
        start++;
        continue;
      }
      const msg: ReplyBatchMsg = {
        type: MsgType.ReplyBatch,
        replica: this.id,
        group,
        replies: replies.slice(start, end),
      };
      this.io.send([group], this.auth.sealTo(msg, group));
      this.io.count('replyBatchSent');
      start = end;
    }
  }
}
