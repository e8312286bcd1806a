import type { Kysely } from 'kysely';
import type { Database } from './schema.js';

/** A model row of the built-in OpenID provider, as the adapter reads it back. */
export interface OidcModelRow {
  /** The model's JSON payload. */
  payload: string;
  /** ms since the epoch when it was consumed (codes, refresh tokens), else null. */
  consumedAt: number | null;
}

/**
 * The built-in OpenID provider's models (sessions, grants, interactions, codes, refresh tokens…),
 * one row per kind and id, with the columns oidc-provider looks them up by; the only SQL on
 * `idp_model`. Expired rows are invisible to `find` and swept by `sweep`.
 */
export class OidcModelRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async upsert(
    kind: string,
    id: string,
    m: { payload: string; grantId?: string; uid?: string; userCode?: string; expiresAt: number | null },
  ): Promise<void> {
    const row = {
      payload: m.payload,
      grant_id: m.grantId ?? null,
      uid: m.uid ?? null,
      user_code: m.userCode ?? null,
      expires_at: m.expiresAt,
      consumed_at: null,
    };
    await this.db
      .insertInto('idp_model')
      .values({ kind, id, ...row })
      .onConflict((oc) => oc.columns(['kind', 'id']).doUpdateSet(row))
      .execute();
  }

  /** The live (unexpired) model of `kind` whose `by` column equals `value`. */
  async find(
    kind: string,
    by: 'id' | 'uid' | 'user_code',
    value: string,
    now = Date.now(),
  ): Promise<OidcModelRow | undefined> {
    const row = await this.db
      .selectFrom('idp_model')
      .select(['payload', 'expires_at', 'consumed_at'])
      .where('kind', '=', kind)
      .where(by, '=', value)
      .executeTakeFirst();
    if (!row || (row.expires_at !== null && Number(row.expires_at) <= now)) return undefined;
    return { payload: row.payload, consumedAt: row.consumed_at === null ? null : Number(row.consumed_at) };
  }

  async consume(kind: string, id: string): Promise<void> {
    await this.db
      .updateTable('idp_model')
      .set({ consumed_at: Date.now() })
      .where('kind', '=', kind)
      .where('id', '=', id)
      .execute();
  }

  async destroy(kind: string, id: string): Promise<void> {
    await this.db.deleteFrom('idp_model').where('kind', '=', kind).where('id', '=', id).execute();
  }

  /** Removes every model of a grant (its codes, tokens): a revoked grant leaves nothing usable. */
  async revokeByGrantId(grantId: string): Promise<void> {
    await this.db.deleteFrom('idp_model').where('grant_id', '=', grantId).execute();
  }

  /** Deletes expired rows. */
  async sweep(now = Date.now()): Promise<void> {
    await this.db.deleteFrom('idp_model').where('expires_at', '<', now).execute();
  }
}
