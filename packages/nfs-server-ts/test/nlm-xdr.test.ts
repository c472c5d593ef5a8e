import { strict as assert } from 'node:assert';
import { Reader } from '@jsonjoy.com/buffers/lib/Reader';
import { NlmDecoder } from '@jsonjoy.com/json-pack/lib/nfs/v3/locks/NlmDecoder';
import { NlmEncoder } from '@jsonjoy.com/json-pack/lib/nfs/v3/locks/NlmEncoder';
import * as msg from '@jsonjoy.com/json-pack/lib/nfs/v3/locks/messages';
import * as st from '@jsonjoy.com/json-pack/lib/nfs/v3/locks/structs';
import {
  NlmProc,
  XdrReader,
  decodeNlmCancelArgs,
  decodeNlmLockArgs,
  decodeNlmNotify,
  decodeNlmRes,
  decodeNlmShareArgs,
  decodeNlmShareRes,
  decodeNlmTestArgs,
  decodeNlmTestRes,
  decodeNlmUnlockArgs,
  encodeNlmCancelArgs,
  encodeNlmLockArgs,
  encodeNlmNotify,
  encodeNlmRes,
  encodeNlmShareArgs,
  encodeNlmShareRes,
  encodeNlmTestArgs,
  encodeNlmTestRes,
  encodeNlmUnlockArgs,
  type NlmLockArg,
} from '../src';

/** The bytes of one of json-pack's netobj Readers. */
function bytesOf(r: Reader): Buffer {
  return Buffer.from(r.uint8.subarray(r.x, r.end));
}

const LOCK: NlmLockArg = {
  callerName: 'client.example',
  fh: Buffer.from('0123456789abcdef'),
  oh: Buffer.from('4242@client.example'),
  svid: 4242,
  offset: 2n ** 40n + 3n,
  length: 2n ** 63n + 1n,
};
const COOKIE = Buffer.from([0, 1, 2, 3, 4, 5]);

function theirLock(): st.Nlm4Lock {
  return new st.Nlm4Lock(
    LOCK.callerName,
    new Reader(Buffer.from(LOCK.fh)),
    new Reader(Buffer.from(LOCK.oh)),
    LOCK.svid,
    LOCK.offset,
    LOCK.length,
  );
}

function checkLock(l: st.Nlm4Lock): void {
  assert.equal(l.callerName, LOCK.callerName);
  assert.deepEqual(bytesOf(l.fh), Buffer.from(LOCK.fh));
  assert.deepEqual(bytesOf(l.oh), Buffer.from(LOCK.oh));
  assert.equal(l.svid, LOCK.svid);
  assert.equal(l.offset, LOCK.offset);
  assert.equal(l.length, LOCK.length);
}

const decode = (bytes: Uint8Array, proc: NlmProc, request: boolean) =>
  new NlmDecoder().decodeMessage(new Reader(bytes), proc as never, request) as never;
const encode = (m: msg.NlmMessage, proc: NlmProc, request: boolean) =>
  new NlmEncoder().encodeMessage(m, proc as never, request);

