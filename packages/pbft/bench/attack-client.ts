/**
 * A faulty client process for the benchmark's attack section: argv[2] = JSON {mode, n, clients,
 * ids, peers: {"<replica>": port}, signed}. Keeps one request per id outstanding through a
 * FaultyClientTransport (retransmit: and re-sends its latest request as fast as its event loop
 * and socket backlog let it) until SIGTERM. Prints "READY" once it started.
 */
import { Client, TcpTransport } from '../src';
import { FaultyClientTransport, type FaultyClientMode, faultySigner } from '../src/testing';
import { authFor, connectionKeysFor, requestSignerFor } from '../test/support/keys';
import { nullOp } from '../test/support/null-service';

interface Args {
  mode: FaultyClientMode;
  n: number;
  clients: number;
  ids: number[];
  peers: Record<string, number>;
  /** Sign requests (with the spoiled signer of its mode: faultySigner). */
  signed: boolean;
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2]!) as Args;
  const tcp = await TcpTransport.open({
    ids: a.ids,
    connectionKeys: connectionKeysFor(a.ids),
    peers: new Map(
      Object.entries(a.peers).map(([id, port]) => [Number(id), { host: '127.0.0.1', port }]),
    ),
  });
  const wire = new FaultyClientTransport(tcp, a.mode, a.n);
  const client = new Client({
    n: a.n,
    transport: wire,
    auth: (id) => authFor(id, a.n, a.clients),
    signer: faultySigner(a.mode, a.signed ? requestSignerFor() : undefined),
  });
  let stopped = false;
  process.on('SIGTERM', () => {
    stopped = true;
    console.log(`STATS ${JSON.stringify({ spoiled: wire.behaviour.spoiled, ...client.stats })}`);
    process.exit(0);
  });
  const op = nullOp(0, 0);
  for (let i = 0; i < a.ids.length; i++)
    void (async () => {
      while (!stopped) await client.invoke(op).catch(() => undefined);
    })();
  if (a.mode === 'retransmit') {
    const pump = (): void => {
      for (const s of wire.behaviour.due()) for (const t of s.to) tcp.send(t, s.bytes);
      if (!stopped) setImmediate(pump);
    };
    setImmediate(pump);
  }
  console.log('READY');
}

void main();
