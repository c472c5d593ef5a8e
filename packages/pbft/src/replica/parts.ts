/**
 * The parts both rule drivers (Agreement, ViewChangeDriver) work with. Each part is owned by its
 * own module and made once by Replica; a driver holds them, it does not own them.
 */
import type { MacAuthenticator } from '../crypto';
import type { FaultLedger } from '../faults';
import type { BatchFetch } from './batch-fetch';
import type { Checkpoints } from './checkpoints';
import type { ClientTable } from './client-table';
import type { AgreementLog } from './log';
import type { Outbox } from './outbox';
import type { Recovery } from './recovery';
import type { RequestQueue } from './requests';
import type { SignatureChecks } from './signatures';
import type { Settings } from './settings';

export interface SharedParts {
  readonly settings: Settings;
  readonly auth: MacAuthenticator;
  readonly faults: FaultLedger;
  readonly io: Outbox;
  readonly requests: RequestQueue;
  readonly clients: ClientTable;
  readonly log: AgreementLog;
  readonly cp: Checkpoints;
  readonly recovery: Recovery;
  readonly batchFetch: BatchFetch;
  readonly signatures: SignatureChecks;
}

export abstract class UsesParts {
  protected readonly s: Settings;
  protected readonly auth: MacAuthenticator;
  protected readonly faults: FaultLedger;
  protected readonly io: Outbox;
  protected readonly requests: RequestQueue;
  protected readonly clients: ClientTable;
  protected readonly log: AgreementLog;
  protected readonly cp: Checkpoints;
  protected readonly recovery: Recovery;
  protected readonly batchFetch: BatchFetch;
  protected readonly signatures: SignatureChecks;

  constructor(parts: SharedParts) {
    this.s = parts.settings;
    this.auth = parts.auth;
    this.faults = parts.faults;
    this.io = parts.io;
    this.requests = parts.requests;
    this.clients = parts.clients;
    this.log = parts.log;
    this.cp = parts.cp;
    this.recovery = parts.recovery;
    this.batchFetch = parts.batchFetch;
    this.signatures = parts.signatures;
  }
}
