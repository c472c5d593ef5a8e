import { strict as assert } from 'node:assert';
import { readableLogLine } from '../../src/cluster/up';

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
});
