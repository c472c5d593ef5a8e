import { strict as assert } from 'node:assert';
import { type JsonWebKey, createPrivateKey, sign } from 'node:crypto';
import {
  ClientCore,
  EcdsaRequestVerifier,
  MAX_REQUEST_SIGNATURE_BYTES,
  MsgType,
  decodeFrame,
  exportPublic,
  macOffset,
  generateNodeKeys,
  requestSignerOf,
  webcrypto,
} from '../src';
import { FaultyClientBehaviour, SpoiledRequestSigner, TestRequestSignatures } from '../src/testing';
import { REQUEST_TIMEOUT_TIMEOUTS, RETRANSMISSION_INTERVAL_MS } from '../src/constants';
import { Cluster } from './support/cluster';
import { addOp } from './support/kv';

/**
 * Signed requests (Aardvark, Clement et al., NSDI 2009, section 4.2; docs/pbft.md, "Defenses"):
 * a client's signature is what every replica checks alike, so a request is ordered only if every
 * correct backup can accept it, and a faulty client cannot make correct replicas blame a correct
 * primary.
 */
const TIMEOUT_MS = 200;

function signedCluster(sigs = new TestRequestSignatures()): Cluster {
  return new Cluster(1, { requestSignatures: sigs, viewChangeTimeoutMs: TIMEOUT_MS }, 1, sigs);
}

/** Client 0 of `c` replaced by one whose signatures fail. */
function spoilSigner(c: Cluster, sigs: TestRequestSignatures, initialTimestamp = 0): ClientCore {
  const replicas = Array.from({ length: c.n }, (_, i) => i);
  const id = c.client(0).id;
  const core = new ClientCore(
    { n: c.n, id, initialTimestamp, signer: new SpoiledRequestSigner(sigs) },
    Cluster.auth(id, replicas),
  );
  c.clients[0] = core;
  return core;
}

/** The frame client 0 sends for a read-write `op`, started now. */
function requestFrame(c: Cluster, op: Uint8Array): Uint8Array {
  return c.client(0).start(op, false, c.now).sends[0]!.bytes;
}

function stat(c: Cluster, i: number, name: keyof Cluster['replicas'][number]['stats']): number {
  return c.replicas[i]!.stats[name] ?? 0;
}

function runFor(c: Cluster, ms: number): void {
  for (let t = 0; t < ms; t += 20) {
    c.tick(20);
    c.run();
  }
}

