import { type Kysely, sql } from 'kysely';
import { sha256Hex } from './access-sessions.js';
import type { Database } from './schema.js';

/** A person's provider identity: the key of their factors and recovery codes. */
export interface MfaSubjectKey {
  issuer: string;
  sub: string;
}

export type MfaFactorKind = 'totp' | 'webauthn';

/** A stored second factor. Times are epoch milliseconds. `secret` is sealed, opaque to the store. */
export interface MfaFactorRecord {
  id: string;
  issuer: string;
  sub: string;
  userName: string;
  kind: MfaFactorKind;
  name: string;
  secret: string | null;
  totpLastStep: number | null;
  credentialId: string | null;
  publicKey: string | null;
  counter: number | null;
  transports: string[];
  aaguid: string | null;
  createdAt: number;
  confirmedAt: number | null;
  lastUsedAt: number | null;
}

export type NewMfaFactor = Omit<MfaFactorRecord, 'totpLastStep' | 'lastUsedAt'> & { totpLastStep?: number | null };

/** What a failed attempt did to its key's counter. */
export interface MfaFailure {
  failures: number;
  /** When the key is locked until (ms), or null. */
  lockedUntil: number | null;
  /** True for the one failure that set the lock (so one lockout is audited once, even across proxies). */
  lockedNow: boolean;
}

export interface MfaAttemptLimit {
  /** Failures within `windowMs` that lock the key. */
  max: number;
  windowMs: number;
  lockMs: number;
}

export interface MfaChallenge {
  id: string;
  sessionId: string;
  kind: 'webauthn.register' | 'webauthn.authenticate';
  challenge: string;
  expiresAt: number;
}

/** The attempt counter key of a person (`ip:<address>` is the other kind). */
export const userAttemptKey = (s: MfaSubjectKey): string => `user:${s.issuer} ${s.sub}`;

type FactorRow = Database['mfa_factors'];

const fromRow = (r: FactorRow): MfaFactorRecord => ({
  id: r.id,
  issuer: r.issuer,
  sub: r.sub,
  userName: r.user_name,
  kind: r.kind as MfaFactorKind,
  name: r.name,
  secret: r.secret,
  totpLastStep: r.totp_last_step === null ? null : Number(r.totp_last_step),
  credentialId: r.credential_id,
  publicKey: r.public_key,
  counter: r.counter === null ? null : Number(r.counter),
  transports: r.transports ? (JSON.parse(r.transports) as string[]) : [],
  aaguid: r.aaguid,
  createdAt: Number(r.created_at),
  confirmedAt: r.confirmed_at === null ? null : Number(r.confirmed_at),
  lastUsedAt: r.last_used_at === null ? null : Number(r.last_used_at),
});

const changed = (res: { numUpdatedRows?: bigint; numDeletedRows?: bigint }): number =>
  Number(res.numUpdatedRows ?? res.numDeletedRows ?? 0n);

/**
 * People's second factors at the access proxy (migration 0008): factors, recovery codes (stored as
 * SHA-256 hex), attempt counters with lockout, admin-issued enrollment links (stored hashed) and
 * one-time WebAuthn challenges. Every "use once" is one conditional statement, so two proxies on one
 * store never both accept the same TOTP step, counter, recovery code, link or challenge.
 */
