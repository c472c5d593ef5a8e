/**
 * Byzantine behaviour of a replica, for tests and demonstrations: the replica runs the protocol
 * but falsifies what it sends. The frames stay properly authenticated (a Byzantine replica has
 * its own keys), so receivers must reject them on content, never on MACs.
 */
import { MsgType, REPLY_DIGEST_ONLY, decodeFrame } from './codec';
import type { MacAuthenticator } from './crypto';
import type { Transport } from './transport';

export const BYZANTINE_MODES = ['silent', 'wrong-replies', 'wrong-digests', 'lie'] as const;
/**
 * silent: sends nothing; wrong-replies: wrong results and result digests in replies;
 * wrong-digests: wrong digests in prepares, commits and checkpoints; lie: both.
 */
export type ByzantineMode = (typeof BYZANTINE_MODES)[number];

export function isByzantineMode(s: string): s is ByzantineMode {
  return (BYZANTINE_MODES as readonly string[]).includes(s);
}

/**
 * The frame a Byzantine replica sends instead of `bytes` to `to` (its first receiver for
 * point-to-point replies), or null to send nothing. `junk` supplies 32 wrong bytes.
 */
export function falsify(
  mode: ByzantineMode,
  auth: MacAuthenticator,
  n: number,
  to: number,
  bytes: Uint8Array,
  junk: Uint8Array,
): Uint8Array | null {
  if (mode === 'silent') return null;
  let f;
  try {
    f = decodeFrame(bytes);
  } catch {
    return bytes;
  }
  const b = f.body;
  if (b.type === MsgType.Reply && mode !== 'wrong-digests') {
    return auth.sealTo(
      {
        ...b,
        result: b.flags & REPLY_DIGEST_ONLY ? junk : Buffer.concat([b.result, junk.subarray(0, 1)]),
      },
      to,
    );
  }
  if (
    (b.type === MsgType.Prepare || b.type === MsgType.Commit || b.type === MsgType.Checkpoint) &&
    mode !== 'wrong-replies'
  ) {
    return auth.sealMulticast({ ...b, digest: junk }, n);
  }
  return bytes;
}

/** Wraps a replica's transport so that everything it sends goes through `falsify`. */
export class ByzantineTransport implements Transport {
  /** Frames falsified or withheld. */
  lies = 0;

  constructor(
    private readonly inner: Transport,
    private readonly mode: ByzantineMode,
    private readonly auth: MacAuthenticator,
    private readonly n: number,
    private readonly random: () => number = Math.random,
  ) {}

  get ids(): readonly number[] {
    return this.inner.ids;
  }

  send(to: number, bytes: Uint8Array): void {
    const junk = Buffer.alloc(32);
    for (let i = 0; i < 32; i++) junk[i] = Math.floor(this.random() * 256);
    const out = falsify(this.mode, this.auth, this.n, to, bytes, junk);
    if (out !== bytes) this.lies++;
    if (out) this.inner.send(to, out);
  }

  onMessage(handler: Parameters<Transport['onMessage']>[0]): void {
    this.inner.onMessage(handler);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
