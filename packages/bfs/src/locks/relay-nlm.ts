/**
 * The relay's lock manager: NLM (versions 1, 3 and 4) and the NSM calls a lock server meets,
 * served on the relay's one port. Every call becomes a lock operation (lock-op.ts) through
 * PBFT; the relay keeps nothing of the locks itself. It renews its lease while the service says
 * it holds anything, polls for blocked requests that were granted (every GRANT_POLL_MS while
 * any wait) and tells their clients with a GRANTED callback.
 */
import {
  IPPROTO_TCP,
  IPPROTO_UDP,
  NLM_PROGRAM,
  NLM_VERSIONS,
  NSM_PROGRAM,
  NSM_VERSION,
  NlmProc,
  type NfsServer,
  NsmProc,
  PortmapClient,
  RpcClient,
  type RpcCallInfo,
  RpcError,
  SM_MAXSTRLEN,
  XdrError,
  XdrReader,
  XdrWriter,
  asRpcError,
  decodeNlmCancelArgs,
  decodeNlmLockArgs,
  decodeNlmNotify,
  decodeNlmRes,
  decodeNlmShareArgs,
  decodeNlmTestArgs,
  decodeNlmUnlockArgs,
  decodeV2Handle,
  encodeNlmRes,
  encodeNlmShareRes,
  encodeNlmTestArgs,
  encodeNlmTestRes,
  encodeSmStatRes,
  encodeV2Handle,
  type NlmLockArg,
  AuthStat,
} from 'nfs-server-ts';
import { OpKind, decodeResult, encodeOp } from '../service/op';
import {
  LockProc,
  type NlmLock,
  type PendingGrant,
  decodeGrants,
  decodeStat,
  decodeTestResult,
  encodeLockArgs,
} from './lock-op';
import { NlmStat } from './lock-table';
import {
  CALLBACK_TIMEOUT_MS,
  GRANT_POLL_MS,
  LEASE_RENEW_MS,
  MAX_CALLER_NAME_BYTES,
  MAX_COOKIE_BYTES,
  MAX_GRANT_ATTEMPTS,
  MAX_LOCK_FH_BYTES,
  MAX_OWNER_HANDLE_BYTES,
  MAX_PENDING_CALLBACKS,
} from './limits';

/** Runs an operation through replication and resolves with the agreed result. */
export type Invoke = (op: Uint8Array, readOnly: boolean) => Promise<Uint8Array>;

/** The portmapper port every host serves (RFC 1833). */
export const PORTMAP_PORT = 111;
/** The NSM state number the relay reports: odd means up; the relay's locks outlive it. */
export const NSM_STATE = 1;

export interface LockManagerOptions {
  invoke: Invoke;
  /** The relay's server: the handlers go on its RPC server, the mappings in its portmapper. */
  server: NfsServer;
  /** Lands a file's buffered writes before a lock on it changes hands (write-back). */
  flushFile?: (fh: Uint8Array) => Promise<void>;
  /**
   * The port of a client's lock manager for callbacks (GRANTED, _RES); the default asks the
   * client's portmapper on port 111, as lock servers do.
   */
  callbackPort?: (host: string, version: number) => Promise<number>;
  /** The relays' lease (cluster.json; default LEASE_PERIOD_S): renewed every third of it. */
  leaseSeconds?: number;
  /**
   * The export rules (exports.ts) for lock calls: whether any export admits the client (else
   * AUTH_TOOWEAK, as for NFS calls), and what a call on a handle whose export refuses the
   * client answers (DENIED for ACCES, STALE_FH for a handle of no export, as knfsd's lockd
   * does). Default: the server's own client rule, every handle.
   */
  exports?: {
    admitsAny(address: string): boolean;
    refusal(fh: Uint8Array, address: string): NlmStat | undefined;
  };
}

export interface LockManagerStats {
  calls: number;
  callbacks: number;
  callbackFailures: number;
  grantsGivenBack: number;
}

/** Thrown for a call the relay refuses before forwarding (its names exceed the table's limits). */
function tooLong(): never {
  throw new XdrError('name or handle longer than the lock table keeps');
}

