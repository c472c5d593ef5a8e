/**
 * The client ids of one client process, as the replicas see them: replies come one REPLY per
 * request, or, for ids created with `replyTo` set to the group's first id, one REPLY-BATCH per
 * executed batch and process, under a single MAC for the group id. Pure and synchronous, like
 * ClientCore: the Client library and the simulator both feed it frames.
 *
 * Batching the replies halves the MAC work of a loaded client process (four replies per request,
 * each with its own MAC and frame, were most of it) and saves each replica a MAC per request.
 */
import { ClientCore, ClientOutput } from './client-core';
import { HEADER_BYTES, MsgType, tryDecodeFrame } from './codec';

export interface GroupOutput {
  core: ClientCore;
  out: ClientOutput;
}

export class ClientGroup {
  /** Frames dropped before reaching a core, by reason. */
  readonly stats: Record<string, number> = {};
  private readonly byId = new Map<number, ClientCore>();

  /** `cores[0]` is the group id: the others' `replyTo`, whose key authenticates batches. */
  constructor(
    readonly n: number,
    readonly cores: ClientCore[],
  ) {
    if (cores.length === 0) throw new RangeError('a client group needs at least one id');
    for (const c of cores) this.byId.set(c.id, c);
  }

  get id(): number {
    return this.cores[0]!.id;
  }

  core(id: number): ClientCore | undefined {
    return this.byId.get(id);
  }

  /**
   * One frame for any id of the group: the cores it concerns and what each has to say. `from`:
   * the node its connection was authenticated as (ClientCore.handleMessage).
   */
  handleMessage(bytes: Uint8Array, now?: number, from?: number): GroupOutput[] {
    if (bytes.length < HEADER_BYTES + 20) return this.drop('dropMalformed');
    if (bytes[1] === MsgType.Reply) {
      // Routed by the reply's client id (after replica u32, view u32, timestamp u64); the core
      // checks all.
      const at = HEADER_BYTES + 16;
      const id =
        ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>>
        0;
      const core = this.byId.get(id);
      if (!core) return this.drop('dropUnknownClient');
      return [{ core, out: core.handleMessage(bytes, now, from) }];
    }
    if (bytes[1] !== MsgType.ReplyBatch) return this.drop('dropNotReply');
    const frame = tryDecodeFrame(bytes);
    if (!frame) return this.drop('dropReplyBatchMalformed');
    const m = frame.body;
    if (m.type !== MsgType.ReplyBatch || frame.sender >= this.n || m.replica !== frame.sender)
      return this.drop('dropReplyBatchMalformed');
    const owner = this.byId.get(m.group);
    if (!owner) return this.drop('dropReplyBatchUnknownGroup');
    // Late batches (every reply for a completed request) skip the MAC work.
    if (!m.replies.some((r) => this.byId.get(r.clientId)?.wants(r)))
      return this.drop('dropReplyBatchStale');
    if (!owner.auth.verifyFrame(frame.sender, frame.signed, frame.macs)) {
      owner.faults.note(from ?? frame.sender, 'badMac');
      return this.drop('dropReplyBatchBadMac');
    }
    const outs: GroupOutput[] = [];
    for (const r of m.replies) {
      const core = this.byId.get(r.clientId);
      if (!core) {
        this.count('dropUnknownClient');
        continue;
      }
      outs.push({ core, out: core.handleReply(frame.sender, r, now) });
    }
    return outs;
  }

  private drop(reason: string): GroupOutput[] {
    this.count(reason);
    return [];
  }

  private count(reason: string): void {
    this.stats[reason] = (this.stats[reason] ?? 0) + 1;
  }
}
