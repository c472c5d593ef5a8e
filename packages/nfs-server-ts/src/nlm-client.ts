/** An NLM client (nlm-xdr.ts) for tests and tools: the calls a client's lock manager sends. */
import type { RpcClient } from './client';
import {
  NLM_PROGRAM,
  NlmProc,
  type NlmCancelArgs,
  type NlmLockArgs,
  type NlmNotify,
  type NlmRes,
  type NlmShareArgs,
  type NlmShareRes,
  type NlmTestArgs,
  type NlmTestRes,
  type NlmUnlockArgs,
  decodeNlmRes,
  decodeNlmShareRes,
  decodeNlmTestRes,
  encodeNlmCancelArgs,
  encodeNlmLockArgs,
  encodeNlmNotify,
  encodeNlmShareArgs,
  encodeNlmTestArgs,
  encodeNlmUnlockArgs,
} from './nlm-xdr';
import { XdrReader } from './xdr';

export class NlmClient {
  constructor(
    readonly rpc: RpcClient,
    readonly version = 4,
  ) {}

  private async res(proc: NlmProc, args: Uint8Array): Promise<NlmRes> {
    return decodeNlmRes(new XdrReader(await this.rpc.call(NLM_PROGRAM, this.version, proc, args)));
  }

  async test(a: NlmTestArgs): Promise<NlmTestRes> {
    const body = await this.rpc.call(
      NLM_PROGRAM,
      this.version,
      NlmProc.TEST,
      encodeNlmTestArgs(this.version, a),
    );
    return decodeNlmTestRes(new XdrReader(body), this.version);
  }

  lock(a: NlmLockArgs): Promise<NlmRes> {
    return this.res(NlmProc.LOCK, encodeNlmLockArgs(this.version, a));
  }

  cancel(a: NlmCancelArgs): Promise<NlmRes> {
    return this.res(NlmProc.CANCEL, encodeNlmCancelArgs(this.version, a));
  }

  unlock(a: NlmUnlockArgs): Promise<NlmRes> {
    return this.res(NlmProc.UNLOCK, encodeNlmUnlockArgs(this.version, a));
  }

  async share(a: NlmShareArgs, proc = NlmProc.SHARE): Promise<NlmShareRes> {
    const body = await this.rpc.call(NLM_PROGRAM, this.version, proc, encodeNlmShareArgs(a));
    return decodeNlmShareRes(new XdrReader(body));
  }

  async freeAll(n: NlmNotify): Promise<void> {
    await this.rpc.call(NLM_PROGRAM, this.version, NlmProc.FREE_ALL, encodeNlmNotify(n));
  }

  /** An _MSG call: the answer comes later as a _RES call to the client's own lock manager. */
  async message(proc: NlmProc, args: Uint8Array): Promise<void> {
    await this.rpc.call(NLM_PROGRAM, this.version, proc, args);
  }
}
