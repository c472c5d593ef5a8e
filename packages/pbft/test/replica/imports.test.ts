import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(__dirname, '../../../..');
const parts = resolve(__dirname, '../../src/replica');

describe('pbft replica core modules', () => {
  it('import one another without a cycle', () => {
    const out = execFileSync('node', ['scripts/import-cycles.mjs', 'packages/pbft/src'], {
      cwd: root,
      encoding: 'utf8',
    });
    assert.match(out, / 0 cycles$/m);
  });

  it('never import the dispatcher (replica.ts) from a part', () => {
    for (const name of readdirSync(parts)) {
      const text = readFileSync(join(parts, name), 'utf8');
      assert.doesNotMatch(text, /from '\.\.\/replica'/, name);
    }
  });
});
