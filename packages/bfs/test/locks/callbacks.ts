import {
  NLM_PROGRAM,
  NlmProc,
  type NlmTestArgs,
  RpcServer,
  XdrReader,
  decodeNlmTestArgs,
  encodeNlmRes,
} from 'nfs-server-ts';
import { NlmStat } from '../../src/locks/lock-table';

/**
 * A client machine's lock manager, as the relay's callbacks see it: records GRANTED calls
 * (answered GRANTED, or DENIED after `refuse()`) and the _RES calls of _MSG requests.
 */
export async function clientLockManager() {
  const server = new RpcServer();
  const granted: NlmTestArgs[] = [];
  const results: { proc: number; body: Uint8Array }[] = [];
  const waiters: (() => void)[] = [];
  let answer = NlmStat.GRANTED;
  server.setHandler(NLM_PROGRAM, 4, (c) => {
    let reply: Uint8Array = new Uint8Array(0);
    if (c.procedure === NlmProc.GRANTED) {
      const a = decodeNlmTestArgs(new XdrReader(c.args), 4);
      granted.push(a);
      reply = encodeNlmRes(4, { cookie: a.cookie, stat: answer });
    } else results.push({ proc: c.procedure, body: Uint8Array.from(c.args) });
    for (const w of waiters.splice(0)) w();
    return reply;
  });
  const port = await server.listen({ port: 0, host: '127.0.0.1' });
  return {
    port,
    granted,
    results,
    refuse: () => (answer = NlmStat.DENIED),
    /** Resolves at the next callback. */
    next: () => new Promise<void>((r) => waiters.push(r)),
    close: () => server.close(),
  };
}
