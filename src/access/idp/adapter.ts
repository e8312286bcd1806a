/**
 * oidc-provider's storage adapter over the store (kysely; SQLite and PostgreSQL): sessions, grants,
 * interactions, authorization codes, refresh tokens… live in `idp_model`, so a restart (or another
 * provider on the same PostgreSQL) keeps people's sessions and relying parties' refresh tokens.
 */
import type { Adapter, AdapterPayload } from 'oidc-provider';
import type { Store } from '../../store/index.js';

/** The adapter class oidc-provider instantiates once per model name, bound to `store`. */
export function storeAdapter(store: Store): new (name: string) => Adapter {
  const db = store.db;
  let writes = 0;
  return class StoreAdapter implements Adapter {
    constructor(private readonly kind: string) {}

    async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      const now = Date.now();
      const row = {
        payload: JSON.stringify(payload),
        grant_id: payload.grantId ?? null,
        uid: payload.uid ?? null,
        user_code: payload.userCode ?? null,
        expires_at: expiresIn ? now + Math.ceil(expiresIn * 1000) : null,
        consumed_at: null,
      };
      await db
        .insertInto('idp_model')
        .values({ kind: this.kind, id, ...row })
        .onConflict((oc) => oc.columns(['kind', 'id']).doUpdateSet(row))
        .execute();
      // Expired models are dead weight; sweep them now and then rather than on a timer.
      if (++writes % 200 === 0) await db.deleteFrom('idp_model').where('expires_at', '<', now).execute();
    }

    private async findBy(column: 'id' | 'uid' | 'user_code', value: string): Promise<AdapterPayload | undefined> {
      const row = await db
        .selectFrom('idp_model')
        .select(['payload', 'expires_at', 'consumed_at'])
        .where('kind', '=', this.kind)
        .where(column, '=', value)
        .executeTakeFirst();
      if (!row) return undefined;
      if (row.expires_at !== null && Number(row.expires_at) <= Date.now()) return undefined;
      const payload = JSON.parse(row.payload) as AdapterPayload;
      // oidc-provider detects code and refresh token reuse by `consumed`.
      return row.consumed_at === null ? payload : { ...payload, consumed: Math.floor(Number(row.consumed_at) / 1000) };
    }

    find(id: string) {
      return this.findBy('id', id);
    }

    findByUid(uid: string) {
      return this.findBy('uid', uid);
    }

    findByUserCode(userCode: string) {
      return this.findBy('user_code', userCode);
    }

    async consume(id: string): Promise<void> {
      await db
        .updateTable('idp_model')
        .set({ consumed_at: Date.now() })
        .where('kind', '=', this.kind)
        .where('id', '=', id)
        .execute();
    }

    async destroy(id: string): Promise<void> {
      await db.deleteFrom('idp_model').where('kind', '=', this.kind).where('id', '=', id).execute();
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      await db.deleteFrom('idp_model').where('grant_id', '=', grantId).execute();
    }
  };
}
