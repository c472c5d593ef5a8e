/**
 * The view-change driver (OSDI 1999 sections 4.4 and 4.5.2, with MAC-authenticated proofs): the
 * view-change timer, VIEW-CHANGE out and in, NEW-VIEW built, checked and installed, forwarded
 * NEW-VIEWs, and the fetch of re-proposed batch bodies. Owns the view and whether it is active;
 * installing a view hands the re-proposals to `Agreement`.
 */
import { MAX_FETCH_REPLY_BYTES, primaryOf, quorum } from '../constants';
import {
  BatchFetchMsg,
  ForwardedNewViewMsg,
  Frame,
  MsgType,
  NewViewMsg,
  PrePrepareMsg,
  PreparedCert,
  ViewChangeMsg,
  decodeFrame,
  reframe,
  tryDecodeFrame,
} from '../codec';
import { prePrepareAuthDigest, requestDigests, sha256 } from '../crypto';
import type { Agreement, AgreementHost, CommittedBatch } from './agreement';
import type { ProofEntry } from './checkpoints';
import {
  CheckedViewChange,
  NULL_DIGEST,
  NewViewPlan,
  checkViewChange,
  planNewView,
  stripped,
} from './new-view';
import { SharedParts, UsesParts } from './parts';
import { PrimaryMonitor, Verdict } from './primary-monitor';
import { requestKey } from './requests';
import type { Resender } from './resend';
import type { ResolvedRequest, Slot } from './slot';
import type { StateFetcher } from './state-transfer';
import type { ViewChangeSet } from './view-changes';

const EMPTY = new Uint8Array(0);

/** The counter each monitor verdict bumps when it starts a view change. */
const VERDICT_COUNTERS = {
  requestTimeout: 'viewChangeRequestTimeout',
  slowPrimary: 'viewChangeSlowPrimary',
  termEnded: 'viewChangeTermEnded',
} as const satisfies Record<Verdict, string>;

/** The parts the driver works with besides the shared ones. */
export interface ViewChangeParts extends SharedParts {
  readonly viewChanges: ViewChangeSet;
  readonly fetcher: StateFetcher;
  readonly resender: Resender;
}

/** Makes checkpoint `seq` stable on `proof` (the replica's checkpoint glue). */
export type MakeStable = (seq: number, digest: Buffer, proof: ProofEntry[]) => void;

export class ViewChangeDriver extends UsesParts implements AgreementHost {
  view = 0;
  /** False between sending a VIEW-CHANGE for `view` and accepting its NEW-VIEW. */
  active = true;
  /** Views changed to without success since the last active view (timeout doubles with each). */
  private failedViewChanges = 0;
  private deadline: number | undefined;
  /** The last tick's time; the deadline a stall last moved (see ReplicaOptions.stallGraceMs). */
  private lastTickAt: number | undefined;
  private stallMoved: { deadline: number; credit: number } | undefined;
  /**
   * Set while a NEW-VIEW that f + 1 replicas vouch for, or our own VIEW-CHANGE, is checked: the
   * MACs of the frames it quotes are not.
   */
  private skipQuotedMacs = false;
  /** Rules that replace a primary whose commits do not stop altogether (primary-monitor.ts). */
  private readonly monitor: PrimaryMonitor;

  private readonly viewChanges: ViewChangeSet;
  private readonly fetcher: StateFetcher;
  private readonly resender: Resender;
  /** Set once by `drives`: agreement is made after the driver, whose view it reads. */
  private agreement!: Agreement;

  constructor(
    parts: ViewChangeParts,
    /** Digest of checkpoint 0, what a VIEW-CHANGE from there must name. */
    private readonly initialDigest: Buffer,
    private readonly makeStable: MakeStable,
  ) {
    super(parts);
    this.viewChanges = parts.viewChanges;
    this.fetcher = parts.fetcher;
    this.resender = parts.resender;
    this.monitor = new PrimaryMonitor(this.s.monitor);
  }

