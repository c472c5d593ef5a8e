/**
 * One replica (or the unreplicated server) as a real process over TCP, for the smoke test and
 * the benchmark. argv[2] = JSON {id, n, service: 'kv' | 'null', mode: 'replica' | 'unreplicated',
 * clients: number, requestSignatures?: boolean}. Prints "PORT <p>" once listening, then reads one JSON line
 * {"peers": {"<id>": port}} from stdin and starts. Prints "STATS <json>" on SIGUSR2 and SIGTERM.
 */
import { createInterface } from 'node:readline';
import { authFor, connectionKeysFor, requestVerifierFor } from './keys';
import {
  type ByzantineMode,
  MsgType,
  Replica,
  ReplicaNode,
  TcpTransport,
  tryDecodeFrame,
} from '../../src';
import { ByzantineTransport, attackerReplicaOptions } from '../../src/testing';
import { KvService } from './kv';
import { NullService } from './null-service';

interface Args {
  id: number;
  n: number;
  service: 'kv' | 'null';
  mode: 'replica' | 'unreplicated';
  clients: number;
  /** Overrides of ReplicaOptions (benchmark experiments). */
  replicaOptions?: Record<string, number | boolean>;
  /** A Byzantine replica (the benchmark's attacks): its frames go through ByzantineTransport. */
  byzantine?: ByzantineMode;
  /** Check the clients' request signatures (ReplicaOptions.requestSignatures); default true. */
  requestSignatures?: boolean;
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2]!) as Args;
  const t = await TcpTransport.open({
    ids: [a.id],
    connectionKeys: connectionKeysFor([a.id]),
    listen: { host: '127.0.0.1', port: 0 },
  });
  const service = a.service === 'kv' ? new KvService() : new NullService();
  const auth = authFor(a.id, a.n, a.clients);
  let stats: () => unknown = () => t.stats;
  if (a.mode === 'replica') {
    const replica = new Replica(
      {
        n: a.n,
        id: a.id,
        ...a.replicaOptions,
        ...(a.byzantine ? attackerReplicaOptions(a.byzantine) : {}),
        ...(a.requestSignatures === false
          ? {}
          : { requestSignatures: requestVerifierFor(a.clients) }),
      },
      service,
      auth,
    );
    const wire = a.byzantine ? new ByzantineTransport(t, a.byzantine, auth, a.n) : t;
    const node = new ReplicaNode(replica, wire);
    stats = () => ({
      replica: replica.stats,
      view: replica.view,
      transport: t.stats,
      io: t.io,
      cpu: process.cpuUsage(),
      rss: process.memoryUsage().rss,
    });
    const lines = createInterface({ input: process.stdin });
    lines.once('line', (l) => {
      const { peers } = JSON.parse(l) as { peers: Record<string, number> };
      for (const [id, port] of Object.entries(peers))
        if (Number(id) !== a.id) t.setPeer(Number(id), { host: '127.0.0.1', port });
      node.start();
      console.log('READY');
    });
  } else {
    // Unreplicated: execute each authenticated request at once and reply with one MAC.
    stats = () => ({ transport: t.stats, cpu: process.cpuUsage() });
    t.onMessage((_from, bytes) => {
      const f = tryDecodeFrame(bytes);
      if (!f) return;
      const m = f.body;
      if (m.type !== MsgType.Request || !auth.verifyFrame(f.sender, f.signed, f.macs)) return;
      const result = service.execute(m.op, m.clientId, new Uint8Array(0), m.readOnly);
      t.send(
        m.clientId,
        auth.sealTo(
          {
            type: MsgType.Reply,
            view: 0,
            timestamp: m.timestamp,
            clientId: m.clientId,
            replica: a.id,
            flags: 0,
            result,
          },
          m.clientId,
        ),
      );
    });
    createInterface({ input: process.stdin }).once('line', () => console.log('READY'));
  }
  process.on('SIGUSR2', () => console.log(`STATS ${JSON.stringify(stats())}`));
  process.on('SIGTERM', () => {
    console.log(`STATS ${JSON.stringify(stats())}`);
    process.exit(0);
  });
  console.log(`PORT ${t.port}`);
}

if (require.main === module) void main();