export class MfaRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async addFactor(f: NewMfaFactor): Promise<void> {
    await this.db
      .insertInto('mfa_factors')
      .values({
        id: f.id,
        issuer: f.issuer,
        sub: f.sub,
        user_name: f.userName,
        kind: f.kind,
        name: f.name,
        secret: f.secret,
        totp_last_step: f.totpLastStep ?? null,
        credential_id: f.credentialId,
        public_key: f.publicKey,
        counter: f.counter,
        transports: f.transports.length > 0 ? JSON.stringify(f.transports) : null,
        aaguid: f.aaguid,
        created_at: f.createdAt,
        confirmed_at: f.confirmedAt,
        last_used_at: null,
      })
      .execute();
  }

  /** A subject's factors, confirmed and pending, oldest first. */
  async listBySubject(s: MfaSubjectKey): Promise<MfaFactorRecord[]> {
    const rows = await this.db
      .selectFrom('mfa_factors')
      .selectAll()
      .where('issuer', '=', s.issuer)
      .where('sub', '=', s.sub)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map(fromRow);
  }

  /** Every factor stored under a user name (any issuer), oldest first: for admins. */
  async listByUser(userName: string): Promise<MfaFactorRecord[]> {
    const rows = await this.db
      .selectFrom('mfa_factors')
      .selectAll()
      .where('user_name', '=', userName)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map(fromRow);
  }

  async findById(id: string): Promise<MfaFactorRecord | undefined> {
    const r = await this.db.selectFrom('mfa_factors').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? fromRow(r) : undefined;
  }

  async findByCredentialId(credentialId: string): Promise<MfaFactorRecord | undefined> {
    const r = await this.db
      .selectFrom('mfa_factors')
      .selectAll()
      .where('credential_id', '=', credentialId)
      .executeTakeFirst();
    return r ? fromRow(r) : undefined;
  }

  /** Confirms a pending factor; false when unknown or already confirmed. */
  async confirm(id: string, at: number): Promise<boolean> {
    const res = await this.db
      .updateTable('mfa_factors')
      .set({ confirmed_at: at, last_used_at: at })
      .where('id', '=', id)
      .where('confirmed_at', 'is', null)
      .executeTakeFirst();
    return changed(res) === 1;
  }

  /**
   * Marks a TOTP time step as used, only when it is newer than the last one used: true for exactly
   * one caller per step, whichever proxy it runs in.
   */
  async useTotpStep(id: string, step: number, at: number): Promise<boolean> {
    const res = await this.db
      .updateTable('mfa_factors')
      .set({ totp_last_step: step, last_used_at: at })
      .where('id', '=', id)
      .where('kind', '=', 'totp')
      .where((eb) => eb.or([eb('totp_last_step', 'is', null), eb('totp_last_step', '<', step)]))
      .executeTakeFirst();
    return changed(res) === 1;
  }

  /** Moves a WebAuthn signature counter from `old` to `next`; false when someone else moved it first. */
  async updateCounter(id: string, old: number, next: number, at: number): Promise<boolean> {
    const res = await this.db
      .updateTable('mfa_factors')
      .set({ counter: next, last_used_at: at })
      .where('id', '=', id)
      .where('kind', '=', 'webauthn')
      .where('counter', '=', old)
      .executeTakeFirst();
    return changed(res) === 1;
  }

  /** Removes one of a subject's factors; false when it is not theirs or unknown. */
  async removeFactor(s: MfaSubjectKey, id: string): Promise<boolean> {
    const res = await this.db
      .deleteFrom('mfa_factors')
      .where('id', '=', id)
      .where('issuer', '=', s.issuer)
      .where('sub', '=', s.sub)
      .executeTakeFirst();
    return changed(res) === 1;
  }

  /** Drops a subject's unconfirmed factors of one kind (an enrollment started again); returns how many. */
  async removePending(s: MfaSubjectKey, kind: MfaFactorKind): Promise<number> {
    const res = await this.db
      .deleteFrom('mfa_factors')
      .where('issuer', '=', s.issuer)
      .where('sub', '=', s.sub)
      .where('kind', '=', kind)
      .where('confirmed_at', 'is', null)
      .executeTakeFirst();
    return changed(res);
  }

  /** Replaces a subject's recovery codes (given as SHA-256 hex) in one transaction. */
  async replaceRecoveryCodes(s: MfaSubjectKey, hashes: readonly string[], at: number): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('mfa_recovery_codes').where('issuer', '=', s.issuer).where('sub', '=', s.sub).execute();
      if (hashes.length === 0) return;
      await trx
        .insertInto('mfa_recovery_codes')
        .values(hashes.map((code_hash) => ({ code_hash, issuer: s.issuer, sub: s.sub, created_at: at, used_at: null })))
        .execute();
    });
  }

  /** Uses one recovery code (by hash) of this subject: true once, false when unknown, used or another's. */
  async useRecoveryCode(s: MfaSubjectKey, hash: string, at: number): Promise<boolean> {
    const res = await this.db
      .updateTable('mfa_recovery_codes')
      .set({ used_at: at })
      .where('code_hash', '=', hash)
      .where('issuer', '=', s.issuer)
      .where('sub', '=', s.sub)
      .where('used_at', 'is', null)
      .executeTakeFirst();
    return changed(res) === 1;
  }

  /** Unused recovery codes left. */
  async countRecoveryCodes(s: MfaSubjectKey): Promise<number> {
    const r = await this.db
      .selectFrom('mfa_recovery_codes')
      .select((eb) => eb.fn.countAll<number | string | bigint>().as('n'))
      .where('issuer', '=', s.issuer)
      .where('sub', '=', s.sub)
      .where('used_at', 'is', null)
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }

  /**
   * Counts a failure for `key` in one upsert (a window older than `windowMs` starts over), then sets
   * the lock when the count reaches `max`. The lock is set by one conditional UPDATE, so `lockedNow`
   * is true for exactly one failure per lock.
   */
  async registerFailure(key: string, at: number, limit: MfaAttemptLimit): Promise<MfaFailure> {
    const stale = at - limit.windowMs;
    const row = await this.db
      .insertInto('mfa_attempts')
      .values({ key, failures: 1, window_start: at, locked_until: null })
      .onConflict((oc) =>
        oc.column('key').doUpdateSet({
          failures: sql<number>`case when mfa_attempts.window_start <= ${stale} then 1 else mfa_attempts.failures + 1 end`,
          window_start: sql<number>`case when mfa_attempts.window_start <= ${stale} then ${at} else mfa_attempts.window_start end`,
        }),
      )
      .returning(['failures', 'locked_until'])
      .executeTakeFirstOrThrow();
    const failures = Number(row.failures);
    const lockedUntil = row.locked_until === null ? null : Number(row.locked_until);
    if (lockedUntil !== null && lockedUntil > at) return { failures, lockedUntil, lockedNow: false };
    if (failures < limit.max) return { failures, lockedUntil: null, lockedNow: false };
    const until = at + limit.lockMs;
    // The counter starts over with the lock: once it expires, `max` new failures are needed again.
    const res = await this.db
      .updateTable('mfa_attempts')
      .set({ locked_until: until, failures: 0, window_start: at })
      .where('key', '=', key)
      .where((eb) => eb.or([eb('locked_until', 'is', null), eb('locked_until', '<=', at)]))
      .executeTakeFirst();
    if (changed(res) === 1) return { failures, lockedUntil: until, lockedNow: true };
    return { failures, lockedUntil: (await this.lockedUntil([key], at)) ?? null, lockedNow: false };
  }

  /** The latest lock among `keys` still in force at `at` (ms), or undefined. */
  async lockedUntil(keys: readonly string[], at: number): Promise<number | undefined> {
    if (keys.length === 0) return undefined;
    const r = await this.db
      .selectFrom('mfa_attempts')
      .select((eb) => eb.fn.max('locked_until').as('m'))
      .where('key', 'in', [...keys])
      .where('locked_until', '>', at)
      .executeTakeFirst();
    return r?.m === null || r?.m === undefined ? undefined : Number(r.m);
  }

  /** Forgets a key's failures (after a success); a lock in force stays. */
  async clearFailures(key: string, at: number): Promise<void> {
    await this.db
      .deleteFrom('mfa_attempts')
      .where('key', '=', key)
      .where((eb) => eb.or([eb('locked_until', 'is', null), eb('locked_until', '<=', at)]))
      .execute();
  }

  /** Stores an enrollment link token (hashed) for one user name. */
  async createEnrollLink(token: string, userName: string, createdBy: string, at: number, expiresAt: number) {
    await this.db
      .insertInto('mfa_enroll_links')
      .values({
        token_hash: sha256Hex(token),
        user_name: userName,
        created_by: createdBy,
        created_at: at,
        expires_at: expiresAt,
        used_at: null,
      })
      .execute();
  }

  /** Whether a link is usable at `at` by this user name (unused, not expired). Does not use it. */
  async checkEnrollLink(token: string, userName: string, at: number): Promise<boolean> {
    const r = await this.db
      .selectFrom('mfa_enroll_links')
      .select('token_hash')
      .where('token_hash', '=', sha256Hex(token))
      .where('user_name', '=', userName)
      .where('used_at', 'is', null)
      .where('expires_at', '>', at)
      .executeTakeFirst();
    return r !== undefined;
  }

  /** Uses a link: true for exactly one caller, only for its user name and before it expires. */
  async consumeEnrollLink(token: string, userName: string, at: number): Promise<boolean> {
    const res = await this.db
      .updateTable('mfa_enroll_links')
      .set({ used_at: at })
      .where('token_hash', '=', sha256Hex(token))
      .where('user_name', '=', userName)
      .where('used_at', 'is', null)
      .where('expires_at', '>', at)
      .executeTakeFirst();
    return changed(res) === 1;
  }

  /**
   * Stores a challenge; a session keeps only its `keep` newest ones, so a page reloaded in a loop
   * cannot fill the table.
   */
  async putChallenge(c: MfaChallenge, keep = 5): Promise<void> {
    await this.db
      .insertInto('mfa_challenges')
      .values({ id: c.id, session_id: c.sessionId, kind: c.kind, challenge: c.challenge, expires_at: c.expiresAt })
      .execute();
    const newest = await this.db
      .selectFrom('mfa_challenges')
      .select('id')
      .where('session_id', '=', c.sessionId)
      .orderBy('expires_at', 'desc')
      .orderBy('id')
      .limit(keep)
      .execute();
    await this.db
      .deleteFrom('mfa_challenges')
      .where('session_id', '=', c.sessionId)
      .where(
        'id',
        'not in',
        newest.map((r) => r.id),
      )
      .execute();
  }

  /**
   * Takes a challenge exactly once (DELETE … RETURNING): undefined when unknown, already taken, of
   * another session or kind, or expired at `at`. Another session's challenge is left in place.
   */
  async takeChallenge(
    id: string,
    sessionId: string,
    kind: MfaChallenge['kind'],
    at: number,
  ): Promise<string | undefined> {
    const r = await this.db
      .deleteFrom('mfa_challenges')
      .where('id', '=', id)
      .where('session_id', '=', sessionId)
      .where('kind', '=', kind)
      .returning(['challenge', 'expires_at'])
      .executeTakeFirst();
    if (!r || Number(r.expires_at) <= at) return undefined;
    return r.challenge;
  }

  /** Deletes expired challenges and enrollment links, and attempt counters that no longer matter. */
  async purgeExpired(at: number, windowMs: number): Promise<void> {
    await this.db.deleteFrom('mfa_challenges').where('expires_at', '<=', at).execute();
    await this.db.deleteFrom('mfa_enroll_links').where('expires_at', '<=', at).execute();
    await this.db
      .deleteFrom('mfa_attempts')
      .where('window_start', '<=', at - windowMs)
      .where((eb) => eb.or([eb('locked_until', 'is', null), eb('locked_until', '<=', at)]))
      .execute();
  }

  /**
   * Deletes every factor stored under a user name and the recovery codes of those subjects, in one
   * transaction; returns the (issuer, sub) pairs, so their sessions can be ended, and the count.
   */
  async resetByUser(userName: string): Promise<{ subjects: MfaSubjectKey[]; factors: number }> {
    return this.db.transaction().execute(async (trx) => {
      const rows = await trx
        .selectFrom('mfa_factors')
        .select(['issuer', 'sub'])
        .distinct()
        .where('user_name', '=', userName)
        .execute();
      const res = await trx.deleteFrom('mfa_factors').where('user_name', '=', userName).executeTakeFirst();
      for (const s of rows) {
        await trx.deleteFrom('mfa_recovery_codes').where('issuer', '=', s.issuer).where('sub', '=', s.sub).execute();
        await trx.deleteFrom('mfa_attempts').where('key', '=', userAttemptKey(s)).execute();
      }
      return { subjects: rows.map((r) => ({ issuer: r.issuer, sub: r.sub })), factors: changed(res) };
    });
  }
}
