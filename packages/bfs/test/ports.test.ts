import { strict as assert } from 'node:assert';
import { FREE_PORT_FLOOR, canBind, ephemeralLow, freeConsecutivePorts } from '../src/cluster/ports';

describe('cluster ports', () => {
  it('reads the start of the kernel ephemeral range', () => {
    const low = ephemeralLow();
    assert.ok(Number.isInteger(low) && low > 1024 && low <= 65535, `ephemeral low ${low}`);
  });

  it('picks replica and status ports below the ephemeral range, so no outgoing connection takes them before the replicas bind', async () => {
    const low = ephemeralLow();
    for (let i = 0; i < 20; i++) {
      const base = await freeConsecutivePorts(4, 100);
      assert.ok(base >= FREE_PORT_FLOOR, `base ${base}`);
      assert.ok(base + 3 + 100 < low, `base ${base} reaches the ephemeral range at ${low}`);
      for (const p of [0, 1, 2, 3].flatMap((k) => [base + k, base + k + 100]))
        assert.ok(await canBind(p), `port ${p} was reported free`);
    }
  });
});
