/**
 * The MFA service: people's second factors at the access proxy (TOTP, WebAuthn, recovery codes),
 * their verification with attempt limits, and the admin functions (list, reset, enrollment links).
 * The pages and endpoints (handler.ts) and the step-up wiring build on this; the store is shared by
 * every proxy, so each "use once" is decided there, in one statement.
 *
 * Every refusal is a `VerifyResult` with a short reason, never an exception; every enrollment,
 * verification, lockout, removal, reset and link is an audit event. TOTP needs the sealing key
 * (`kek`); the admin functions do not (the server has none).
 *
 * @example
 * const mfa = createMfaService({ store, kek, record: (e) => recorder.record(e) });
 * const r = await mfa.verifyTotp({ issuer, sub, user: 'alice' }, '287 082', '203.0.113.7');
 * if (r.ok) await authenticator.elevate(sessionId, r.methods);
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { AuditEventInput } from '../../audit/event.js';
import type { Kek, SealedKey } from '../../ca/kek.js';
import type { MfaFactorRecord, MfaSubjectKey, NewMfaFactor } from '../../store/mfa.js';
import type { Store } from '../../store/open.js';
import { type AttemptLimits, AttemptGuard, DEFAULT_ATTEMPT_LIMITS } from './attempts.js';
import { MfaError } from './errors.js';
import { qrSvg } from './qr.js';
import { newRecoveryCodes as generateRecoveryCodes, normalizeRecoveryCode, recoveryCodeHash } from './recovery.js';
import { matchTotp, newTotpSecret, normalizeTotpCode, totpStep, totpUri, toBase32 } from './totp.js';
import {
  authenticationOptions as webauthnAuthenticationOptions,
  parseAuthenticationResponse,
  parseRegistrationResponse,
  type RelyingParty,
  registrationOptions as webauthnRegistrationOptions,
  verifyAssertion,
  verifyRegistration,
  WEBAUTHN_TIMEOUT_MS,
  webauthnMethods,
  webauthnUserId,
} from './webauthn.js';

export type { RelyingParty } from './webauthn.js';
export type { AttemptLimits } from './attempts.js';

export interface MfaSubject {
  issuer: string;
  sub: string;
  user: string;
}

/** A factor as people and admins see it. Times are epoch milliseconds. */
export interface FactorInfo {
  id: string;
  kind: 'totp' | 'webauthn';
  name: string;
  createdAt: number;
  confirmed: boolean;
  lastUsedAt?: number;
}

export type VerifyResult =
  | { ok: true; methods: string[]; factorId?: string }
  | { ok: false; reason: string; locked: boolean };

export interface MfaService {
  /** The person's factors, confirmed and pending, oldest first. */
  factors(s: MfaSubject): Promise<FactorInfo[]>;
  /** Starts a TOTP enrollment (pending until {@link confirmTotp}); a pending one before it is dropped. */
  beginTotp(s: MfaSubject, name: string): Promise<{ factorId: string; secret: string; uri: string; qrSvg: string }>;
  confirmTotp(s: MfaSubject, factorId: string, code: string, ip: string): Promise<VerifyResult>;
  registrationOptions(
    s: MfaSubject,
    sessionId: string,
    rp: RelyingParty,
  ): Promise<{ challengeId: string; options: unknown /* PublicKeyCredentialCreationOptionsJSON */ }>;
  finishRegistration(
    s: MfaSubject,
    sessionId: string,
    challengeId: string,
    response: unknown,
    rp: RelyingParty,
    name: string,
    ip: string,
  ): Promise<VerifyResult>;
  /** Undefined when the person has no confirmed WebAuthn credential. */
  authenticationOptions(
    s: MfaSubject,
    sessionId: string,
    rp: RelyingParty,
  ): Promise<{ challengeId: string; options: unknown /* PublicKeyCredentialRequestOptionsJSON */ } | undefined>;
  verifyWebauthn(
    s: MfaSubject,
    sessionId: string,
    challengeId: string,
    response: unknown,
    rp: RelyingParty,
    ip: string,
  ): Promise<VerifyResult>;
  verifyTotp(s: MfaSubject, code: string, ip: string): Promise<VerifyResult>;
  verifyRecoveryCode(s: MfaSubject, code: string, ip: string): Promise<VerifyResult>;
  /** A new set of recovery codes (the old ones stop working); shown once, stored hashed. */
  newRecoveryCodes(s: MfaSubject): Promise<string[]>;
  removeFactor(s: MfaSubject, factorId: string): Promise<boolean>;
  // admin (server side; no kek needed)
  listByUser(user: string): Promise<Array<FactorInfo & { issuer: string; sub: string }>>;
  /** Deletes the user's factors and recovery codes and ends their sessions. */
  resetUser(user: string, actor: string): Promise<{ factors: number; sessions: number }>;
  createEnrollLink(user: string, actor: string, ttlMs: number): Promise<{ token: string; expiresAt: number }>;
  checkEnrollLink(token: string, user: string): Promise<boolean>;
  consumeEnrollLink(token: string, user: string): Promise<boolean>;
}

