/**
 * The last-reply table (OSDI 1999 section 4.1: exactly-once per client) and its copies as of
 * each kept checkpoint. The table is part of the checkpointed state: its encoding goes into
 * every checkpoint digest, a rollback restores it, and a state transfer replaces it.
 */
import { sha256 } from '../crypto';
import { ClientRecord, copyTable, encodeReplyTable, keptResults } from './reply-table';

export class ClientTable {
  private readonly records = new Map<number, ClientRecord>();
  /** The table as of each kept checkpoint, by sequence number. */
  private readonly snapshots = new Map<number, Map<number, ClientRecord>>();

  get(clientId: number): ClientRecord | undefined {
    return this.records.get(clientId);
  }

  set(clientId: number, rec: ClientRecord): void {
    this.records.set(clientId, rec);
  }

  /** The table becomes `table` (a restore point, a state transfer); its records are taken as is. */
  replace(table: Map<number, ClientRecord>): void {
    this.records.clear();
    for (const [id, r] of table) this.records.set(id, r);
  }

  /** Gives back the results a restore point kept, where they match the table's digests. */
  adoptResults(results: { clientId: number; result: Uint8Array }[]): void {
    for (const { clientId, result } of results) {
      const rec = this.records.get(clientId);
      if (rec && sha256(result).equals(rec.resultDigest)) rec.result = result;
    }
  }

  /** The checkpoint digest: the page-store root and the table (TOCS 2002 section 5.3). */
  stateDigest(root: Uint8Array): Buffer {
    return sha256(root, encodeReplyTable(this.records));
  }

  /** Keeps a copy of the table as of checkpoint `seq`. */
  snapshot(seq: number): void {
    this.snapshots.set(seq, copyTable(this.records));
  }

  /** The table as of kept checkpoint `seq`, if kept. */
  snapshotAt(seq: number): Map<number, ClientRecord> | undefined {
    return this.snapshots.get(seq);
  }

  /** The latest kept checkpoint at or below `seq`. */
  latestAtOrBelow(seq: number): number | undefined {
    let best: number | undefined;
    for (const s of this.snapshots.keys())
      if (s <= seq && (best === undefined || s > best)) best = s;
    return best;
  }

  /** Rolls the table back to its copy at kept checkpoint `seq`. */
  restore(seq: number): void {
    this.records.clear();
    for (const [id, r] of this.snapshots.get(seq)!) this.records.set(id, { ...r });
  }

  /** What a 'stable' action persists for `seq`: the table as of it, and the results it keeps. */
  persisted(seq: number): {
    replyTable: Buffer;
    results: { clientId: number; result: Uint8Array }[];
  } {
    const table = this.snapshots.get(seq) ?? this.records;
    return { replyTable: encodeReplyTable(table), results: keptResults(table) };
  }

  /** The checkpoints whose tables are kept. */
  snapshotSeqs(): Iterable<number> {
    return this.snapshots.keys();
  }

  discardBelow(seq: number): void {
    for (const s of this.snapshots.keys()) if (s < seq) this.snapshots.delete(s);
  }

  discardAbove(seq: number): void {
    for (const s of this.snapshots.keys()) if (s > seq) this.snapshots.delete(s);
  }
}
