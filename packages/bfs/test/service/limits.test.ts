import { strict as assert } from 'node:assert';
import { MAX_OP_BYTES, MAX_RESULT_BYTES } from '@bfs/pbft';
import { MAX_IO_SIZE } from '../../src/fs/constants';

/** Headers around the payload: the op header with 16 gids, a 64-byte handle, XDR fields. */
const WRITE_OVERHEAD = 17 + 16 * 4 + (4 + 64) + 8 + 4 + 4 + 4;
/** READ3resok: status, post_op_attr (fattr3 is 84 bytes), count, eof, opaque length. */
const READ_OVERHEAD = 1 + 4 + 4 + 84 + 4 + 4 + 4;

describe('bfs: transfer sizes fit one replicated operation', () => {
  it('advertises WRITEs that fit PBFT MAX_OP_BYTES with their headers', () => {
    assert.ok(MAX_IO_SIZE + WRITE_OVERHEAD <= MAX_OP_BYTES);
  });
  it('advertises READs and READDIR replies that fit PBFT MAX_RESULT_BYTES', () => {
    assert.ok(MAX_IO_SIZE + READ_OVERHEAD <= MAX_RESULT_BYTES);
  });
});
