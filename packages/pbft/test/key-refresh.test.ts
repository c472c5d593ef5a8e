import { strict as assert } from 'node:assert';
import {
  KeyEpochs,
  KeyRefresher,
  MAX_QUOTED_KEY_EPOCHS,
  MacAuthenticator,
  MsgType,
  NEW_KEY_MAGIC,
  NodeKeys,
  PublicIdentity,
  decodeFrame,
  decodeNewKey,
  deriveSessionKey,
  encodeNewKey,
  exportPublic,
  generateNodeKeys,
} from '../src';

/** Two nodes with real key pairs and the initial (epoch 0) symmetric session key. */
async function pair(): Promise<{
  keys: NodeKeys[];
  pubs: PublicIdentity[];
  auths: MacAuthenticator[];
  refreshers: KeyRefresher[];
  initialKey: Uint8Array;
}> {
  const keys = [await generateNodeKeys(), await generateNodeKeys()];
  const pubs = [await exportPublic(keys[0]!), await exportPublic(keys[1]!)];
  const initialKey = await deriveSessionKey(keys[0]!, pubs[1]!, 0, 1);
  const auths = [
    new MacAuthenticator(0, [[1, initialKey]]),
    new MacAuthenticator(1, [[0, initialKey]]),
  ];
  const refreshers = [0, 1].map(
    (i) =>
      new KeyRefresher({
        selves: [{ id: i, auth: auths[i]! }],
        own: keys[i]!,
        peers: new Map([[1 - i, pubs[1 - i]!]]),
      }),
  );
  return { keys, pubs, auths, refreshers, initialKey };
}

const status = { type: MsgType.Status, view: 0, lastExecuted: 5, stable: 0 } as const;

function verifies(receiver: MacAuthenticator, frame: Uint8Array): boolean {
  const f = decodeFrame(frame);
  return receiver.verifyFrame(f.sender, f.signed, f.macs);
}