  /** The agreement a view change aborts tentative work of and a new view hands re-proposals to. */
  drives(agreement: Agreement): void {
    this.agreement = agreement;
  }

  get primary(): number {
    return primaryOf(this.view, this.s.n);
  }

  // ---- Timers ----------------------------------------------------------------------------------

  /**
   * A tick at `now`. The host did not run for the gap since the last one if it exceeds the
   * stall grace: whatever the primary sent meanwhile is still unread, so the deadline moves on
   * by the stall, by at most one timeout per deadline (a host stalled for good still changes
   * views, one timeout late).
   */
  noteTick(now: number): void {
    const gap = this.lastTickAt === undefined ? 0 : now - this.lastTickAt;
    this.lastTickAt = now;
    if (this.s.stallGraceMs === undefined || gap <= this.s.stallGraceMs) return;
    // Nor is the stall the primary's doing.
    this.monitor.pause(now);
    const d = this.deadline;
    if (d === undefined) return;
    const timeout = this.s.viewChangeTimeoutMs;
    const credit = this.stallMoved?.deadline === d ? this.stallMoved.credit : timeout;
    const by = Math.min(gap, credit);
    if (by <= 0) return;
    this.deadline = d + by;
    this.stallMoved = { deadline: d + by, credit: credit - by };
    this.io.count('viewChangeStallForgiven');
  }

  /** Starts a view change on timeout; a failed one moves on to the next view with twice the wait. */
  timer(): void {
    // Executed before we heard of it (a late copy), or rolled back and re-run: not awaited.
    this.requests.forgetAwaited((req) => {
      const rec = this.clients.get(req.msg.clientId);
      return (
        rec !== undefined &&
        (req.msg.timestamp < rec.lastTimestamp ||
          (req.msg.timestamp === rec.lastTimestamp && !rec.tentative))
      );
    });
    if (this.active) {
      if (this.requests.waitedFor.size === 0) this.deadline = undefined;
      else if (this.deadline === undefined)
        this.deadline = this.io.now + this.s.viewChangeTimeoutMs;
    }
    if (this.deadline !== undefined && this.io.now >= this.deadline) {
      if (this.active && !this.awaitsSignedRequest()) return;
      if (this.active && this.catchingUp()) {
        // The primary is making progress with the others; we are the one behind. A view change
        // we started alone would leave us stuck in a view nobody else enters.
        this.io.count('viewChangeDeferredCatchingUp');
        this.deadline = this.io.now + this.s.viewChangeTimeoutMs;
        return;
      }
      this.io.count('viewChangeTimeout');
      this.startViewChange(this.view + 1);
      return;
    }
    if (this.active) this.monitorTick();
  }

  /** The primary monitor's rules; a verdict while we are the one behind waits (see timer). */
  private monitorTick(): void {
    const judge = this.primary !== this.s.id;
    if (judge && this.monitor.windowDue(this.io.now)) this.forgetBadSignatures(true);
    let verdict = this.monitor.tick(this.io.now, this.awaitedLoad(), judge);
    // Verify before blaming, as for the commit timer (awaitsSignedRequest): a request too old
    // may be one whose signature fails, which no correct primary orders. The per-request rule
    // returns before it samples anything, so it may be asked again on what is left.
    if (verdict === 'requestTimeout' && this.forgetBadSignatures().forgotten > 0)
      verdict = this.monitor.tick(this.io.now, this.awaitedLoad(), judge);
    if (verdict === undefined) return;
    if (this.catchingUp()) {
      this.io.count('monitorDeferredCatchingUp');
      this.monitor.pause(this.io.now);
      return;
    }
    this.io.count(VERDICT_COUNTERS[verdict]);
    this.startViewChange(this.view + 1);
  }