export interface MfaServiceDeps {
  store: Store;
  /** Seals TOTP secrets at rest (aad `totp:<factor id>`); required for TOTP, not for admin functions. */
  kek?: Kek;
  record?: (e: AuditEventInput) => void;
  attempts?: AttemptLimits;
  /** Epoch milliseconds (tests inject it). */
  now?: () => number;
  /** The issuer authenticator apps show (the `otpauth://` label and `issuer`). Default `nevertrust`. */
  totpIssuer?: string;
}

/** Confirmed factors a person may have (a bound on what one login can store). */
export const MAX_FACTORS = 20;

/** Enrollment links live at most 30 days. */
export const MAX_ENROLL_LINK_TTL_MS = 30 * 86_400_000;

const factorName = z
  .string()
  .trim()
  .min(1, 'a name is required')
  .max(64, 'at most 64 characters')
  .regex(/^[^\p{Cc}]+$/u, 'no control characters');

const userName = z.string().min(1, 'a user name is required').max(256, 'at most 256 characters');

const info = (f: MfaFactorRecord): FactorInfo => ({
  id: f.id,
  kind: f.kind,
  name: f.name,
  createdAt: f.createdAt,
  confirmed: f.confirmedAt !== null,
  ...(f.lastUsedAt !== null ? { lastUsedAt: f.lastUsedAt } : {}),
});

const key = (s: MfaSubject): MfaSubjectKey => ({ issuer: s.issuer, sub: s.sub });
const mine = (s: MfaSubject, f: MfaFactorRecord | undefined): f is MfaFactorRecord =>
  f !== undefined && f.issuer === s.issuer && f.sub === s.sub;

function parseUser(user: string): string {
  const r = userName.safeParse(user);
  if (!r.success) throw new MfaError('ERR_MFA_INPUT', `user: ${r.error.issues[0]?.message ?? 'invalid'}`);
  return r.data;
}

function parseName(name: string): string {
  const r = factorName.safeParse(name);
  if (!r.success) throw new MfaError('ERR_MFA_INPUT', `factor name: ${r.error.issues[0]?.message ?? 'invalid'}`);
  return r.data;
}

