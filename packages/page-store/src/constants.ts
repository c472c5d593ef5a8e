/** Page size of the original BFS library, in bytes. */
export const DEFAULT_PAGE_SIZE = 4096;
/** Children per interior node of the partition tree (256 in the original code). */
export const DEFAULT_FANOUT = 256;

/**
 * Levels of the partition tree above the pages needed to cover `pages` leaves with `fanout`
 * children per node, so that the root is a single node. One page needs one level (the root).
 */
export function treeLevels(pages: number, fanout: number = DEFAULT_FANOUT): number {
  if (!Number.isSafeInteger(pages) || pages < 1) throw new RangeError(`bad page count ${pages}`);
  if (!Number.isSafeInteger(fanout) || fanout < 2) throw new RangeError(`bad fanout ${fanout}`);
  let levels = 1;
  let span = fanout;
  while (span < pages) {
    span *= fanout;
    levels++;
  }
  return levels;
}