  /**
   * Verify before blaming: the deadline is up, but a request whose client signature fails is
   * one no correct primary orders (agreement.ts, `signedForAll`), so it must not cost the
   * primary its view. The awaited requests are checked oldest first, the bad ones forgotten,
   * until one verifies: the view change goes ahead if that one waited a whole timeout, else the
   * deadline becomes its own. Checking here, not on arrival, keeps the common case (a timer that
   * never fires) free of verifications; each request is verified once (SignatureChecks).
   */
  private awaitsSignedRequest(): boolean {
    const { forgotten, valid } = this.forgetBadSignatures();
    if (forgotten === 0) return true;
    if (valid === undefined) {
      this.deadline = undefined;
      return false;
    }
    const due = (this.requests.awaitedSince(valid) ?? this.io.now) + this.s.viewChangeTimeoutMs;
    if (due <= this.io.now) return true;
    this.deadline = due;
    return false;
  }

  /**
   * Forgets awaited requests whose signature fails, oldest first, up to the first valid one
   * (`all`: every one; before a monitor window is judged, so a faulty client's requests, which
   * no correct primary orders, cannot make the primary look slow), and takes the time each was
   * awaited out of the monitor's window. Each request is verified once (SignatureChecks caches
   * the outcome), so `all` costs at most the awaited requests once a window.
   */
  private forgetBadSignatures(all = false): { forgotten: number; valid?: ResolvedRequest } {
    if (!this.signatures.on) return { forgotten: 0 };
    let forgotten = 0;
    let valid: ResolvedRequest | undefined;
    for (const [key, req] of this.requests.waitedFor) {
      if (this.signatures.valid(req)) {
        valid ??= req;
        if (all) continue;
        break;
      }
      const since = this.requests.awaitedSince(req);
      this.requests.unawait(key);
      if (since !== undefined) this.monitor.forget(since);
      forgotten++;
    }
    if (forgotten > 0) this.io.count('forgetBadSignatureRequest', forgotten);
    return { forgotten, valid };
  }

  private awaitedLoad(): { count: number; bytes: number; oldestSince: number | undefined } {
    return {
      count: this.requests.waitedFor.size,
      bytes: this.requests.awaitedBytes,
      oldestSince: this.requests.oldestAwaitedSince(),
    };
  }

  /** Progress: the timer restarts while other requests are still awaited. */
  onCommitted(batch: CommittedBatch): void {
    this.monitor.onCommitted(batch.requests, batch.bytes, batch.served, batch.agreementMs);
    if (this.deadline !== undefined && this.active)
      this.deadline =
        this.requests.waitedFor.size > 0 ? this.io.now + this.s.viewChangeTimeoutMs : undefined;
  }

  /** A checkpoint was installed: the log gets a full timeout to bring us level. */
  onTransferred(): void {
    this.monitor.pause(this.io.now);
    if (this.deadline !== undefined && this.active)
      this.deadline = this.io.now + this.s.viewChangeTimeoutMs;
  }

  /**
   * A recovering replica's withheld VIEW-CHANGE goes out after two timeouts without a view
   * change completing (see Recovery); moot once a view is active or another one started.
   */
  retryWithheld(now: number): void {
    const w = this.recovery.withheld;
    if (w && (this.active || w.msg.view !== this.view)) this.recovery.withheld = undefined;
    else if (w && now - w.since >= 2 * this.s.viewChangeTimeoutMs) {
      this.io.count('viewChangeSentRecovering');
      this.sendViewChange(w.msg, w.frame);
    }
  }

  /** VIEW-CHANGE messages get lost too: repeat ours until the NEW-VIEW arrives. */
  resendOwn(now: number): void {
    const own = this.viewChanges.own;
    if (own && now - this.viewChanges.ownSentAt >= this.s.resendIntervalMs) {
      this.viewChanges.ownSentAt = now;
      this.io.send(this.s.otherReplicas, own);
    }
  }

