import { strict as assert } from 'node:assert';
import {
  FIRST_CLIENT_ID,
  MacAuthenticator,
  MsgType,
  decodeFrame,
  deriveSessionKey,
  exportPublic,
  generateNodeKeys,
  sign,
  verifySignature,
} from '../src';

describe('pbft keys: WebCrypto key pairs, ECDH session keys, signatures', () => {
  it('derives the same session key at both ends, different per id pair and per epoch', async () => {
    const [a, b] = await Promise.all([generateNodeKeys(), generateNodeKeys()]);
    const [pa, pb] = await Promise.all([exportPublic(a), exportPublic(b)]);
    const ab = await deriveSessionKey(a, pb, 0, FIRST_CLIENT_ID);
    const ba = await deriveSessionKey(b, pa, FIRST_CLIENT_ID, 0);
    assert.deepEqual(ab, ba);
    assert.notDeepEqual(await deriveSessionKey(a, pb, 0, FIRST_CLIENT_ID + 1), ab);
    assert.notDeepEqual(await deriveSessionKey(a, pb, 0, FIRST_CLIENT_ID, 1), ab);
    // The derived keys authenticate frames end to end.
    const client = new MacAuthenticator(FIRST_CLIENT_ID, [[0, ba]]);
    const replica = new MacAuthenticator(0, [[FIRST_CLIENT_ID, ab]]);
    const frame = client.sealTo({ type: MsgType.Status, view: 0, lastExecuted: 0, stable: 0 }, 0);
    const f = decodeFrame(frame);
    assert.ok(replica.verifyFrame(FIRST_CLIENT_ID, f.signed, f.macs));
  });

  it('verifies ECDSA P-256 signatures and rejects altered data', async () => {
    const k = await generateNodeKeys();
    const pub = await exportPublic(k);
    const data = Buffer.from('view change');
    const sig = await sign(k, data);
    assert.ok(await verifySignature(pub, data, sig));
    assert.ok(!(await verifySignature(pub, Buffer.from('view chance'), sig)));
  });

  it('refuses session keys shorter than 128 bits', () => {
    assert.throws(() => new MacAuthenticator(0, [[1, new Uint8Array(8)]]), RangeError);
  });
});