describe('pbft signed requests (Aardvark, NSDI 2009, section 4.2)', () => {
  it('a request carries its client signature on the wire, and a read-only one none', () => {
    const sigs = new TestRequestSignatures();
    const c = signedCluster(sigs);
    const rw = decodeFrame(requestFrame(c, addOp(0, 1))).body;
    assert.equal(rw.type, MsgType.Request);
    assert.ok(rw.type === MsgType.Request && rw.signature && rw.signature.length > 0);
    c.queue.length = 0;
    const c2 = signedCluster(sigs);
    const ro = decodeFrame(c2.client(0).start(addOp(0, 1), true, 0).sends[0]!.bytes).body;
    assert.ok(ro.type === MsgType.Request && ro.signature === undefined);
  });

  it('the primary refuses a request whose signature fails (dropBadRequestSignature): nothing is ordered', () => {
    const sigs = new TestRequestSignatures();
    const c = signedCluster(sigs);
    spoilSigner(c, sigs);
    c.invoke(addOp(0, 5));
    c.run();
    assert.equal(stat(c, 0, 'dropBadRequestSignature'), 1);
    assert.equal(stat(c, 0, 'prePrepareSent'), 0);
    assert.equal(c.executed(0).length, 0);
  });

  it('a backup accepts a batch whose request has a bad MAC for it but a good signature (the MAC attack fails): every replica executes it', () => {
    const sigs = new TestRequestSignatures();
    const c = signedCluster(sigs);
    // Good signature, MACs spoiled for the f + 1 replicas after the primary (1 and 2).
    const spoiled = new FaultyClientBehaviour('partial-mac', c.n).send(
      requestFrame(c, addOp(0, 5)),
      0,
    );
    c.post(c.client(0).id, [0], spoiled);
    c.run();
    for (const i of [0, 1, 2, 3]) assert.equal(c.executed(i).length, 1, `replica ${i}`);
    for (const i of [1, 2]) assert.equal(stat(c, i, 'requestAcceptedOnSignature'), 1, `${i}`);
    assert.equal(stat(c, 3, 'requestAcceptedOnSignature'), 0, 'its MAC checked at 3');
    for (const i of [1, 2, 3]) assert.equal(stat(c, i, 'dropPrePrepareBadRequest'), 0);
  });

  it('the primary accepts a request whose MAC fails only at the primary when its signature verifies: the backups, which can check it, do not time out on a request the primary never ordered', () => {
    const sigs = new TestRequestSignatures();
    const c = signedCluster(sigs);
    const bytes = Buffer.from(requestFrame(c, addOp(0, 5)));
    const f = decodeFrame(bytes);
    bytes[macOffset(f.signed.length, 0)]! ^= 1;
    c.post(c.client(0).id, [0, 1, 2, 3], bytes);
    c.run();
    for (const i of [0, 1, 2, 3]) assert.equal(c.executed(i).length, 1, `replica ${i}`);
    // From the client, verified once; the backups relay no first copy of a request sent to all.
    assert.equal(stat(c, 0, 'requestAcceptedOnSignature'), 1);
    assert.equal(stat(c, 0, 'dropRetransmissionTooSoon'), 0);
    assert.equal(stat(c, 0, 'dropBadMac'), 0);
    assert.equal(sigs.verified, 1);
  });

  it('with request signatures off the same request stalls its slot: backups 1 and 2 refuse the batch', () => {
    const c = new Cluster(1, { viewChangeTimeoutMs: TIMEOUT_MS });
    const spoiled = new FaultyClientBehaviour('partial-mac', c.n).send(
      requestFrame(c, addOp(0, 5)),
      0,
    );
    c.post(c.client(0).id, [0], spoiled);
    c.run();
    for (const i of [1, 2]) assert.equal(stat(c, i, 'dropPrePrepareBadRequest'), 1, `${i}`);
    for (const i of [0, 1, 2, 3]) assert.equal(c.executed(i).length, 0, `replica ${i}`);
  });

  it('a backup does not time out on a request it received directly whose signature is bad: it forgets it (forgetBadSignatureRequest) and the view stays', () => {
    const sigs = new TestRequestSignatures();
    const c = signedCluster(sigs);
    spoilSigner(c, sigs);
    // Valid MACs everywhere, sent to every replica (as a retransmission is).
    c.post(c.client(0).id, [0, 1, 2, 3], requestFrame(c, addOp(0, 5)));
    c.run();
    runFor(c, 4 * TIMEOUT_MS);
    for (const i of [0, 1, 2, 3]) {
      assert.equal(c.replicas[i]!.view, 0, `replica ${i}`);
      assert.equal(stat(c, i, 'viewChangeTimeout'), 0, `replica ${i}`);
    }
    for (const i of [1, 2, 3]) {
      // The client's retransmissions are awaited and forgotten again, verified once.
      assert.ok(stat(c, i, 'forgetBadSignatureRequest') >= 1, `${i}`);
      assert.equal(stat(c, i, 'requestSignatureBad'), 1, `${i}`);
    }
  });

  it('a backup still times out on a request whose signature verifies when the primary is silent (the check blames no one less than it must)', () => {
    const c = signedCluster();
    c.filter = (e) => e.from !== 0 && e.to !== 0;
    c.post(c.client(0).id, [1, 2, 3], requestFrame(c, addOp(0, 5)));
    c.run();
    runFor(c, 4 * TIMEOUT_MS);
    for (const i of [1, 2, 3]) {
      assert.ok(c.replicas[i]!.view >= 1, `replica ${i} changed views`);
      assert.equal(stat(c, i, 'forgetBadSignatureRequest'), 0);
    }
  });

  it('a request with a bad signature forgotten at the deadline leaves a valid one its whole timeout: the view changes a timeout after the valid one arrived, not after the bad one', () => {
    const sigs = new TestRequestSignatures();
    const c = new Cluster(1, { requestSignatures: sigs, viewChangeTimeoutMs: TIMEOUT_MS }, 2, sigs);
    spoilSigner(c, sigs);
    c.filter = (e) => e.from !== 0 && e.to !== 0;
    c.post(c.client(0).id, [1, 2, 3], requestFrame(c, addOp(0, 5)));
    c.run();
    runFor(c, TIMEOUT_MS / 2);
    const good = c.client(1).start(addOp(1, 5), false, c.now).sends[0]!.bytes;
    c.post(c.client(1).id, [1, 2, 3], good);
    c.run();
    runFor(c, TIMEOUT_MS / 2 + 20);
    for (const i of [1, 2, 3]) {
      assert.equal(c.replicas[i]!.view, 0, `replica ${i}: the bad request's deadline passed`);
      assert.equal(stat(c, i, 'forgetBadSignatureRequest'), 1, `${i}`);
    }
    runFor(c, TIMEOUT_MS);
    for (const i of [1, 2, 3]) assert.ok(c.replicas[i]!.view >= 1, `replica ${i} changed views`);
  });

  it("the per-request timer (primary monitor, rule 1) verifies before blaming too: a bad-signature request awaited while the other client's commits keep the commit timer quiet causes no view change", () => {
    const sigs = new TestRequestSignatures();
    const c = new Cluster(1, { requestSignatures: sigs, viewChangeTimeoutMs: TIMEOUT_MS }, 2, sigs);
    spoilSigner(c, sigs);
    c.post(c.client(0).id, [0, 1, 2, 3], requestFrame(c, addOp(0, 5)));
    c.run();
    // A commit every half timeout for longer than REQUEST_TIMEOUT_TIMEOUTS timeouts.
    for (let k = 0; k < 4 * REQUEST_TIMEOUT_TIMEOUTS; k++) {
      c.invoke(addOp(1, k), false, 1);
      c.run();
      runFor(c, TIMEOUT_MS / 2);
    }
    assert.ok(c.executed(1).length >= 4 * REQUEST_TIMEOUT_TIMEOUTS, 'the other client was served');
    for (const i of [0, 1, 2, 3]) {
      assert.equal(c.replicas[i]!.view, 0, `replica ${i}`);
      assert.equal(stat(c, i, 'viewChangeRequestTimeout'), 0, `replica ${i}`);
    }
    for (const i of [1, 2, 3]) assert.ok(stat(c, i, 'forgetBadSignatureRequest') >= 1, `${i}`);
  });

  it('signature checks are cached by request digest: a request costs the cluster one verification in the common case, and a resent bad one none more', () => {
    const sigs = new TestRequestSignatures();
    const c = signedCluster(sigs);
    c.invoke(addOp(0, 5));
    c.run();
    for (const i of [0, 1, 2, 3]) assert.equal(c.executed(i).length, 1, `replica ${i}`);
    assert.equal(sigs.verified, 1, 'only the primary verified it; the backups checked MACs');
    assert.equal(stat(c, 0, 'requestSignatureVerified'), 1);

    spoilSigner(c, sigs, 1);
    const bad = requestFrame(c, addOp(0, 6));
    c.post(c.client(0).id, [0], bad);
    c.run();
    c.tick(RETRANSMISSION_INTERVAL_MS); // a copy sooner is refused on its header
    c.post(c.client(0).id, [0], bad);
    c.run();
    assert.equal(stat(c, 0, 'dropBadRequestSignature'), 2);
    assert.equal(stat(c, 0, 'requestSignatureBad'), 1);
    assert.equal(stat(c, 0, 'requestSignatureCached'), 1);
    assert.equal(sigs.verified, 2);
  });
});