  /**
   * f + 1 peers (one of them correct) last reported execution beyond ours in our view, within a
   * view-change timeout, or we fetch state. The window is that long, not a few STATUS
   * intervals, because a replica busy installing a fetched checkpoint (seconds of CPU under
   * load) runs its timer before the reports queued meanwhile: with 300 ms a restarted replica
   * timed out alone into a view nobody else entered. A report of not being ahead clears it.
   */
  private catchingUp(): boolean {
    if (this.fetcher.busy) return true;
    const window = Math.max(3 * this.s.statusIntervalMs, this.s.viewChangeTimeoutMs);
    return this.resender.peersAhead(window) >= this.s.f + 1;
  }

  // ---- VIEW-CHANGE -----------------------------------------------------------------------------

  /** Moves to view `v` (> view): rolls back tentative work and multicasts VIEW-CHANGE. */
  private startViewChange(v: number): void {
    if (v <= this.view && !this.active) return;
    if (v < this.view) return;
    this.failedViewChanges = this.active ? 0 : this.failedViewChanges + 1;
    this.view = v;
    this.io.emit({ kind: 'view', view: v });
    this.active = false;
    this.deadline = undefined;
    this.io.count('viewChangeStarted');
    this.agreement.abortTentative();
    this.requests.resetForView();
    this.agreement.leaveView();
    this.batchFetch.missing.clear();
    const certs: PreparedCert[] = [];
    const lowWater = this.cp.lowWater;
    // Only within our window: a NEW-VIEW that started above our stable checkpoint may have had
    // us prepare beyond it before we fetched that checkpoint; such certificates are not ours to give.
    for (const [seq, c] of [...this.log.certs].sort((a, b) => a[0] - b[0]))
      if (seq > lowWater && seq <= lowWater + this.s.L)
        certs.push({
          prePrepare: stripped(c.cert.prePrepare, c.view, seq, c.digest),
          prepares: c.cert.prepares,
        });
    const msg: ViewChangeMsg = {
      type: MsgType.ViewChange,
      view: v,
      stable: lowWater,
      stableDigest: this.cp.stableDigest!,
      proof: this.cp.stableProof.map((p) => p.frame),
      certs,
    };
    const frame = this.auth.sealMulticast(msg, this.s.n);
    if (this.recovery.recovering) {
      // Our log may lack what we prepared before the crash: vouch for nothing yet (see recovering).
      this.io.count('viewChangeWithheldRecovering');
      this.recovery.withheld = { frame, msg, since: this.io.now };
      this.armNewViewTimer();
      this.maybeNewView();
      return;
    }
    this.sendViewChange(msg, frame);
  }

  private sendViewChange(msg: ViewChangeMsg, frame: Uint8Array): void {
    this.recovery.withheld = undefined;
    // What our own log holds must hold together; the MACs the quoted frames carry for us may
    // have gone stale with our keys (the others check their own entries).
    const checked = this.withoutQuotedMacs(() => this.checkVC(this.s.id, msg, frame));
    if (!checked) {
      // Our own log does not hold up (a bug, or state damaged in memory): vouch for nothing
      // rather than send what every correct replica would reject. Counted, never thrown: the
      // certificates came from the network.
      this.io.count('ownViewChangeInvalid');
      return;
    }
    this.viewChanges.own = frame;
    this.viewChanges.ownSentAt = this.io.now;
    this.io.send(this.s.otherReplicas, frame);
    this.viewChanges.record(checked);
    this.armNewViewTimer();
    this.maybeNewView();
  }

  /**
   * The wait for NEW-VIEW starts only once 2f + 1 replicas asked for the view (OSDI 1999
   * section 4.5.2): a replica that timed out alone does not race ahead through views.
   */
  private armNewViewTimer(): void {
    if (this.active || this.deadline !== undefined) return;
    if (this.viewChanges.asking(this.view) >= quorum(this.s.n))
      this.deadline =
        this.io.now + this.s.viewChangeTimeoutMs * 2 ** Math.min(this.failedViewChanges + 1, 16);
  }

