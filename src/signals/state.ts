/**
 * What an enforcement point knows from the signals it has seen: a pure fold of sequenced signals
 * (issue #23). It only ever takes access away: nothing here un-revokes a session, a person's cutoff
 * only moves later, and a risk score is the newest one set.
 *
 * Bounded: each question keeps at most `cap` subjects (default {@link DEFAULT_STATE_CAP}); past it the
 * subject revoked longest ago is forgotten. Forgetting fails open for that subject, which is why the
 * server also ends revoked sessions in its store (a proxy re-reads a session it does not cache) and
 * why the cap is far above what a day of signals (the server's retention) holds in practice.
 *
 * @example
 * ```ts
 * const state = new RevocationState();
 * follow = followSignals({ …, after: state.lastSeq, onSignal: (m) => state.apply(m.seq, m.signal, m.received_at) });
 * if (state.sessionRevoked(session.id) || state.userCutoff(session.user)?.cutoffMs > session.createdAt) deny();
 * ```
 */
import type { Signal, SignalKind, UserRef } from '../api/signals.js';

/** Subjects kept per question at most (see the module comment). */
export const DEFAULT_STATE_CAP = 100_000;

/** The signal behind an answer, for the audit event of a refusal or a cut. */
export interface SignalRef {
  seq: number;
  kind: SignalKind;
  reason: string;
  /** When it happened, ms since the epoch. */
  atMs: number;
}

/** A person's cutoff: their sessions that began before `cutoffMs` are dead. */
export interface UserCutoff extends SignalRef {
  cutoffMs: number;
}

export interface RiskScore {
  score: number;
  seq: number;
  reason: string;
}

/** A person by name, or by OpenID issuer and subject. */
export type UserKey = string | { issuer: string; sub: string };
/** What a risk score is about. */
export type RiskSubject = { user: UserKey } | { deviceId: string };

/** A hex serial as one key: lowercase, without leading zeros (CAs and tools differ on both). */
export const normalizeSerial = (serial: string): string => serial.toLowerCase().replace(/^0+(?=.)/, '');

const userKey = (u: UserKey): string => (typeof u === 'string' ? `name:${u}` : `iss:${u.issuer}\u0000${u.sub}`);
const userKeys = (u: UserRef): string[] => [
  userKey(u.user),
  ...(u.issuer !== undefined && u.sub !== undefined ? [userKey({ issuer: u.issuer, sub: u.sub })] : []),
];

/** A map that keeps at most `cap` keys, forgetting the one set longest ago. */
class Bounded<V> {
  readonly #m = new Map<string, V>();
  constructor(private readonly cap: number) {}
  get(k: string): V | undefined {
    return this.#m.get(k);
  }
  set(k: string, v: V): void {
    this.#m.delete(k); // re-inserted: now the newest
    this.#m.set(k, v);
    if (this.#m.size > this.cap) {
      const oldest = this.#m.keys().next().value;
      if (oldest !== undefined) this.#m.delete(oldest);
    }
  }
  get size(): number {
    return this.#m.size;
  }
}

export class RevocationState {
  #lastSeq = 0;
  readonly #sessions: Bounded<SignalRef>;
  readonly #users: Bounded<UserCutoff>;
  readonly #devicesRevoked: Bounded<SignalRef>;
  readonly #devicesNonCompliant: Bounded<SignalRef>;
  readonly #risk: Bounded<RiskScore>;
  readonly #svids: Bounded<SignalRef>;
  readonly #entries: Bounded<SignalRef>;
  readonly #spiffeIds: Bounded<SignalRef>;
  readonly #agents: Bounded<SignalRef>;

  constructor(opts: { cap?: number; after?: number } = {}) {
    const cap = opts.cap ?? DEFAULT_STATE_CAP;
    if (!Number.isInteger(cap) || cap < 1) throw new RangeError('cap must be a positive integer');
    this.#lastSeq = opts.after ?? 0;
    this.#sessions = new Bounded(cap);
    this.#users = new Bounded(cap);
    this.#devicesRevoked = new Bounded(cap);
    this.#devicesNonCompliant = new Bounded(cap);
    this.#risk = new Bounded(cap);
    this.#svids = new Bounded(cap);
    this.#entries = new Bounded(cap);
    this.#spiffeIds = new Bounded(cap);
    this.#agents = new Bounded(cap);
  }

  /** The newest seq applied (0: none): what a follower resumes `after`. */
  get lastSeq(): number {
    return this.#lastSeq;
  }

