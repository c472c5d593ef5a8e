import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { jsonLogLine, logFormat, readableLogLine } from '../../src/log';

const LOG_JS = path.resolve(__dirname, '../../dist/log.js');
/** A line logged by createLogger in a fresh process, with the fields a replica adds. */
const LOG_ONE = `require(${JSON.stringify(LOG_JS)}).createLogger({ replica: 1 }, () => ({ view: 3, executed: 300, stable: 256 })).warn({ seq: 256 }, 'checkpoint')`;

describe('bfs up: children log structured JSON (pino), shown as readable lines', () => {
  it('renders time, level (when not info), message and fields, leaving out process noise', () => {
    const t = Date.UTC(2026, 10, 23, 12, 34, 56, 789);
    const line = JSON.stringify({
      level: 40,
      time: t,
      pid: 1,
      hostname: 'h',
      replica: 2,
      view: 1,
      primary: 1,
      msg: 'view change',
    });
    assert.equal(readableLogLine(line), '12:34:56.789 WARN view change  view=1 primary=1');
    const info = JSON.stringify({
      level: 30,
      time: t,
      msg: 'stable checkpoint persisted',
      seq: 128,
    });
    assert.equal(readableLogLine(info), '12:34:56.789 stable checkpoint persisted  seq=128');
  });
  it('passes anything that is not a pino record through unchanged', () => {
    assert.equal(readableLogLine('bfs: SIGTERM, shutting down'), 'bfs: SIGTERM, shutting down');
    assert.equal(readableLogLine('{"not":"a log"}'), '{"not":"a log"}');
    assert.equal(readableLogLine('[1,2]'), '[1,2]');
  });
  it('jsonLogLine keeps a pino record and makes any other line one', () => {
    const rec = '{"level":40,"time":1,"msg":"x"}';
    assert.equal(jsonLogLine(rec), rec);
    const made = JSON.parse(jsonLogLine('bfs: SIGTERM', { child: 'relay' }));
    assert.equal(made.msg, 'bfs: SIGTERM');
    assert.equal(made.child, 'relay');
    assert.equal(made.level, 30);
  });

  it('logs JSON when stderr is not a terminal, readable lines on a terminal; BFS_LOG_FORMAT overrides', () => {
    const saved = process.env.BFS_LOG_FORMAT;
    try {
      delete process.env.BFS_LOG_FORMAT;
      assert.equal(logFormat({ isTTY: true }), 'text');
      assert.equal(logFormat({}), 'json');
      process.env.BFS_LOG_FORMAT = 'json';
      assert.equal(logFormat({ isTTY: true }), 'json');
    } finally {
      if (saved === undefined) delete process.env.BFS_LOG_FORMAT;
      else process.env.BFS_LOG_FORMAT = saved;
    }
    const env = { ...process.env };
    delete env.BFS_LOG_FORMAT;
    const piped = spawnSync(process.execPath, ['-e', LOG_ONE], { env, encoding: 'utf8' });
    const rec = JSON.parse(piped.stderr);
    assert.deepEqual(
      {
        replica: rec.replica,
        view: rec.view,
        executed: rec.executed,
        stable: rec.stable,
        seq: rec.seq,
      },
      { replica: 1, view: 3, executed: 300, stable: 256, seq: 256 },
    );
    // A real terminal: script(1) gives the process a pseudo-terminal.
    const cmd = `${process.execPath} -e ${JSON.stringify(LOG_ONE).replaceAll('$', '\\$')}`;
    const tty = spawnSync('script', ['-qec', cmd, '/dev/null'], { env, encoding: 'utf8' });
    if (tty.error) return; // no script(1): the piped case is checked
    assert.match(
      tty.stdout,
      /^\d\d:\d\d:\d\d\.\d{3} WARN checkpoint {2}view=3 executed=300 stable=256 seq=256\r?\n$/,
    );
  });
});
