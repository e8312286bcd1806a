import { createHash } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { Database } from './schema.js';

/** SHA-256 hex: cookie tokens, login states and logout token ids are stored only as hashes. */
export const sha256Hex = (text: string): string => createHash('sha256').update(text).digest('hex');

/** A stored session. `person` and `tokens` are opaque to the store (JSON, and sealed JSON). */
export interface AccessSessionRecord {
  id: string;
  host: string;
  issuer: string;
  sub: string;
  providerSid: string | null;
  person: string;
  tokens: string;
  tokenExpiresAt: number | null;
  createdAt: number;
  expiresAt: number;
  lastSeenAt: number;
  endedAt: number | null;
  endReason: string | null;
  /** JSON {at, methods}: the session's last second factor at the proxy; opaque to the store. */
  mfa: string | null;
  /** The person's name at the proxy (its user claim), for ending sessions by name. */
  userName: string | null;
  /** The device the session is bound to (its certificate came with the login); null: none. */
  deviceId: string | null;
}

export interface AccessSessionChange {
  seq: number;
  sessionId: string;
  kind: 'ended' | 'updated';
}

type Row = Database['access_sessions'];

const fromRow = (r: Row): AccessSessionRecord => ({
  id: r.id,
  host: r.host,
  issuer: r.issuer,
  sub: r.sub,
  providerSid: r.provider_sid,
  person: r.person,
  tokens: r.tokens,
  tokenExpiresAt: r.token_expires_at === null ? null : Number(r.token_expires_at),
  createdAt: Number(r.created_at),
  expiresAt: Number(r.expires_at),
  lastSeenAt: Number(r.last_seen_at),
  endedAt: r.ended_at === null ? null : Number(r.ended_at),
  endReason: r.end_reason,
  mfa: r.mfa ?? null,
  userName: r.user_name ?? null,
  deviceId: r.device_id ?? null,
});

/**
 * People's sessions at the access proxy, their change feed, one-time login states and seen
 * back-channel logout tokens. Every end or token update writes a change row in the same
 * transaction, so followers on other proxies evict the session from their caches.
 */
export class AccessSessionRepository {
  /** Session reads (by cookie or id) since start: lets tests prove the cache spares the database. */
  sessionReads = 0;

  constructor(private readonly db: Kysely<Database>) {}

  async create(
    token: string,
    s: Omit<AccessSessionRecord, 'endedAt' | 'endReason' | 'mfa' | 'userName' | 'deviceId'> & {
      userName?: string;
      deviceId?: string | null;
    },
  ): Promise<void> {
    await this.db
      .insertInto('access_sessions')
      .values({
        token_hash: sha256Hex(token),
        id: s.id,
        host: s.host,
        issuer: s.issuer,
        sub: s.sub,
        provider_sid: s.providerSid,
        person: s.person,
        tokens: s.tokens,
        token_expires_at: s.tokenExpiresAt,
        created_at: s.createdAt,
        expires_at: s.expiresAt,
        last_seen_at: s.lastSeenAt,
        ended_at: null,
        end_reason: null,
        mfa: null,
        user_name: s.userName ?? null,
        device_id: s.deviceId ?? null,
      })
      .execute();
  }

  async findByToken(token: string): Promise<AccessSessionRecord | undefined> {
    this.sessionReads++;
    const r = await this.db
      .selectFrom('access_sessions')
      .selectAll()
      .where('token_hash', '=', sha256Hex(token))
      .executeTakeFirst();
    return r ? fromRow(r) : undefined;
  }

  async findById(id: string): Promise<AccessSessionRecord | undefined> {
    this.sessionReads++;
    const r = await this.db.selectFrom('access_sessions').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? fromRow(r) : undefined;
  }

  /**
   * Sessions live at `now` (ms): not ended, before their absolute expiry, seen within `idleMs`
   * (last-seen is written behind, so this may count a session a little longer). For summaries.
   */
  async countActive(now: number, idleMs: number): Promise<number> {
    const r = await this.db
      .selectFrom('access_sessions')
      .select((eb) => eb.fn.countAll<number | string | bigint>().as('n'))
      .where('ended_at', 'is', null)
      .where('expires_at', '>', now)
      .where('last_seen_at', '>', now - idleMs)
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }

  /**
   * Live sessions at `now` (ms): not ended, before their absolute expiry; most recently seen first,
   * at most `limit`, optionally only those of one user name (the admin console's list).
   */
  async listLive(now: number, opts: { userName?: string; limit: number }): Promise<AccessSessionRecord[]> {
    let q = this.db
      .selectFrom('access_sessions')
      .selectAll()
      .where('ended_at', 'is', null)
      .where('expires_at', '>', now);
    if (opts.userName !== undefined) q = q.where('user_name', '=', opts.userName);
    const rows = await q.orderBy('last_seen_at', 'desc').orderBy('id').limit(opts.limit).execute();
    return rows.map(fromRow);
  }

  /** Last-seen is written behind and not a change: other proxies re-read before refusing as idle. */
  async touch(id: string, at: number): Promise<void> {
    await this.db
      .updateTable('access_sessions')
      .set({ last_seen_at: at })
      .where('id', '=', id)
      .where('last_seen_at', '<', at)
      .execute();
  }

