/** PORTMAP v2 (RFC 1833 section 3): enough of a portmapper that no rpcbind is needed. */
import { RpcError, asRpcError } from './rpc';
import { XdrReader, XdrWriter } from './xdr';

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
/** Most mappings SET may add, so hostile callers cannot grow the table without bound. */
export const MAX_PORTMAP_ENTRIES = 256;

export enum PortmapProc {
  NULL = 0,
  SET = 1,
  UNSET = 2,
  GETPORT = 3,
  DUMP = 4,
}

export interface Mapping {
  program: number;
  version: number;
  protocol: number;
  port: number;
}

export class Portmapper {
  private readonly mappings: Mapping[] = [];

  /** Registers a mapping directly (the server registers its own programs this way). */
  register(m: Mapping): boolean {
    if (this.mappings.some((x) => same(x, m))) return false;
    if (this.mappings.length >= MAX_PORTMAP_ENTRIES) return false;
    this.mappings.push({ ...m });
    return true;
  }

  unregister(program: number, version: number): boolean {
    const before = this.mappings.length;
    for (let i = this.mappings.length - 1; i >= 0; i--) {
      const m = this.mappings[i];
      if (m.program === program && m.version === version) this.mappings.splice(i, 1);
    }
    return this.mappings.length !== before;
  }

  getPort(program: number, version: number, protocol: number): number {
    const m = this.mappings.find(
      (x) => x.program === program && x.version === version && x.protocol === protocol,
    );
    return m ? m.port : 0;
  }

  list(): Mapping[] {
    return this.mappings.map((m) => ({ ...m }));
  }

  /**
   * Executes one PORTMAP v2 call. SET and UNSET are honoured only from the local host
   * (`local`), as rpcbind does; others get FALSE.
   */
  execute(procedure: number, args: Uint8Array, local: boolean): Uint8Array {
    const r = new XdrReader(args);
    const w = new XdrWriter(64);
    const mapping = (): Mapping => {
      const m = { program: r.u32(), version: r.u32(), protocol: r.u32(), port: r.u32() };
      r.end();
      return m;
    };
    try {
      switch (procedure) {
        case PortmapProc.NULL:
          r.end();
          break;
        case PortmapProc.SET: {
          const m = mapping();
          w.bool(local && m.port > 0 && m.port < 65536 && this.register(m));
          break;
        }
        case PortmapProc.UNSET: {
          const m = mapping();
          w.bool(local && this.unregister(m.program, m.version));
          break;
        }
        case PortmapProc.GETPORT: {
          const m = mapping();
          w.u32(this.getPort(m.program, m.version, m.protocol));
          break;
        }
        case PortmapProc.DUMP:
          r.end();
          for (const m of this.mappings) {
            w.bool(true).u32(m.program).u32(m.version).u32(m.protocol).u32(m.port);
          }
          w.bool(false);
          break;
        default:
          throw new RpcError({ kind: 'proc_unavail' });
      }
    } catch (e) {
      throw asRpcError(e);
    }
    return w.bytes();
  }
}

function same(a: Mapping, b: Mapping): boolean {
  return a.program === b.program && a.version === b.version && a.protocol === b.protocol;
}