describe('session key refresh (TOCS 2002 section 4.3.1)', function () {
  this.timeout(20_000);

  it('after two refreshes a stolen session key no longer authenticates anything to the replica', async () => {
    const { auths, refreshers, initialKey } = await pair();
    const thief = new MacAuthenticator(0, [[1, initialKey]]);
    assert.ok(verifies(auths[1]!, thief.sealMulticast(status, 2)), 'the stolen key works at first');
    // Replica 1 refreshes; replica 0 learns the new key from the signed announcement.
    assert.ok(await refreshers[0]!.onNewKey(await refreshers[1]!.refresh()));
    assert.ok(verifies(auths[1]!, auths[0]!.sealMulticast(status, 2)), 'new key in use');
    assert.ok(verifies(auths[1]!, thief.sealMulticast(status, 2)), 'previous key: one more epoch');
    assert.ok(await refreshers[0]!.onNewKey(await refreshers[1]!.refresh()));
    assert.ok(verifies(auths[1]!, auths[0]!.sealMulticast(status, 2)));
    assert.ok(!verifies(auths[1]!, thief.sealMulticast(status, 2)), 'stolen key is dead');
  });

  it('a restarted node given its persisted key epochs still checks a frame quoted in a certificate that was MACed for it before the restart; without them it cannot', async () => {
    const { keys, pubs, auths, refreshers, initialKey } = await pair();
    let persisted: KeyEpochs | undefined;
    const r0 = new KeyRefresher({
      selves: [{ id: 0, auth: auths[0]! }],
      own: keys[0]!,
      peers: new Map([[1, pubs[1]!]]),
      onEpochs: (e) => (persisted = JSON.parse(JSON.stringify(e)) as KeyEpochs),
    });
    // Replica 0 refreshes twice (so its initial key is retired); 1 seals under the newest key.
    for (let i = 0; i < 2; i++) assert.ok(await refreshers[1]!.onNewKey(await r0.refresh()));
    const quoted = decodeFrame(auths[1]!.sealMulticast(status, 2));
    assert.equal(persisted!.own.length, 2);
    // The restart: new authenticators with the initial key only, then the start-up refresh.
    const restart = async (pastEpochs?: KeyEpochs) => {
      const auth = new MacAuthenticator(0, [[1, initialKey]]);
      const r = new KeyRefresher({
        selves: [{ id: 0, auth }],
        own: keys[0]!,
        peers: new Map([[1, pubs[1]!]]),
        pastEpochs,
      });
      await r.restorePastEpochs();
      await r.refresh();
      return auth.verifyQuoted(1, quoted.signed, quoted.macs);
    };
    assert.equal(await restart(persisted), true);
    assert.equal(await restart(undefined), false);
  });

  it('a refresh that fails (its epochs cannot be persisted) is counted and keeps the current keys', async () => {
    const { keys, pubs, auths } = await pair();
    const r = new KeyRefresher({
      selves: [{ id: 0, auth: auths[0]! }],
      own: keys[0]!,
      peers: new Map([[1, pubs[1]!]]),
      onEpochs: () => {
        throw new Error('disk full');
      },
    });
    await assert.rejects(r.refresh(), /disk full/);
    assert.equal(r.stats.keyRefreshFailed, 1);
    assert.equal(r.stats.keyRefresh, undefined);
    assert.equal(r.currentEpoch, 0);
  });

  it('a NEW-KEY with a bad signature, from an unknown node, malformed or replayed changes no key', async () => {
    const { auths, refreshers } = await pair();
    const good = await refreshers[1]!.refresh();
    const forged = Buffer.from(good);
    forged[forged.length - 1] ^= 1;
    assert.equal(await refreshers[0]!.onNewKey(forged), false);
    assert.equal(refreshers[0]!.stats.newKeyBadSignature, 1);
    assert.equal(
      await refreshers[0]!.onNewKey(encodeNewKey(7, 1, Date.now(), Buffer.alloc(64))),
      false,
    );
    assert.equal(refreshers[0]!.stats.newKeyUnknownNode, 1);
    assert.equal(await refreshers[0]!.onNewKey(Uint8Array.of(NEW_KEY_MAGIC, 1, 2)), false);
    assert.equal(refreshers[0]!.stats.newKeyMalformed, 1);
    // Frames sealed with the old out-key still verify (previous key kept) until the good one lands.
    assert.ok(verifies(auths[1]!, auths[0]!.sealMulticast(status, 2)));
    assert.ok(await refreshers[0]!.onNewKey(good));
    const second = await refreshers[1]!.refresh();
    assert.ok(await refreshers[0]!.onNewKey(second));
    assert.equal(await refreshers[0]!.onNewKey(good), false, 'an older announcement is a replay');
    assert.equal(refreshers[0]!.stats.newKeyOld, 1);
    assert.ok(verifies(auths[1]!, auths[0]!.sealMulticast(status, 2)));
  });

  it('a frame quoted in a certificate still checks under retired keys (up to MAX_QUOTED_KEY_EPOCHS refreshes), a frame received directly does not', async () => {
    const { auths, refreshers } = await pair();
    const old = decodeFrame(auths[0]!.sealMulticast(status, 2));
    for (let i = 0; i < 3; i++) await refreshers[0]!.onNewKey(await refreshers[1]!.refresh());
    assert.ok(!auths[1]!.verifyFrame(0, old.signed, old.macs), 'stale for a direct message');
    assert.ok(auths[1]!.verifyQuoted(0, old.signed, old.macs), 'still good as a quoted frame');
    for (let i = 0; i < MAX_QUOTED_KEY_EPOCHS; i++)
      await refreshers[0]!.onNewKey(await refreshers[1]!.refresh());
    assert.ok(!auths[1]!.verifyQuoted(0, old.signed, old.macs), 'archive bounded');
  });

  it('our own frames quoted back in certificates are still recognised across a refresh', async () => {
    const { auths, refreshers } = await pair();
    const before = decodeFrame(auths[0]!.sealMulticast(status, 2));
    await refreshers[0]!.onNewKey(await refreshers[1]!.refresh());
    const after = decodeFrame(auths[0]!.sealMulticast(status, 2));
    assert.ok(auths[0]!.isOwnMulticast(before.signed, before.macs), 'sealed with the previous key');
    assert.ok(auths[0]!.isOwnMulticast(after.signed, after.macs));
    const other = decodeFrame(
      new MacAuthenticator(0, [[1, Buffer.alloc(32, 9)]]).sealMulticast(status, 2),
    );
    assert.ok(!auths[0]!.isOwnMulticast(other.signed, other.macs), 'someone else using our id');
  });

  it('a client process refreshes the keys of the replies to all its ids with one NEW-KEY, and may not re-key ids of another process', async () => {
    const [replicaKeys, relayKeys, otherKeys] = [
      await generateNodeKeys(),
      await generateNodeKeys(),
      await generateNodeKeys(),
    ];
    const [replicaPub, relayPub, otherPub] = [
      await exportPublic(replicaKeys),
      await exportPublic(relayKeys),
      await exportPublic(otherKeys),
    ];
    const ids = [1000, 1001, 1002, 1003];
    const initial = new Map<number, Uint8Array>();
    for (const id of ids) initial.set(id, await deriveSessionKey(replicaKeys, relayPub, 0, id));
    const replica = new MacAuthenticator(0, [...initial]);
    const relay = ids.map((id) => new MacAuthenticator(id, [[0, initial.get(id)!]]));
    const replicaPeers = new Map<number, PublicIdentity>(ids.map((id) => [id, relayPub]));
    replicaPeers.set(1004, otherPub).set(1005, otherPub);
    const atReplica = new KeyRefresher({
      selves: [{ id: 0, auth: replica }],
      own: replicaKeys,
      peers: replicaPeers,
    });
    const atRelay = new KeyRefresher({
      selves: ids.map((id, i) => ({ id, auth: relay[i]! })),
      own: relayKeys,
      peers: new Map([[0, replicaPub]]),
    });
    const reply = (auth: MacAuthenticator, to: number) => auth.sealTo(status, to);
    const thief = new MacAuthenticator(0, [[1002, initial.get(1002)!]]);
    assert.ok(verifies(relay[2]!, reply(thief, 1002)), 'the stolen key works at first');
    for (let round = 0; round < 2; round++) {
      const announcement = await atRelay.refresh();
      assert.equal(decodeNewKey(announcement)!.count, 4, 'one NEW-KEY for the four ids');
      assert.ok(await atReplica.onNewKey(announcement));
      ids.forEach((id, i) => assert.ok(verifies(relay[i]!, reply(replica, id)), `id ${id}`));
    }
    assert.ok(!verifies(relay[2]!, reply(thief, 1002)), 'stolen key is dead');
    // A range reaching into another process's ids is refused before its signature is checked.
    assert.equal(
      await atReplica.onNewKey(encodeNewKey(1002, 4, Date.now() + 1000, Buffer.alloc(64))),
      false,
    );
    assert.equal(atReplica.stats.newKeyForeignIds, 1);
    ids.forEach((id, i) => assert.ok(verifies(relay[i]!, reply(replica, id)), `id ${id} still`));
  });
});