  /** New (sealed) provider tokens after a refresh; a change, so other proxies reload them. */
  async updateTokens(id: string, tokens: string, tokenExpiresAt: number | null): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      const res = await trx
        .updateTable('access_sessions')
        .set({ tokens, token_expires_at: tokenExpiresAt })
        .where('id', '=', id)
        .where('ended_at', 'is', null)
        .executeTakeFirst();
      if (Number(res.numUpdatedRows) !== 1) return false;
      await this.#change(trx, [id], 'updated');
      return true;
    });
  }

  /**
   * The session passed a second factor (step-up at the proxy): a change, so other proxies reload it.
   * False when the session has ended or is unknown.
   */
  async updateMfa(id: string, mfa: string): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      const res = await trx
        .updateTable('access_sessions')
        .set({ mfa })
        .where('id', '=', id)
        .where('ended_at', 'is', null)
        .executeTakeFirst();
      if (Number(res.numUpdatedRows) !== 1) return false;
      await this.#change(trx, [id], 'updated');
      return true;
    });
  }

  /**
   * Ends every live session of a person (MFA reset): those recorded under the user name, and those of
   * the given provider subjects (sessions made before names were recorded); returns their ids.
   */
  async endByUser(
    userName: string,
    subjects: readonly { issuer: string; sub: string }[],
    reason: string,
  ): Promise<string[]> {
    const ids = new Set(await this.#endWhere(reason, { userName }));
    for (const s of subjects) for (const id of await this.endBySub(s.issuer, s.sub, reason)) ids.add(id);
    return [...ids];
  }

  /** Ends one session; false when it was already ended or is unknown. */
  async end(id: string, reason: string): Promise<boolean> {
    return (await this.#endWhere(reason, { id })).length === 1;
  }

  /** Ends the live sessions of a provider session id (back-channel logout); returns their ids. */
  async endByProviderSid(issuer: string, sid: string, reason: string): Promise<string[]> {
    return this.#endWhere(reason, { issuer, sid });
  }

  /** Ends every live session of a subject (back-channel logout without `sid`); returns their ids. */
  async endBySub(issuer: string, sub: string, reason: string): Promise<string[]> {
    return this.#endWhere(reason, { issuer, sub });
  }

  async #endWhere(
    reason: string,
    by: { id: string } | { issuer: string; sid: string } | { issuer: string; sub: string } | { userName: string },
  ): Promise<string[]> {
    const now = Date.now();
    return this.db.transaction().execute(async (trx) => {
      let q = trx
        .updateTable('access_sessions')
        .set({ ended_at: now, end_reason: reason })
        .where('ended_at', 'is', null);
      if ('id' in by) q = q.where('id', '=', by.id);
      else if ('userName' in by) q = q.where('user_name', '=', by.userName);
      else if ('sid' in by) q = q.where('issuer', '=', by.issuer).where('provider_sid', '=', by.sid);
      else q = q.where('issuer', '=', by.issuer).where('sub', '=', by.sub);
      const ids = (await q.returning('id').execute()).map((r) => r.id);
      await this.#change(trx, ids, 'ended');
      return ids;
    });
  }

  async #change(trx: Transaction<Database>, ids: string[], kind: AccessSessionChange['kind']): Promise<void> {
    if (ids.length === 0) return;
    const time = Date.now();
    await trx
      .insertInto('access_session_changes')
      .values(ids.map((session_id) => ({ session_id, kind, time })))
      .execute();
  }

  /** The newest change's seq (0 when none): where a new follower starts. */
  async maxChangeSeq(): Promise<number> {
    const r = await this.db
      .selectFrom('access_session_changes')
      .select((eb) => eb.fn.max('seq').as('m'))
      .executeTakeFirst();
    return Number(r?.m ?? 0);
  }

  async changesSince(seq: number, limit = 1000): Promise<AccessSessionChange[]> {
    const rows = await this.db
      .selectFrom('access_session_changes')
      .select(['seq', 'session_id', 'kind'])
      .where('seq', '>', seq)
      .orderBy('seq')
      .limit(limit)
      .execute();
    return rows.map((r) => ({
      seq: Number(r.seq),
      sessionId: r.session_id,
      kind: r.kind as AccessSessionChange['kind'],
    }));
  }

  async putLoginState(state: string, host: string, sealed: string, expiresAt: number): Promise<void> {
    await this.db
      .insertInto('access_login_states')
      .values({ state_hash: sha256Hex(state), host, sealed, expires_at: expiresAt })
      .execute();
  }

  /**
   * Takes a login state exactly once: one DELETE … RETURNING, so of two proxies racing on one
   * callback only one gets it. Undefined when unknown, already used, for another host, or expired.
   */
  async takeLoginState(state: string, host: string): Promise<string | undefined> {
    const r = await this.db
      .deleteFrom('access_login_states')
      .where('state_hash', '=', sha256Hex(state))
      .where('host', '=', host)
      .returning(['sealed', 'expires_at'])
      .executeTakeFirst();
    if (!r || Number(r.expires_at) <= Date.now()) return undefined;
    return r.sealed;
  }

  /** Remembers a back-channel logout token id; false when it was seen before (a replay). */
  async rememberLogoutToken(jti: string, expiresAt: number): Promise<boolean> {
    const res = await this.db
      .insertInto('access_logout_tokens')
      .values({ jti_hash: sha256Hex(jti), expires_at: expiresAt })
      .onConflict((oc) => oc.column('jti_hash').doNothing())
      .executeTakeFirst();
    return Number(res.numInsertedOrUpdatedRows ?? 0) === 1;
  }

  /** Deletes expired login states, logout token ids, and sessions ended or expired before `before`. */
  async purge(before: number): Promise<void> {
    const now = Date.now();
    await this.db.deleteFrom('access_login_states').where('expires_at', '<', now).execute();
    await this.db.deleteFrom('access_logout_tokens').where('expires_at', '<', now).execute();
    await this.db.deleteFrom('access_sessions').where('expires_at', '<', before).execute();
  }
}
