import type { PagedState } from '@bfs/page-store';

/**
 * A byte range of a larger paged state seen as a paged state of its own, so the file system and
 * the service's own header live in one page store (one digest, one checkpoint, one transfer).
 */
export class StateWindow implements PagedState {
  readonly pageSize: number;

  constructor(
    private readonly base: PagedState,
    private readonly start: number,
    readonly size: number,
  ) {
    if (start % base.pageSize !== 0) throw new RangeError('window must start on a page boundary');
    if (start < 0 || size < 1 || start + size > base.size) {
      throw new RangeError(`window [${start}, ${start + size}) outside the state`);
    }
    this.pageSize = base.pageSize;
  }

  read(offset: number, length: number): Uint8Array {
    this.check(offset, length);
    return this.base.read(this.start + offset, length);
  }

  write(offset: number, data: Uint8Array): void {
    this.check(offset, data.length);
    this.base.write(this.start + offset, data);
  }

  modify(offset: number, length: number): void {
    this.check(offset, length);
    this.base.modify(this.start + offset, length);
  }

  private check(offset: number, length: number): void {
    if (!(offset >= 0 && length >= 0 && offset + length <= this.size)) {
      throw new RangeError(`range [${offset}, ${offset + length}) outside the window`);
    }
  }
}
