import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse } from 'yaml';
import { buildProgram } from '../../src/cli';
import { loadCluster } from '../../src/cluster/config';

const ROOT = path.resolve(__dirname, '../../../..');

interface Service {
  command: string[];
  hostname?: string;
  ports?: unknown[];
  volumes?: unknown[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: unknown;
}

/** The compose file as docker-compose itself resolves it (anchors, merges, defaults). */
function resolvedCompose(): {
  services: Record<string, Service>;
  volumes: Record<string, unknown>;
} {
  let out: string;
  try {
    out = execFileSync('docker-compose', ['-f', path.join(ROOT, 'docker-compose.yml'), 'config'], {
      encoding: 'utf8',
    });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') {
      throw new Error(
        'docker-compose is not installed (apt-get install docker-compose; .ci/run does)',
        { cause: e },
      );
    }
    throw new Error(`docker-compose rejects docker-compose.yml:\n${err.stderr ?? err.message}`, {
      cause: e,
    });
  }
  return parse(out);
}

describe('docker compose deployment: the file docker-compose resolves matches the bfs command', function () {
  this.timeout(60_000);
  const compose = resolvedCompose();

  it('runs an init service, four replicas on their own host names, and a relay', () => {
    assert.deepEqual(Object.keys(compose.services).sort(), [
      'init',
      'relay',
      'replica-0',
      'replica-1',
      'replica-2',
      'replica-3',
    ]);
    for (let i = 0; i < 4; i++) {
      const s = compose.services[`replica-${i}`];
      assert.equal(s.hostname, `replica-${i}`);
      assert.ok(s.command.includes(`--id=${i}`), s.command.join(' '));
      assert.equal(s.depends_on?.init?.condition, 'service_completed_successfully');
      assert.ok(s.healthcheck, `replica-${i} has a health check`);
      assert.ok(JSON.stringify(s.volumes).includes(`replica-${i}-data`), 'its own data volume');
    }
  });

  it("publishes the relay's NFS port over TCP and UDP", () => {
    const ports = (compose.services.relay.ports ?? []) as {
      target: number;
      published: number | string;
      protocol: string;
    }[];
    for (const protocol of ['tcp', 'udp']) {
      assert.ok(
        ports.some(
          (p) => p.target === 2049 && Number(p.published) === 2049 && p.protocol === protocol,
        ),
        `2049/${protocol} in ${JSON.stringify(ports)}`,
      );
    }
    assert.ok(compose.services.relay.command.includes('--port=2049'));
  });

  it("every service's command is accepted by the bfs command line", () => {
    for (const [name, s] of Object.entries(compose.services)) {
      const program = buildProgram().exitOverride();
      for (const c of program.commands) c.exitOverride().action(() => undefined);
      assert.doesNotThrow(() => program.parse(['node', 'bfs', ...s.command]), name);
    }
  });

  it("the init service's command writes a cluster where replica i listens at replica-i", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-compose-'));
    try {
      const args = compose.services.init.command.map((a) =>
        a.replace('--dir=/cluster', `--dir=${dir}`),
      );
      await buildProgram().parseAsync(['node', 'bfs', ...args]);
      const cfg = loadCluster(dir);
      assert.deepEqual(
        cfg.replicas.map((r) => `${r.host}:${r.port}`),
        ['replica-0:7000', 'replica-1:7000', 'replica-2:7000', 'replica-3:7000'],
      );
      // Run again, as `docker compose up` does on every start: the cluster and keys stay.
      const before = fs.readFileSync(path.join(dir, 'cluster.json'), 'utf8');
      await buildProgram().parseAsync(['node', 'bfs', ...args]);
      assert.equal(fs.readFileSync(path.join(dir, 'cluster.json'), 'utf8'), before);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