export function createMfaService(deps: MfaServiceDeps): MfaService {
  const { store } = deps;
  const repo = store.mfa;
  const now = deps.now ?? Date.now;
  const guard = new AttemptGuard(repo, deps.attempts ?? DEFAULT_ATTEMPT_LIMITS);
  const issuerLabel = deps.totpIssuer ?? 'nevertrust';

  const audit = (e: AuditEventInput) => {
    try {
      deps.record?.(e);
    } catch {
      // The recorder reports its own failures; a verification never fails for want of an audit line.
    }
  };
  const src = (user: string, ip?: string) => ({ user, ...(ip ? { ip } : {}) });

  const needKek = (): Kek => {
    if (!deps.kek) throw new MfaError('ERR_MFA_KEY_MISSING', 'TOTP needs the sealing key (session.key_file)');
    return deps.kek;
  };
  const sealSecret = (id: string, secret: Buffer) => JSON.stringify(needKek().seal(secret, `totp:${id}`));
  const openSecret = (f: MfaFactorRecord): Buffer => {
    if (!f.secret) throw new MfaError('ERR_MFA_NOT_FOUND', `factor ${f.id} has no TOTP secret`);
    return needKek().open(JSON.parse(f.secret) as SealedKey, `totp:${f.id}`);
  };

  let lastPurge = 0;
  const purge = async (at: number) => {
    if (at - lastPurge < 60_000) return;
    lastPurge = at;
    await repo.purgeExpired(at, guard.windowMs);
  };

  /** A refusal: counted against the person and the address, audited, and a lockout audited once. */
  const refuse = async (
    s: MfaSubject,
    ip: string,
    kind: 'mfa.verify' | 'mfa.enroll',
    factor: string,
    reason: string,
    details: Record<string, unknown> = {},
  ): Promise<VerifyResult> => {
    const at = now();
    const f = await guard.fail(key(s), ip, at);
    audit({ kind, outcome: 'deny', reason, source: src(s.user, ip), details: { factor, ...details } });
    for (const l of f.lockedNow) {
      audit({
        kind: 'mfa.lockout',
        outcome: 'deny',
        reason: l.key.startsWith('ip:') ? 'address_locked' : 'user_locked',
        source: src(s.user, ip),
        details: { factor, scope: l.key.startsWith('ip:') ? 'ip' : 'user', until: l.until },
      });
    }
    return { ok: false, reason, locked: f.locked };
  };

  /** Locked keys refuse before anything is checked (not counted again: the lock is the answer). */
  const lockedOut = async (s: MfaSubject, ip: string, kind: 'mfa.verify' | 'mfa.enroll', factor: string) => {
    if (!(await guard.locked(key(s), ip, now()))) return undefined;
    audit({ kind, outcome: 'deny', reason: 'locked', source: src(s.user, ip), details: { factor } });
    return { ok: false, reason: 'locked', locked: true } as const;
  };

  const succeed = async (
    s: MfaSubject,
    ip: string,
    kind: 'mfa.verify' | 'mfa.enroll',
    factor: string,
    methods: string[],
    factorId?: string,
    details: Record<string, unknown> = {},
  ): Promise<VerifyResult> => {
    await guard.succeed(key(s), now());
    audit({
      kind,
      outcome: 'allow',
      source: src(s.user, ip),
      details: { factor, methods, ...(factorId ? { factor_id: factorId } : {}), ...details },
    });
    return { ok: true, methods, ...(factorId ? { factorId } : {}) };
  };

  /** Finds the TOTP factor among `factors` that `code` belongs to and uses its step once. */
  const useTotp = async (
    factors: MfaFactorRecord[],
    code: string,
  ): Promise<{ ok: true; factor: MfaFactorRecord } | { ok: false; reason: string }> => {
    const at = now();
    let replayed = false;
    for (const f of factors) {
      const step = matchTotp(openSecret(f), code, at);
      if (step === undefined) continue;
      if (f.totpLastStep !== null && step <= f.totpLastStep) {
        replayed = true;
        continue;
      }
      if (await repo.useTotpStep(f.id, step, at)) return { ok: true, factor: f };
      replayed = true;
    }
    return { ok: false, reason: replayed ? 'replayed' : 'invalid_code' };
  };

  const roomForAnother = async (s: MfaSubject) => {
    const n = (await repo.listBySubject(key(s))).filter((f) => f.confirmedAt !== null).length;
    if (n >= MAX_FACTORS) {
      throw new MfaError('ERR_MFA_INPUT', `at most ${MAX_FACTORS} factors per person: remove one first`);
    }
  };

  /** A WebAuthn challenge kept for one ceremony of this session (taken once, within the timeout). */
  const rememberChallenge = async (
    sessionId: string,
    kind: 'webauthn.register' | 'webauthn.authenticate',
    challenge: string,
    at: number,
  ): Promise<string> => {
    const id = randomUUID();
    await repo.putChallenge({ id, sessionId, kind, challenge, expiresAt: at + WEBAUTHN_TIMEOUT_MS });
    return id;
  };

  /** A factor of `s` to store: the kind's own fields over empty ones (unconfirmed unless given). */
  const newFactor = (
    s: MfaSubject,
    id: string,
    at: number,
    own: Pick<NewMfaFactor, 'kind' | 'name'> & Partial<NewMfaFactor>,
  ): NewMfaFactor => ({
    id,
    ...key(s),
    userName: s.user,
    secret: null,
    credentialId: null,
    publicKey: null,
    counter: null,
    transports: [],
    aaguid: null,
    createdAt: at,
    confirmedAt: null,
    ...own,
  });

  const webauthnFactors = async (s: MfaSubject) =>
    (await repo.listBySubject(key(s))).filter((f) => f.kind === 'webauthn' && f.confirmedAt !== null);

  return {
    async factors(s) {
      return (await repo.listBySubject(key(s))).map(info);
    },

    async beginTotp(s, name) {
      const n = parseName(name);
      needKek();
      await roomForAnother(s);
      const id = randomUUID();
      const secret = newTotpSecret();
      const at = now();
      await repo.removePending(key(s), 'totp');
      await repo.addFactor(
        newFactor(s, id, at, {
          kind: 'totp',
          name: n,
          secret: sealSecret(id, secret),
          // Codes of steps before the enrollment began were never shown to anyone.
          totpLastStep: totpStep(at) - 2,
        }),
      );
      const uri = totpUri(issuerLabel, s.user, secret);
      audit({ kind: 'mfa.enroll', reason: 'started', source: src(s.user), details: { factor: 'totp', factor_id: id } });
      return { factorId: id, secret: toBase32(secret), uri, qrSvg: await qrSvg(uri) };
    },

    async confirmTotp(s, factorId, input, ip) {
      const locked = await lockedOut(s, ip, 'mfa.enroll', 'totp');
      if (locked) return locked;
      const f = await repo.findById(factorId);
      if (!mine(s, f) || f.kind !== 'totp' || f.confirmedAt !== null) {
        return refuse(s, ip, 'mfa.enroll', 'totp', 'unknown_factor');
      }
      const code = normalizeTotpCode(input);
      if (code === undefined) return refuse(s, ip, 'mfa.enroll', 'totp', 'malformed');
      const used = await useTotp([f], code);
      if (!used.ok) return refuse(s, ip, 'mfa.enroll', 'totp', used.reason, { factor_id: f.id });
      if (!(await repo.confirm(f.id, now()))) return refuse(s, ip, 'mfa.enroll', 'totp', 'unknown_factor');
      return succeed(s, ip, 'mfa.enroll', 'totp', ['otp'], f.id, { name: f.name });
    },

    async verifyTotp(s, input, ip) {
      const locked = await lockedOut(s, ip, 'mfa.verify', 'totp');
      if (locked) return locked;
      const code = normalizeTotpCode(input);
      if (code === undefined) return refuse(s, ip, 'mfa.verify', 'totp', 'malformed');
      const factors = (await repo.listBySubject(key(s))).filter((f) => f.kind === 'totp' && f.confirmedAt !== null);
      if (factors.length === 0) return refuse(s, ip, 'mfa.verify', 'totp', 'no_factor');
      const used = await useTotp(factors, code);
      if (!used.ok) return refuse(s, ip, 'mfa.verify', 'totp', used.reason);
      return succeed(s, ip, 'mfa.verify', 'totp', ['otp'], used.factor.id);
    },

    async verifyRecoveryCode(s, input, ip) {
      const locked = await lockedOut(s, ip, 'mfa.verify', 'recovery_code');
      if (locked) return locked;
      const code = normalizeRecoveryCode(input);
      if (code === undefined) return refuse(s, ip, 'mfa.verify', 'recovery_code', 'malformed');
      if (!(await repo.useRecoveryCode(key(s), recoveryCodeHash(code), now()))) {
        return refuse(s, ip, 'mfa.verify', 'recovery_code', 'invalid_code');
      }
      const remaining = await repo.countRecoveryCodes(key(s));
      return succeed(s, ip, 'mfa.verify', 'recovery_code', ['mfa'], undefined, { remaining });
    },

    async newRecoveryCodes(s) {
      const codes = generateRecoveryCodes();
      await repo.replaceRecoveryCodes(
        key(s),
        codes.map((c) => recoveryCodeHash(normalizeRecoveryCode(c) as string)),
        now(),
      );
      audit({
        kind: 'mfa.recovery_codes',
        outcome: 'allow',
        source: src(s.user),
        details: { factor: 'recovery_code', count: codes.length },
      });
      return codes;
    },

    async registrationOptions(s, sessionId, rp) {
      const at = now();
      await purge(at);
      await roomForAnother(s);
      const existing = (await repo.listBySubject(key(s))).filter((f) => f.kind === 'webauthn' && f.credentialId);
      const options = await webauthnRegistrationOptions({
        rp,
        userId: webauthnUserId(s.issuer, s.sub),
        userName: s.user,
        exclude: existing.map((f) => ({ id: f.credentialId as string, transports: f.transports })),
      });
      const challengeId = await rememberChallenge(sessionId, 'webauthn.register', options.challenge, at);
      audit({ kind: 'mfa.enroll', reason: 'started', source: src(s.user), details: { factor: 'webauthn' } });
      return { challengeId, options };
    },

    async finishRegistration(s, sessionId, challengeId, response, rp, name, ip) {
      const n = parseName(name);
      const parsed = parseRegistrationResponse(response);
      // The challenge is taken first, whatever the answer: it is one-time even for a bad answer.
      const challenge = await repo.takeChallenge(challengeId, sessionId, 'webauthn.register', now());
      if (!parsed) return refuse(s, ip, 'mfa.enroll', 'webauthn', 'malformed');
      if (challenge === undefined) return refuse(s, ip, 'mfa.enroll', 'webauthn', 'unknown_challenge');
      const v = await verifyRegistration(parsed, challenge, rp);
      if (!v.ok) return refuse(s, ip, 'mfa.enroll', 'webauthn', v.reason);
      const c = v.value;
      if (await repo.findByCredentialId(c.id)) return refuse(s, ip, 'mfa.enroll', 'webauthn', 'already_registered');
      await roomForAnother(s);
      const id = randomUUID();
      const at = now();
      try {
        await repo.addFactor(
          newFactor(s, id, at, {
            kind: 'webauthn',
            name: n,
            credentialId: c.id,
            publicKey: c.publicKey,
            counter: c.counter,
            transports: c.transports,
            aaguid: c.aaguid,
            confirmedAt: at,
          }),
        );
      } catch {
        // The unique credential id: the same credential registered concurrently.
        return refuse(s, ip, 'mfa.enroll', 'webauthn', 'already_registered');
      }
      return succeed(s, ip, 'mfa.enroll', 'webauthn', webauthnMethods(c), id, { name: n, aaguid: c.aaguid });
    },

    async authenticationOptions(s, sessionId, rp) {
      const at = now();
      await purge(at);
      const factors = await webauthnFactors(s);
      if (factors.length === 0) return undefined;
      const options = await webauthnAuthenticationOptions({
        rp,
        allow: factors.map((f) => ({ id: f.credentialId as string, transports: f.transports })),
      });
      const challengeId = await rememberChallenge(sessionId, 'webauthn.authenticate', options.challenge, at);
      audit({ kind: 'mfa.challenge', outcome: 'step_up', source: src(s.user), details: { factor: 'webauthn' } });
      return { challengeId, options };
    },

    async verifyWebauthn(s, sessionId, challengeId, response, rp, ip) {
      const locked = await lockedOut(s, ip, 'mfa.verify', 'webauthn');
      if (locked) return locked;
      const parsed = parseAuthenticationResponse(response);
      const challenge = await repo.takeChallenge(challengeId, sessionId, 'webauthn.authenticate', now());
      if (!parsed) return refuse(s, ip, 'mfa.verify', 'webauthn', 'malformed');
      if (challenge === undefined) return refuse(s, ip, 'mfa.verify', 'webauthn', 'unknown_challenge');
      const f = await repo.findByCredentialId(parsed.id);
      // Another person's credential is as unknown as no credential at all.
      if (!mine(s, f) || f.kind !== 'webauthn' || f.confirmedAt === null || !f.publicKey) {
        return refuse(s, ip, 'mfa.verify', 'webauthn', 'unknown_credential');
      }
      const stored = f.counter ?? 0;
      const v = await verifyAssertion(parsed, challenge, rp, {
        id: f.credentialId as string,
        publicKey: f.publicKey,
        counter: stored,
        transports: f.transports,
      });
      if (!v.ok) return refuse(s, ip, 'mfa.verify', 'webauthn', v.reason, { factor_id: f.id });
      // Conditional on the counter read: of two proxies verifying one assertion, one moves it.
      if (!(await repo.updateCounter(f.id, stored, v.value.newCounter, now()))) {
        return refuse(s, ip, 'mfa.verify', 'webauthn', 'counter', { factor_id: f.id });
      }
      return succeed(s, ip, 'mfa.verify', 'webauthn', webauthnMethods(v.value), f.id);
    },

    async removeFactor(s, factorId) {
      const f = await repo.findById(factorId);
      const removed = mine(s, f) && (await repo.removeFactor(key(s), factorId));
      audit({
        kind: 'mfa.remove',
        outcome: removed ? 'allow' : 'deny',
        ...(removed ? {} : { reason: 'unknown_factor' }),
        source: src(s.user),
        details: { factor: f && removed ? f.kind : 'unknown', factor_id: factorId },
      });
      return removed;
    },

    async listByUser(user) {
      return (await repo.listByUser(parseUser(user))).map((f) => ({ ...info(f), issuer: f.issuer, sub: f.sub }));
    },

    async resetUser(user, actor) {
      const r = await repo.resetByUser(parseUser(user));
      const ended = await store.accessSessions.endByUser(parseUser(user), r.subjects, 'mfa_reset');
      audit({
        kind: 'mfa.reset',
        outcome: 'allow',
        source: { user: actor },
        details: { user, factors: r.factors, sessions: ended.length },
      });
      return { factors: r.factors, sessions: ended.length };
    },

    async createEnrollLink(user, actor, ttlMs) {
      const u = parseUser(user);
      if (!Number.isInteger(ttlMs) || ttlMs <= 0 || ttlMs > MAX_ENROLL_LINK_TTL_MS) {
        throw new MfaError('ERR_MFA_INPUT', 'an enrollment link lives between 1 ms and 30 days');
      }
      const token = randomBytes(32).toString('base64url');
      const at = now();
      const expiresAt = at + ttlMs;
      await repo.createEnrollLink(token, u, actor, at, expiresAt);
      audit({
        kind: 'mfa.enroll_link',
        outcome: 'allow',
        reason: 'created',
        source: { user: actor },
        details: { user: u, expires_at: expiresAt },
      });
      return { token, expiresAt };
    },

    async checkEnrollLink(token, user) {
      return repo.checkEnrollLink(token, user, now());
    },

    async consumeEnrollLink(token, user) {
      const used = await repo.consumeEnrollLink(token, user, now());
      audit({
        kind: 'mfa.enroll_link',
        outcome: used ? 'allow' : 'deny',
        reason: used ? 'used' : 'unusable',
        source: { user },
      });
      return used;
    },
  };
}