  onViewChange(sender: number, msg: ViewChangeMsg, frame: Uint8Array): void {
    if (msg.view < this.view || (msg.view === this.view && this.active)) {
      // The sender missed the NEW-VIEW of a view we are in (or is behind): send it along.
      if (msg.view === this.view) this.forwardNewView(sender);
      return this.io.count('dropOldViewChange');
    }
    if (this.viewChanges.holds(sender, msg.view)) return this.io.count('dupViewChange');
    const checked = this.checkVC(sender, msg, frame);
    if (!checked) return this.io.count('dropBadViewChange');
    this.viewChanges.record(checked);
    // f + 1 replicas want a later view: at least one correct replica timed out, so join
    // (OSDI 1999 section 4.5.2) at the smallest such view.
    const ahead = this.viewChanges.beyond(this.view);
    if (ahead.length >= this.s.f + 1) this.startViewChange(Math.min(...ahead.map((c) => c.view)));
    else if (msg.view === this.view) {
      this.armNewViewTimer();
      this.maybeNewView();
    }
  }

  private checkVC(
    sender: number,
    msg: ViewChangeMsg,
    frame: Uint8Array,
  ): CheckedViewChange | undefined {
    const s = this.s;
    const rules = {
      n: s.n,
      f: s.f,
      K: s.K,
      L: s.L,
      maxViewChangeBytes: s.maxViewChangeBytes,
      initialDigest: this.initialDigest,
    };
    return checkViewChange(rules, (b) => this.embedded(b), sender, msg, frame);
  }

  /** Runs `check` with `embedded` skipping the MACs of quoted frames (see skipQuotedMacs). */
  private withoutQuotedMacs<T>(check: () => T): T {
    this.skipQuotedMacs = true;
    try {
      return check();
    } finally {
      this.skipQuotedMacs = false;
    }
  }

  /**
   * A frame quoted inside another: its own multicast authenticator must check for us (unless
   * f + 1 replicas vouch for the NEW-VIEW it is in, `onForwardedNewView`, or it is in our own
   * VIEW-CHANGE, `sendViewChange`).
   */
  embedded(bytes: Uint8Array): Frame | undefined {
    const f = tryDecodeFrame(bytes);
    if (!f) return undefined;
    if (f.sender >= this.s.n || f.macs.length !== this.s.n) return undefined;
    if (this.skipQuotedMacs) return f;
    // Our own entry is blank: a frame of ours carries our MACs for everyone else (under our
    // current or, across a key refresh, previous keys).
    if (f.sender === this.s.id)
      return this.auth.isOwnMulticast(f.signed, f.macs, this.s.f + 1) ? f : undefined;
    return this.auth.verifyQuoted(f.sender, f.signed, f.macs) ? f : undefined;
  }

  // ---- NEW-VIEW --------------------------------------------------------------------------------

  /** New primary: once 2f + 1 VIEW-CHANGEs for its view are in, multicast NEW-VIEW. */
  private maybeNewView(): void {
    if (this.active || this.primary !== this.s.id) return;
    const vcs = this.viewChanges.forView(this.view, quorum(this.s.n));
    if (vcs.length < quorum(this.s.n)) return;
    const plan = planNewView(vcs);
    // Digests only: the bodies are with the replicas that prepared them (BATCH-FETCH).
    const pps = plan.slots.map((s) => {
      const body: PrePrepareMsg = {
        type: MsgType.PrePrepare,
        view: this.view,
        seq: s.seq,
        nondet: EMPTY,
        entries: [],
        batch: s.digest,
      };
      const auth = prePrepareAuthDigest(this.s.id, this.view, s.seq, s.digest);
      return this.auth.sealMulticast(body, this.s.n, auth);
    });
    const nv: NewViewMsg = {
      type: MsgType.NewView,
      view: this.view,
      viewChanges: vcs.map((c) => c.frame),
      prePrepares: pps,
    };
    const frame = this.auth.sealMulticast(nv, this.s.n);
    this.io.send(this.s.otherReplicas, frame);
    this.io.count('newViewSent');
    this.enterView(this.view, plan, pps, frame);
  }