describe('NLM v4 XDR, cross-checked against json-pack, an independent codec, both ways', () => {
  it('TEST arguments and a DENIED result with its holder', () => {
    const ours = encodeNlmTestArgs(4, { cookie: COOKIE, exclusive: true, lock: LOCK });
    const t: msg.Nlm4TestRequest = decode(ours, NlmProc.TEST, true);
    assert.equal(t.args.exclusive, true);
    assert.deepEqual(bytesOf(t.args.cookie), COOKIE);
    checkLock(t.args.lock);
    const theirs = encode(
      new msg.Nlm4TestRequest(new msg.Nlm4TestArgs(new Reader(COOKIE), true, theirLock())),
      NlmProc.TEST,
      true,
    );
    assert.deepEqual(Buffer.from(theirs), Buffer.from(ours));
    assert.deepEqual(decodeNlmTestArgs(new XdrReader(theirs), 4).lock.offset, LOCK.offset);

    const holder = { exclusive: false, svid: 7, oh: Buffer.from('7@x'), offset: 5n, length: 0n };
    const res = encodeNlmTestRes(4, { cookie: COOKIE, stat: 1, holder });
    const back: msg.Nlm4TestResponse = decode(res, NlmProc.TEST, false);
    assert.equal(back.stat, 1);
    assert.equal(back.holder?.svid, 7);
    assert.equal(back.holder?.offset, 5n);
    assert.deepEqual(bytesOf(back.holder!.oh), Buffer.from('7@x'));
    const theirRes = encode(
      new msg.Nlm4TestResponse(
        new Reader(COOKIE),
        1,
        new st.Nlm4Holder(false, 7, new Reader(Buffer.from('7@x')), 5n, 0n),
      ),
      NlmProc.TEST,
      false,
    );
    assert.deepEqual(Buffer.from(theirRes), Buffer.from(res));
    assert.equal(decodeNlmTestRes(new XdrReader(theirRes), 4).holder?.svid, 7);
  });

  it('LOCK, CANCEL and UNLOCK arguments and the nlm4_res result', () => {
    const lock = encodeNlmLockArgs(4, {
      cookie: COOKIE,
      block: true,
      exclusive: true,
      lock: LOCK,
      reclaim: true,
      state: -3,
    });
    const theirLockArgs = new msg.Nlm4LockArgs(
      new Reader(COOKIE),
      true,
      true,
      theirLock(),
      true,
      -3,
    );
    assert.deepEqual(
      Buffer.from(encode(new msg.Nlm4LockRequest(theirLockArgs), NlmProc.LOCK, true)),
      Buffer.from(lock),
    );
    const l: msg.Nlm4LockRequest = decode(lock, NlmProc.LOCK, true);
    checkLock(l.args.lock);
    assert.equal(l.args.state, -3);
    assert.equal(decodeNlmLockArgs(new XdrReader(lock), 4).reclaim, true);

    const cancel = encodeNlmCancelArgs(4, {
      cookie: COOKIE,
      block: true,
      exclusive: false,
      lock: LOCK,
    });
    const c: msg.Nlm4CancelRequest = decode(cancel, NlmProc.CANCEL, true);
    assert.equal(c.args.exclusive, false);
    checkLock(c.args.lock);
    assert.equal(decodeNlmCancelArgs(new XdrReader(cancel), 4).block, true);

    const unlock = encodeNlmUnlockArgs(4, { cookie: COOKIE, lock: LOCK });
    const u: msg.Nlm4UnlockRequest = decode(unlock, NlmProc.UNLOCK, true);
    checkLock(u.args.lock);
    assert.deepEqual(
      Buffer.from(
        encode(
          new msg.Nlm4UnlockRequest(new msg.Nlm4UnlockArgs(new Reader(COOKIE), theirLock())),
          NlmProc.UNLOCK,
          true,
        ),
      ),
      Buffer.from(unlock),
    );
    assert.equal(decodeNlmUnlockArgs(new XdrReader(unlock), 4).lock.svid, LOCK.svid);

    for (const proc of [NlmProc.LOCK, NlmProc.CANCEL, NlmProc.UNLOCK, NlmProc.GRANTED]) {
      const res = encodeNlmRes(4, { cookie: COOKIE, stat: 3 });
      const r: msg.Nlm4Response = decode(res, proc, false);
      assert.equal(r.stat, 3);
      assert.deepEqual(
        Buffer.from(encode(new msg.Nlm4Response(new Reader(COOKIE), 3), proc, false)),
        Buffer.from(res),
      );
      assert.equal(decodeNlmRes(new XdrReader(res)).stat, 3);
    }
  });

  it('SHARE arguments and result, and FREE_ALL', () => {
    const share = {
      callerName: 'c',
      fh: Buffer.from('fh'),
      oh: Buffer.from('oh'),
      mode: 2,
      access: 1,
    };
    const args = encodeNlmShareArgs({ cookie: COOKIE, share, reclaim: false });
    const s: msg.Nlm4ShareRequest = decode(args, NlmProc.SHARE, true);
    assert.equal(s.args.share.mode, 2);
    assert.equal(s.args.share.access, 1);
    assert.deepEqual(bytesOf(s.args.share.oh), Buffer.from('oh'));
    assert.equal(decodeNlmShareArgs(new XdrReader(args)).share.callerName, 'c');
    const res = encodeNlmShareRes(4, { cookie: COOKIE, stat: 1, sequence: 9 });
    const r: msg.Nlm4ShareResponse = decode(res, NlmProc.SHARE, false);
    assert.equal(r.stat, 1);
    assert.equal(r.sequence, 9);
    assert.equal(decodeNlmShareRes(new XdrReader(res)).sequence, 9);

    const notify = encodeNlmNotify({ name: 'rebooted', state: 5 });
    const f: msg.Nlm4FreeAllRequest = decode(notify, NlmProc.FREE_ALL, true);
    assert.equal(f.notify.name, 'rebooted');
    assert.equal(f.notify.state, 5);
    assert.deepEqual(decodeNlmNotify(new XdrReader(notify)), { name: 'rebooted', state: 5 });
  });

  it('versions 1-3 carry 32-bit offsets (clamped) and only the first five statuses', () => {
    const v1 = encodeNlmTestArgs(1, {
      cookie: COOKIE,
      exclusive: false,
      lock: { ...LOCK, offset: 5n, length: 2n ** 40n },
    });
    const back = decodeNlmTestArgs(new XdrReader(v1), 1);
    assert.equal(back.lock.offset, 5n);
    assert.equal(back.lock.length, 2n ** 32n - 1n);
    assert.equal(decodeNlmRes(new XdrReader(encodeNlmRes(3, { cookie: COOKIE, stat: 7 }))).stat, 1);
  });
});
