import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const BFS_DIST = path.resolve(__dirname, '../dist');

/** The modules of `@bfs/pbft/testing` a fresh node process has loaded after requiring `mods`. */
async function testingModulesLoaded(mods: string[]): Promise<string[]> {
  const script = `
    for (const m of ${JSON.stringify(mods)}) require(m);
    const loaded = Object.keys(require.cache).filter((k) => /[\\\\/]pbft[\\\\/]dist[\\\\/]testing[\\\\/]/.test(k));
    process.stdout.write(JSON.stringify(loaded));
  `;
  const { stdout } = await run(process.execPath, ['-e', script], { cwd: BFS_DIST });
  return JSON.parse(stdout) as string[];
}

describe('@bfs/pbft/testing entry point', () => {
  it('is never loaded by the library, the CLI or a replica process that is not told to misbehave', async () => {
    const loaded = await testingModulesLoaded([
      '@bfs/pbft',
      path.join(BFS_DIST, 'index.js'),
      path.join(BFS_DIST, 'cli.js'),
      path.join(BFS_DIST, 'cluster/node.js'),
    ]);
    assert.deepEqual(loaded, []);
  });

  it('resolves by its package name to the simulator, the Byzantine behaviours, the faulty clients, the test keys and the test request signatures', async () => {
    const loaded = await testingModulesLoaded(['@bfs/pbft/testing']);
    const names = loaded.map((k) => path.basename(k)).sort();
    assert.deepEqual(names, [
      'byzantine.js',
      'faulty-client.js',
      'index.js',
      'keys.js',
      'request-signatures.js',
      'simulator.js',
    ]);
  });
});