  /**
   * Folds one signal in. A seq at or below `lastSeq` was applied already (a reconnect's overlap) and
   * is ignored: returns false. `receivedAt` (ISO or ms), when given, caps a cutoff taken from the
   * signal's `at`, so a source's clock far in the future cannot end sessions that begin later.
   */
  apply(seq: number, signal: Signal, receivedAt?: string | number): boolean {
    if (!Number.isInteger(seq) || seq <= this.#lastSeq) return false;
    this.#lastSeq = seq;
    const at = Date.parse(signal.at);
    const received = typeof receivedAt === 'string' ? Date.parse(receivedAt) : receivedAt;
    const atMs = received !== undefined && Number.isFinite(received) ? Math.min(at, received) : at;
    const ref: SignalRef = { seq, kind: signal.kind, reason: signal.reason, atMs };
    switch (signal.kind) {
      case 'session.revoked':
        this.#sessions.set(signal.sessionId, ref);
        return true;
      case 'user.disabled':
      case 'user.logged-out':
      case 'user.credentials-changed':
        for (const k of userKeys(signal.user)) {
          const prev = this.#users.get(k);
          // A cutoff only moves later.
          if (!prev || prev.cutoffMs <= atMs) this.#users.set(k, { ...ref, cutoffMs: atMs });
        }
        return true;
      case 'device.revoked':
      case 'device.lost':
        this.#devicesRevoked.set(signal.deviceId, ref);
        return true;
      case 'device.non-compliant':
        this.#devicesNonCompliant.set(signal.deviceId, ref);
        return true;
      case 'risk.set': {
        const score: RiskScore = { score: signal.score, seq, reason: signal.reason };
        const t = signal.target;
        if (t.type === 'device') this.#risk.set(`device:${t.deviceId}`, score);
        else for (const k of userKeys(t.user)) this.#risk.set(`user:${k}`, score);
        return true;
      }
      case 'workload.entry-deleted':
        this.#entries.set(signal.entryId, ref);
        if (signal.spiffeId !== undefined) this.#spiffeIds.set(signal.spiffeId, ref);
        return true;
      case 'agent.banned':
        this.#agents.set(signal.agentId, ref);
        return true;
      case 'svid.revoked':
        this.#svids.set(normalizeSerial(signal.serial), ref);
        return true;
    }
  }

  /** The revocation of a session (by its id), if any. */
  sessionRevoked(id: string): SignalRef | undefined {
    return this.#sessions.get(id);
  }

  /** A person's cutoff (disabled, logged out everywhere, credentials changed), if any. */
  userCutoff(user: UserKey): UserCutoff | undefined {
    return this.#users.get(userKey(user));
  }

  /** Whether a session of this person that began at `createdAtMs` is dead; the signal if so. */
  userSessionCut(users: readonly UserKey[], createdAtMs: number): UserCutoff | undefined {
    for (const u of users) {
      const c = this.userCutoff(u);
      if (c && createdAtMs <= c.cutoffMs) return c;
    }
    return undefined;
  }

  /** A device revoked or lost. */
  deviceRevoked(id: string): SignalRef | undefined {
    return this.#devicesRevoked.get(id);
  }

  /**
   * A device reported non-compliant. It stands until a compliant posture newer than `atMs` (the
   * caller reads posture from the store: there is no "compliant" signal, since signals only take away).
   */
  deviceNonCompliant(id: string): SignalRef | undefined {
    return this.#devicesNonCompliant.get(id);
  }

  /** The newest risk score set for a person or a device. */
  risk(subject: RiskSubject): RiskScore | undefined {
    return 'deviceId' in subject
      ? this.#risk.get(`device:${subject.deviceId}`)
      : this.#risk.get(`user:${userKey(subject.user)}`);
  }

  /** An SVID revoked by serial (hex, any case, leading zeros or not). */
  svidRevoked(serial: string): SignalRef | undefined {
    return this.#svids.get(normalizeSerial(serial));
  }

  /** A registration entry deleted (by entry id). */
  entryDeleted(id: string): SignalRef | undefined {
    return this.#entries.get(id);
  }

  /** A SPIFFE ID whose registration entry was deleted (when the signal named it). */
  spiffeIdCut(spiffeId: string): SignalRef | undefined {
    return this.#spiffeIds.get(spiffeId);
  }

  /** An agent banned (by its SPIFFE ID). */
  agentBanned(id: string): SignalRef | undefined {
    return this.#agents.get(id);
  }
}
