import { strict as assert } from 'node:assert';
import { type Credentials, MountProc, RpcError, XdrReader, XdrWriter } from 'nfs-server-ts';
import type { BfsService } from '../../src/service/bfs-service';
import { OpKind, decodeResult, encodeMountArgs, encodeOp } from '../../src/service/op';

/** The result body of an executed operation; an RpcError result is thrown. */
export function body(result: Uint8Array): Uint8Array {
  const r = decodeResult(result);
  if (r instanceof RpcError) throw r;
  return r;
}

/** Export `index`'s root handle (by MNT of `path`) on the read-only path. */
export function rootHandle(
  svc: BfsService,
  cred: Credentials = { uid: 1000, gid: 1000, gids: [1000] },
  index = 0,
  path = '/',
): Uint8Array {
  const args = new XdrWriter().string(path).bytes();
  const op = encodeOp({
    kind: OpKind.Mount,
    version: 3,
    procedure: MountProc.MNT,
    cred,
    readOnlyExport: false,
    args: encodeMountArgs(index, args),
  });
  const r = new XdrReader(body(svc.execute(op, 1, new Uint8Array(), true)));
  assert.equal(r.u32(), 0, 'MNT status');
  return r.opaque(64);
}