describe("pbft request signatures: ECDSA P-256 with node:crypto over the nodes' long-term keys", () => {
  it("verifies a signature for the ids of the signer's range only, and none altered or made without the request context", async () => {
    const keys = await generateNodeKeys();
    const other = await generateNodeKeys();
    const signer = await requestSignerOf(keys);
    const verifier = new EcdsaRequestVerifier([
      { firstClientId: 1000, count: 32, key: (await exportPublic(keys)).signing },
      { firstClientId: 1032, count: 32, key: (await exportPublic(other)).signing },
    ]);
    const bytes = Buffer.from('a request body');
    const sig = signer.sign(1001, bytes);
    assert.equal(sig.length, MAX_REQUEST_SIGNATURE_BYTES);
    assert.ok(verifier.verify(1001, bytes, sig));
    assert.ok(!verifier.verify(1040, bytes, sig), "another process's ids");
    assert.ok(!verifier.verify(2000, bytes, sig), 'ids of no process');
    assert.ok(!verifier.verify(1001, Buffer.from('another body'), sig));
    const flipped = Buffer.from(sig);
    flipped[10]! ^= 1;
    assert.ok(!verifier.verify(1001, bytes, flipped));
    assert.ok(
      !verifier.verify(1001, bytes, sig.subarray(0, 63)),
      'a short one is false, not a throw',
    );
    const jwk = await webcrypto.subtle.exportKey('jwk', keys.signing.privateKey);
    const key = createPrivateKey({ key: jwk as JsonWebKey, format: 'jwk' });
    const bare = sign('sha256', bytes, { key, dsaEncoding: 'ieee-p1363' });
    assert.ok(!verifier.verify(1001, bytes, bare), 'a signature of the key over other contexts');
  });
});