  /** A NEW-VIEW from the new view's primary that does not check: its proposal is refused. */
  private rejectNewView(primary: number): void {
    this.faults.note(primary, 'rejectedProposal');
    this.io.count('dropBadNewView');
  }

  onNewView(sender: number, msg: NewViewMsg, frame: Uint8Array): void {
    if (msg.view < this.view || (msg.view === this.view && this.active))
      return this.io.count('dropOldNewView');
    if (sender !== primaryOf(msg.view, this.s.n)) return this.io.count('dropNewViewNotFromPrimary');
    const vcs: CheckedViewChange[] = [];
    const senders = new Set<number>();
    for (const vf of msg.viewChanges) {
      const f = this.embedded(vf);
      if (!f || f.body.type !== MsgType.ViewChange || f.body.view !== msg.view)
        return this.rejectNewView(sender);
      const c = this.checkVC(f.sender, f.body, vf);
      if (!c || senders.has(f.sender)) return this.rejectNewView(sender);
      senders.add(f.sender);
      vcs.push(c);
    }
    if (vcs.length < quorum(this.s.n)) return this.rejectNewView(sender);
    const plan = planNewView(vcs);
    // Every pre-prepare must be the one the VIEW-CHANGEs call for: a NEW-VIEW that drops or
    // replaces a prepared request is rejected.
    if (msg.prePrepares.length !== plan.slots.length) return this.rejectNewView(sender);
    for (let i = 0; i < plan.slots.length; i++) {
      const f = this.embedded(msg.prePrepares[i]!);
      const want = plan.slots[i]!;
      if (!f || f.body.type !== MsgType.PrePrepare || f.sender !== sender)
        return this.rejectNewView(sender);
      if (f.body.view !== msg.view || f.body.seq !== want.seq) return this.rejectNewView(sender);
      if (!f.body.batch || !want.digest.equals(f.body.batch)) return this.rejectNewView(sender);
    }
    if (msg.view > this.view || this.active) {
      // Adopted without our own VIEW-CHANGE: the NEW-VIEW proves 2f + 1 replicas moved on.
      this.view = msg.view;
      this.io.emit({ kind: 'view', view: msg.view });
      this.active = false;
      this.agreement.abortTentative();
    }
    this.io.count('newViewAccepted');
    this.enterView(msg.view, plan, msg.prePrepares, frame);
  }

  /** Installs the new view: fresh slots from min-s on, the re-proposed pre-prepares in them. */
  private enterView(
    v: number,
    plan: NewViewPlan,
    prePrepares: Uint8Array[],
    frame: Uint8Array,
  ): void {
    const ag = this.agreement;
    this.view = v;
    this.active = true;
    this.failedViewChanges = 0;
    this.deadline = undefined;
    this.monitor.enterView(this.io.now);
    this.viewChanges.enter(v, frame);
    this.requests.resetForView();
    this.batchFetch.missing.clear();
    this.log.waiting.clear();
    ag.enterView(plan.minS);
    // Our checkpoint at min-s may become stable on the proof the VIEW-CHANGE carried.
    const own = this.cp.own.get(plan.minS);
    if (plan.minS > this.cp.lowWater && own && own.equals(plan.stableDigest)) {
      const proof: ProofEntry[] = [];
      for (const p of plan.proof) {
        const f = this.embedded(p);
        if (f) proof.push({ sender: f.sender, frame: p });
      }
      this.makeStable(plan.minS, own, proof);
    }
    const maxS = plan.minS + plan.slots.length;
    // The bodies of the re-proposed batches that we hold, looked up before the old slots go.
    const bodies = plan.slots.map((s) => this.heldBatch(s.seq, s.digest));
    // What committed here keeps its requests: a later rollback may have to run it again.
    const done = new Map<number, Slot>();
    for (const [seq, slot] of this.log.slots)
      if (seq > plan.minS) {
        if (seq <= ag.lastCommitted && slot.pp) done.set(seq, slot);
        // Separately transmitted requests leave the store when they run; a re-proposal
        // carries only their digests, so the bodies we hold go back in.
        for (const r of slot.pp?.requests ?? [])
          if (r && r.frame.length > this.s.largeRequestBytes) this.requests.putBackBody(r);
        this.log.slots.delete(seq);
      }
    ag.reproposedThrough(maxS);
    let missing = 0;
    plan.slots.forEach((s, i) => {
      const bytes = prePrepares[i]!;
      const slot = this.log.slot(s.seq, v, this.io.now);
      const held = bodies[i]?.msg;
      if (held) {
        const body: PrePrepareMsg = { ...held, view: v, seq: s.seq };
        const frame = reframe(bytes, body);
        ag.installReproposal(slot, body, frame, { digests: bodies[i]!.digests, digest: s.digest });
      } else {
        slot.header = { frame: bytes, digest: s.digest, sources: s.sources };
        this.batchFetch.missing.add(s.seq);
        missing++;
      }
      ag.keepCommitted(slot, done.get(s.seq));
    });
    if (missing > 0) {
      this.io.count('reproposedBatchMissing', missing);
      this.fetchBatches();
    }
    this.handOverRequests(plan);
    ag.tryExecute();
  }