/** NLM's procedures: 0-15 in every version; SHARE to FREE_ALL (20-23) in versions 3 and 4. */
function served(v: number, proc: number): boolean {
  if (proc <= NlmProc.GRANTED_RES) return true;
  return v >= 3 && proc >= NlmProc.SHARE && proc <= NlmProc.FREE_ALL;
}

function clientHost(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

export class LockManager {
  readonly stats: LockManagerStats = {
    calls: 0,
    callbacks: 0,
    callbackFailures: 0,
    grantsGivenBack: 0,
  };
  /** Renew the lease at the next tick (true after a start: a restarted relay keeps its locks). */
  private active = true;
  /** Some request of this relay waits: poll for grants. */
  private waiting = false;
  private polling = false;
  private readonly attempts = new Map<number, number>();
  private pendingCallbacks = 0;
  private timers: NodeJS.Timeout[] = [];

  constructor(private readonly opts: LockManagerOptions) {
    const rpc = opts.server.rpc;
    for (const v of NLM_VERSIONS) rpc.setHandler(NLM_PROGRAM, v, (c) => this.nlm(c));
    rpc.setHandler(NSM_PROGRAM, NSM_VERSION, (c) => this.nsm(c));
  }

  /** Adds NLM and NSM on `port` to the relay's portmapper (after it listens). */
  register(port: number): void {
    for (const protocol of [IPPROTO_TCP, IPPROTO_UDP]) {
      for (const version of NLM_VERSIONS)
        this.opts.server.portmapper.register({ program: NLM_PROGRAM, version, protocol, port });
      this.opts.server.portmapper.register({
        program: NSM_PROGRAM,
        version: NSM_VERSION,
        protocol,
        port,
      });
    }
  }

  start(): void {
    if (this.timers.length > 0) return;
    const every = this.opts.leaseSeconds ? (this.opts.leaseSeconds * 1000) / 3 : LEASE_RENEW_MS;
    const renew = setInterval(() => void this.renew(), every);
    const poll = setInterval(() => {
      if (this.waiting) void this.poll();
    }, GRANT_POLL_MS);
    renew.unref();
    poll.unref();
    this.timers = [renew, poll];
  }

  close(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  /** One lock operation through PBFT; the agreed body, or the RpcError the service answered. */
  private async op(proc: LockProc, version: number, args: Uint8Array): Promise<Uint8Array> {
    const readOnly = proc === LockProc.TEST || proc === LockProc.GRANTS;
    const op = encodeOp({
      kind: OpKind.Lock,
      version,
      procedure: proc,
      cred: { uid: 0, gid: 0, gids: [] },
      readOnlyExport: false,
      args,
    });
    const result = decodeResult(await this.opts.invoke(op, readOnly));
    if (result instanceof RpcError) throw result;
    return result;
  }

  private admitsAny(address: string): boolean {
    return this.opts.exports?.admitsAny(address) ?? this.opts.server.allowed(address);
  }

  private async nlm(call: RpcCallInfo): Promise<Uint8Array | RpcError> {
    if (!this.admitsAny(call.client.address)) {
      return new RpcError({ kind: 'auth_error', stat: AuthStat.TOOWEAK });
    }
    const v = call.version;
    const proc = call.procedure;
    if (!served(v, proc)) return new RpcError({ kind: 'proc_unavail' });
    // NULL, and the _RES calls a client answers our _MSG callbacks with (we send none).
    const isRes = proc >= NlmProc.TEST_RES && proc <= NlmProc.GRANTED_RES;
    if (proc === NlmProc.NULL || isRes) return new Uint8Array(0);
    this.stats.calls++;
    const message = proc >= NlmProc.TEST_MSG && proc <= NlmProc.GRANTED_MSG;
    const base = message ? proc - (NlmProc.TEST_MSG - NlmProc.TEST) : proc;
    let reply: Uint8Array;
    try {
      reply = await this.answer(base, v, new XdrReader(call.args), call.client.address);
    } catch (e) {
      return asRpcError(e);
    }
    if (!message) return reply;
    // The _MSG form: an empty reply now, the result later as a _RES call to the client.
    this.sendRes(clientHost(call.client.address), v, base + NlmProc.TEST_RES - NlmProc.TEST, reply);
    return new Uint8Array(0);
  }

  /** The XDR result of one NLM procedure. Throws XdrError on malformed arguments. */
  private async answer(
    proc: number,
    v: number,
    r: XdrReader,
    address: string,
  ): Promise<Uint8Array> {
    const host = clientHost(address);
    const refusal = (fh: Uint8Array) => this.opts.exports?.refusal(fh, address);
    switch (proc) {
      case NlmProc.TEST: {
        const a = decodeNlmTestArgs(r, v);
        const lock = this.lockOf(a.lock, a.exclusive, v);
        const refused = refusal(lock.fh);
        if (refused !== undefined) return encodeNlmTestRes(v, { cookie: a.cookie, stat: refused });
        const res = await this.outcome(async () => {
          const t = decodeTestResult(
            await this.op(LockProc.TEST, v, encodeLockArgs(LockProc.TEST, { lock })),
          );
          if (!t) throw new Error('unreadable TEST result');
          return t;
        });
        return encodeNlmTestRes(v, { cookie: a.cookie, stat: res.stat, holder: res.holder });
      }
      case NlmProc.LOCK:
      case NlmProc.NM_LOCK: {
        const a = decodeNlmLockArgs(r, v);
        const lock = this.lockOf(a.lock, a.exclusive, v);
        const block = a.block && proc === NlmProc.LOCK;
        if (block && a.cookie.length > MAX_COOKIE_BYTES) tooLong();
        const refused = refusal(lock.fh);
        if (refused !== undefined) return encodeNlmRes(v, { cookie: a.cookie, stat: refused });
        await this.opts.flushFile?.(lock.fh);
        const args = encodeLockArgs(LockProc.LOCK, {
          lock,
          block: { block, cookie: a.cookie, host, version: v },
        });
        const stat = await this.stat(LockProc.LOCK, v, args);
        if (stat === NlmStat.GRANTED || stat === NlmStat.BLOCKED) this.active = true;
        if (stat === NlmStat.BLOCKED) this.waiting = true;
        return encodeNlmRes(v, { cookie: a.cookie, stat });
      }
      case NlmProc.CANCEL: {
        const a = decodeNlmCancelArgs(r, v);
        const lock = this.lockOf(a.lock, a.exclusive, v);
        const refused = refusal(lock.fh);
        if (refused !== undefined) return encodeNlmRes(v, { cookie: a.cookie, stat: refused });
        const stat = await this.stat(LockProc.CANCEL, v, encodeLockArgs(LockProc.CANCEL, { lock }));
        return encodeNlmRes(v, { cookie: a.cookie, stat });
      }
      case NlmProc.UNLOCK: {
        const a = decodeNlmUnlockArgs(r, v);
        const lock = this.lockOf(a.lock, false, v);
        const refused = refusal(lock.fh);
        if (refused !== undefined) return encodeNlmRes(v, { cookie: a.cookie, stat: refused });
        await this.opts.flushFile?.(lock.fh);
        const stat = await this.stat(LockProc.UNLOCK, v, encodeLockArgs(LockProc.UNLOCK, { lock }));
        return encodeNlmRes(v, { cookie: a.cookie, stat });
      }
      case NlmProc.GRANTED: {
        // A callback to a client's lock manager; the relay is none, so it holds no such wait.
        const a = decodeNlmTestArgs(r, v);
        return encodeNlmRes(v, { cookie: a.cookie, stat: NlmStat.DENIED });
      }
      case NlmProc.SHARE:
      case NlmProc.UNSHARE: {
        const a = decodeNlmShareArgs(r);
        const s = a.share;
        const fh = this.handleOf(s.fh, v);
        this.checkOwner(s.callerName, s.oh);
        const refused = refusal(fh);
        if (refused !== undefined)
          return encodeNlmShareRes(v, { cookie: a.cookie, stat: refused, sequence: 0 });
        const lp = proc === NlmProc.SHARE ? LockProc.SHARE : LockProc.UNSHARE;
        const stat = await this.stat(lp, v, encodeLockArgs(lp, { share: { ...s, fh } }));
        if (stat === NlmStat.GRANTED && lp === LockProc.SHARE) this.active = true;
        return encodeNlmShareRes(v, { cookie: a.cookie, stat, sequence: 0 });
      }
      case NlmProc.FREE_ALL:
        return this.notified(r);
      default:
        throw new RpcError({ kind: 'proc_unavail' });
    }
  }

  /** A status from the service; a service that cannot be reached is DENIED_NOLOCKS (retry). */
  private stat(proc: LockProc, v: number, args: Uint8Array): Promise<number> {
    return this.outcome(async () => ({ stat: decodeStat(await this.op(proc, v, args)).stat })).then(
      (o) => o.stat,
    );
  }

  private async outcome<T extends { stat: number }>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      if (e instanceof RpcError && e.reply.kind === 'garbage_args') throw e;
      return { stat: NlmStat.DENIED_NOLOCKS } as T;
    }
  }

  /**
   * NLM FREE_ALL and NSM SM_NOTIFY: a client rebooted, its locks died with its processes
   * (XNFS 11): free all of that caller name on this relay. The reply is void.
   */
  private async notified(r: XdrReader): Promise<Uint8Array> {
    const name = decodeNlmNotify(r).name;
    // A name longer than the table keeps holds nothing there.
    if (Buffer.byteLength(name) <= MAX_CALLER_NAME_BYTES) {
      const args = encodeLockArgs(LockProc.FREE_ALL, { callerName: name });
      await this.stat(LockProc.FREE_ALL, 0, args);
    }
    return new Uint8Array(0);
  }

  /** The file's handle as the replicas know it: NFSv2 handles (NLM 1-3) are unpadded. */
  private handleOf(fh: Uint8Array, v: number): Uint8Array {
    let h = fh;
    if (v < 4 && fh.length === 32) {
      try {
        h = decodeV2Handle(fh);
      } catch {
        h = fh;
      }
    }
    if (h.length > MAX_LOCK_FH_BYTES) tooLong();
    return h;
  }

  private checkOwner(callerName: string, oh: Uint8Array): void {
    if (Buffer.byteLength(callerName) > MAX_CALLER_NAME_BYTES) tooLong();
    if (oh.length > MAX_OWNER_HANDLE_BYTES) tooLong();
  }

  private lockOf(l: NlmLockArg, exclusive: boolean, v: number): NlmLock {
    this.checkOwner(l.callerName, l.oh);
    return { ...l, fh: this.handleOf(l.fh, v), exclusive };
  }

  private async nsm(call: RpcCallInfo): Promise<Uint8Array | RpcError> {
    if (!this.admitsAny(call.client.address)) {
      return new RpcError({ kind: 'auth_error', stat: AuthStat.TOOWEAK });
    }
    const r = new XdrReader(call.args);
    try {
      switch (call.procedure) {
        case NsmProc.NULL:
        case NsmProc.SIMU_CRASH:
          r.end();
          return new Uint8Array(0);
        case NsmProc.STAT:
          r.string(SM_MAXSTRLEN);
          r.end();
          return encodeSmStatRes(0, NSM_STATE);
        case NsmProc.MON:
          // mon: mon_name, my_id, priv[16]. The relay's locks outlive it, so it never has a
          // reboot to tell: monitoring is a formality.
          r.string(SM_MAXSTRLEN);
          readMyId(r);
          r.fixed(16);
          r.end();
          return encodeSmStatRes(0, NSM_STATE);
        case NsmProc.UNMON:
        case NsmProc.UNMON_ALL:
          if (call.procedure === NsmProc.UNMON) r.string(SM_MAXSTRLEN);
          readMyId(r);
          r.end();
          return new XdrWriter(4).i32(NSM_STATE).bytes(); // sm_stat
        case NsmProc.NOTIFY:
          return await this.notified(r);
        default:
          return new RpcError({ kind: 'proc_unavail' });
      }
    } catch (e) {
      return asRpcError(e);
    }
  }

  /** Renews the lease while the service says this relay holds anything. */
  private async renew(): Promise<void> {
    if (!this.active) return;
    try {
      const s = decodeStat(await this.op(LockProc.RENEW, 0, new Uint8Array(0)));
      this.active = s.holds;
      if (s.waits) this.waiting = true;
    } catch {
      // Unreachable service: the next tick tries again, well within the lease.
    }
  }

  /** Asks which blocked requests were granted and tells their clients. */
  async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const g = decodeGrants(await this.op(LockProc.GRANTS, 0, new Uint8Array(0)));
      if (!g) return;
      this.waiting = g.waiting > 0 || g.grants.length > 0;
      // Attempts of grants that are gone (cancelled, or done by an earlier relay) are forgotten.
      const due = new Set(g.grants.map((x) => x.id));
      for (const id of [...this.attempts.keys()]) if (!due.has(id)) this.attempts.delete(id);
      await Promise.all(g.grants.map((x) => this.deliver(x)));
    } catch {
      // The next poll asks again.
    } finally {
      this.polling = false;
    }
  }

  /** The GRANTED callback of one grant; a client that refuses it, or never answers, gives it back. */
  private async deliver(g: PendingGrant): Promise<void> {
    const l = g.lock;
    const fh = g.version < 4 ? encodeV2Handle(l.fh) : l.fh;
    const args = encodeNlmTestArgs(g.version, {
      cookie: g.cookie,
      exclusive: l.exclusive,
      lock: {
        callerName: l.callerName,
        fh,
        oh: l.oh,
        svid: l.svid,
        offset: l.offset,
        length: l.length,
      },
    });
    let release: boolean;
    try {
      this.stats.callbacks++;
      const body = await this.callback(g.host, g.version, NlmProc.GRANTED, args);
      release = decodeNlmRes(new XdrReader(body)).stat !== NlmStat.GRANTED;
    } catch {
      this.stats.callbackFailures++;
      const n = (this.attempts.get(g.id) ?? 0) + 1;
      this.attempts.set(g.id, n);
      if (n < MAX_GRANT_ATTEMPTS) return;
      release = true;
    }
    this.attempts.delete(g.id);
    if (release) this.stats.grantsGivenBack++;
    await this.op(
      LockProc.GRANT_DONE,
      0,
      encodeLockArgs(LockProc.GRANT_DONE, { grant: { id: g.id, release } }),
    );
  }

  /** One call to a client's lock manager, over UDP, bounded by CALLBACK_TIMEOUT_MS. */
  private async callback(
    host: string,
    v: number,
    proc: number,
    args: Uint8Array,
  ): Promise<Uint8Array> {
    const port = this.opts.callbackPort
      ? await this.opts.callbackPort(host, v)
      : await portmapLookup(host, v);
    if (!port) throw new Error(`no lock manager on ${host}`);
    const rpc = await RpcClient.connect({
      host,
      port,
      transport: 'udp',
      timeoutMs: CALLBACK_TIMEOUT_MS,
    });
    try {
      return await rpc.call(NLM_PROGRAM, v, proc, args);
    } finally {
      rpc.close();
    }
  }

  /** Sends the _RES call of an _MSG call; past MAX_PENDING_CALLBACKS the result is dropped. */
  private sendRes(host: string, v: number, proc: number, body: Uint8Array): void {
    if (this.pendingCallbacks >= MAX_PENDING_CALLBACKS) return;
    this.pendingCallbacks++;
    this.stats.callbacks++;
    this.callback(host, v, proc, body)
      .catch(() => this.stats.callbackFailures++)
      .finally(() => this.pendingCallbacks--);
  }
}

/** NSM my_id: my_name, my_prog, my_vers, my_proc. */
function readMyId(r: XdrReader): void {
  r.string(SM_MAXSTRLEN);
  r.u32();
  r.u32();
  r.u32();
}

async function portmapLookup(host: string, v: number): Promise<number> {
  const rpc = await RpcClient.connect({
    host,
    port: PORTMAP_PORT,
    transport: 'udp',
    timeoutMs: CALLBACK_TIMEOUT_MS,
  });
  try {
    return await new PortmapClient(rpc).getport(NLM_PROGRAM, v, IPPROTO_UDP);
  } finally {
    rpc.close();
  }
}
