/**
 * Golden transcripts: every scenario under test/testdata/ runs against real replica cores and
 * must print exactly the transcript written under each of its commands (the script language is
 * described in support/golden.ts, the lines in support/transcript.ts).
 *
 * When the protocol's behaviour changes on purpose, regenerate the expected output and read the
 * diff before committing it:
 *
 *   PBFT_GOLDEN_UPDATE=1 npx mocha packages/pbft/test/transcripts.test.ts
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { firstMismatch, formatGolden, parseGolden, runGolden } from './support/golden';

const TESTDATA = path.join(__dirname, 'testdata');
const UPDATE = process.env.PBFT_GOLDEN_UPDATE === '1';

const files = fs
  .readdirSync(TESTDATA)
  .filter((f) => f.endsWith('.txt'))
  .sort();

function read(file: string): string {
  return fs.readFileSync(path.join(TESTDATA, file), 'utf8');
}

describe('pbft golden transcripts (test/testdata)', () => {
  for (const file of files) {
    it(`${file.replace(/\.txt$/, '')} prints its golden transcript`, () => {
      const text = read(file);
      const { blocks, trailer } = parseGolden(text);
      const outputs = runGolden(blocks);
      if (UPDATE) {
        fs.writeFileSync(path.join(TESTDATA, file), formatGolden(blocks, outputs, trailer));
        return;
      }
      const m = firstMismatch(blocks, outputs);
      if (m)
        assert.equal(
          m.actual,
          m.expected,
          `${file}:${m.block.line} '${m.block.command}' printed another transcript ` +
            `(behaviour changed on purpose? PBFT_GOLDEN_UPDATE=1 regenerates it)`,
        );
    });
  }

  describe('the harness', () => {
    it('has the scenarios the checkpoint, view-change and state-transfer rules need', () => {
      for (const s of [
        'normal-case',
        'checkpoint',
        'view-change-prepared',
        'view-change-missing-prepared',
        'view-change-null-request',
        'state-transfer',
      ])
        assert.ok(files.includes(`${s}.txt`), `${s}.txt under ${TESTDATA}`);
    });

    it('every scenario starts with a comment naming the paper rule it shows', () => {
      for (const file of files)
        assert.match(read(file), /^# (OSDI 1999|TOCS 2002) section \d/, file);
    });

    it('a scenario run twice prints the same transcript (no wall clock, randomness or identity)', () => {
      for (const file of files) {
        const { blocks } = parseGolden(read(file));
        assert.deepEqual(runGolden(blocks), runGolden(blocks), file);
      }
    });

    it('a file rewritten from its own expected output is unchanged, comments included', () => {
      for (const file of files) {
        const text = read(file);
        const { blocks, trailer } = parseGolden(text);
        const same = formatGolden(
          blocks,
          blocks.map((b) => b.expected),
          trailer,
        );
        assert.equal(same, text, file);
      }
    });

    it('a transcript that differs is reported at its command, with what it printed', () => {
      const script = [
        'cluster tentative=false',
        '----',
        '',
        'request c1000 add 0 5',
        '----',
        't=0 c1000 request => REQUEST c1000#1 add 0 6 >r0',
        '',
      ].join('\n');
      const { blocks } = parseGolden(script);
      const m = firstMismatch(blocks, runGolden(blocks));
      assert.ok(m);
      assert.equal(m.block.line, 4);
      assert.equal(m.actual, 't=0 c1000 request => REQUEST c1000#1 add 0 5 >r0,r1,r2,r3');
    });

    it('a script error names its line and command', () => {
      const { blocks } = parseGolden('cluster\n----\n\ndrop PREPAR to=r1\n----\n');
      assert.throws(() => runGolden(blocks), /line 4: drop PREPAR to=r1: no message kind PREPAR/);
      assert.throws(() => parseGolden('state\nstate\n'), /line 1: '----' must follow a command/);
    });
  });
});