  /**
   * Requests known from before the view change go to the new primary at once rather than at
   * the clients' next (backed-off) retransmission; the new primary queues its own.
   */
  private handOverRequests(plan: NewViewPlan): void {
    if (this.primary !== this.s.id) {
      for (const [key, req] of this.requests.waitedFor)
        if (req.frame.length <= this.s.largeRequestBytes) {
          this.requests.markRelayed(key);
          this.io.send([this.primary], req.frame);
        }
      return;
    }
    const reproposed = new Set<string>();
    for (const s of plan.slots) {
      const pp = this.log.slots.get(s.seq)?.pp;
      for (const d of pp?.requestDigests ?? []) reproposed.add(d.toString('hex'));
      // A retransmission of a re-proposed request must not be ordered a second time.
      for (const r of pp?.requests ?? []) if (r) this.requests.markOrdered(requestKey(r.msg));
    }
    for (const [key, req] of this.requests.waitedFor) {
      const rec = this.clients.get(req.msg.clientId);
      if (rec && req.msg.timestamp <= rec.lastTimestamp) continue;
      if (reproposed.has(req.hex)) continue;
      if (!this.requests.requeue(key, req)) break;
    }
  }

  /**
   * A batch body with this digest that we hold at `seq`: the null request, the pre-prepare in
   * our log (or one we refused), or the one in our prepared certificate.
   */
  private heldBatch(
    seq: number,
    digest: Buffer,
  ): { msg: PrePrepareMsg; digests: Buffer[]; pp?: Slot['pp'] } | undefined {
    if (digest.equals(NULL_DIGEST))
      return {
        msg: { type: MsgType.PrePrepare, view: 0, seq, nondet: EMPTY, entries: [] },
        digests: [],
      };
    const slot = this.log.slots.get(seq);
    for (const pp of [slot?.pp, slot?.refused])
      if (pp && pp.digest.equals(digest)) return { msg: pp.msg, digests: pp.requestDigests, pp };
    const c = this.log.certs.get(seq);
    if (!c || !c.digest.equals(digest)) return undefined;
    const msg = decodeFrame(c.cert.prePrepare).body as PrePrepareMsg;
    return { msg, digests: requestDigests(msg) };
  }

  // ---- Re-proposed batch bodies (BATCH-FETCH) ----------------------------------------------------

