import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database } from './schema.js';

const hash = (token: string) => createHash('sha256').update(token).digest('hex');

export type TokenRedemption = { ok: true } | { ok: false; reason: 'unknown' | 'used' | 'expired' };

/** One-time join tokens. Only hashes are stored; redemption is a single conditional UPDATE, so a token works once even across servers. */
export class JoinTokenRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async create(token: string, ttlSeconds: number): Promise<{ expiresAt: number }> {
    const now = Date.now();
    const expiresAt = now + ttlSeconds * 1000;
    await this.db
      .insertInto('join_tokens')
      .values({ token_hash: hash(token), created_at: now, expires_at: expiresAt, used_at: null, agent_id: null })
      .execute();
    return { expiresAt };
  }

  async redeem(token: string, agentId: string): Promise<TokenRedemption> {
    const now = Date.now();
    const h = hash(token);
    const res = await this.db
      .updateTable('join_tokens')
      .set({ used_at: now, agent_id: agentId })
      .where('token_hash', '=', h)
      .where('used_at', 'is', null)
      .where('expires_at', '>', now)
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) === 1) return { ok: true };
    const row = await this.db
      .selectFrom('join_tokens')
      .select(['used_at', 'expires_at'])
      .where('token_hash', '=', h)
      .executeTakeFirst();
    if (!row) return { ok: false, reason: 'unknown' };
    if (row.used_at !== null) return { ok: false, reason: 'used' };
    return { ok: false, reason: 'expired' };
  }
}