  /**
   * Asks for the bodies of the batches this view re-proposed that we lack, each of one replica
   * whose certificate named it (it prepared the batch), another one at each round (one may
   * have crashed, or lie).
   */
  fetchBatches(): void {
    const wanted = this.batchFetch.plan(
      this.log.slots.values(),
      this.view,
      this.s.id,
      this.s.otherReplicas,
      this.io.now,
    );
    if (wanted.size === 0) return this.agreement.maybePrePrepare();
    this.io.count('batchFetchSent');
    for (const [peer, list] of wanted) {
      const msg: BatchFetchMsg = { type: MsgType.BatchFetch, view: this.view, wanted: list };
      this.io.send([peer], this.auth.sealTo(msg, peer));
    }
  }

  /**
   * Sends a peer the batch bodies it asked for that we hold, as PRE-PREPAREs of its view: one
   * answer per half re-send interval, at most MAX_FETCH_REPLY_BYTES of bodies (a bound on what
   * a faulty replica can make us send).
   */
  onBatchFetch(sender: number, msg: BatchFetchMsg): void {
    if (!this.batchFetch.mayAnswer(sender, this.io.now, this.s.resendIntervalMs / 2))
      return this.io.count('batchFetchHeld');
    let bytes = 0;
    for (const w of msg.wanted) {
      if (bytes >= MAX_FETCH_REPLY_BYTES) break;
      const held = this.heldBatch(w.seq, Buffer.from(w.digest));
      if (!held) continue;
      const body: PrePrepareMsg = { ...held.msg, view: msg.view, seq: w.seq };
      const frame = this.auth.sealTo(body, sender);
      this.io.send([sender], frame);
      bytes += frame.length;
      // Separately transmitted requests travel as the clients' own frames.
      held.digests.forEach((d, i) => {
        if (!('digest' in held.msg.entries[i]!)) return;
        const r = held.pp?.requests[i] ?? this.requests.body(d.toString('hex'));
        if (r) {
          this.io.send([sender], r.frame);
          bytes += r.frame.length;
        }
      });
      this.io.count('batchBodySent');
    }
  }

  // ---- Forwarded NEW-VIEWs -----------------------------------------------------------------------

  /**
   * Sends the NEW-VIEW of the current view to a peer still behind (at most once per re-send
   * interval), sealed to it under today's keys: the NEW-VIEW's own MACs date from the view
   * change and may no longer check there.
   */
  forwardNewView(peer: number): void {
    const newView = this.viewChanges.newView;
    if (!this.active || !newView) return;
    if (!this.viewChanges.mayForward(peer, this.io.now, this.s.resendIntervalMs)) return;
    this.io.count('forwardNewView');
    const msg: ForwardedNewViewMsg = { type: MsgType.ForwardedNewView, newView };
    this.io.send([peer], this.auth.sealTo(msg, peer));
  }

  /**
   * A NEW-VIEW forwarded by `sender`. Checked as if it came from the primary; if its MACs fail
   * here (keys refreshed since the view change, or we restarted), it still counts as the
   * sender's word that it accepted this NEW-VIEW, and f + 1 replicas saying so for the same bytes
   * include a correct one that checked every MAC: we then take it with every check but the MACs.
   */
  onForwardedNewView(sender: number, bytes: Uint8Array): void {
    const f = tryDecodeFrame(bytes);
    if (!f) return this.io.count('dropBadNewView');
    const nv = f.body;
    if (nv.type !== MsgType.NewView) return this.io.count('dropBadNewView');
    if (nv.view < this.view || (nv.view === this.view && this.active))
      return this.io.count('dropOldNewView');
    if (this.embedded(bytes)) {
      this.onNewView(f.sender, nv, bytes);
      if (this.active && this.view === nv.view) return;
    }
    const hex = sha256(bytes).toString('hex');
    if (this.viewChanges.vouch(sender, nv.view, hex) < this.s.f + 1)
      return this.io.count('newViewVouched');
    this.withoutQuotedMacs(() => this.onNewView(f.sender, nv, bytes));
    if (this.active && this.view === nv.view) this.io.count('newViewAcceptedOnVouches');
  }
}
