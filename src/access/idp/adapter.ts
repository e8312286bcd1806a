/**
 * oidc-provider's storage adapter over the store (`store.oidcModels`; SQLite and PostgreSQL):
 * sessions, grants, interactions, authorization codes, refresh tokens… so a restart (or another
 * provider on the same PostgreSQL) keeps people's sessions and relying parties' refresh tokens.
 */
import type { Adapter, AdapterPayload } from 'oidc-provider';
import type { Store } from '../../store/index.js';

/** The adapter class oidc-provider instantiates once per model name, bound to `store`. */
export function storeAdapter(store: Store): new (name: string) => Adapter {
  const models = store.oidcModels;
  let writes = 0;
  return class StoreAdapter implements Adapter {
    constructor(private readonly kind: string) {}

    async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      const now = Date.now();
      await models.upsert(this.kind, id, {
        payload: JSON.stringify(payload),
        ...(payload.grantId !== undefined && { grantId: payload.grantId }),
        ...(payload.uid !== undefined && { uid: payload.uid }),
        ...(payload.userCode !== undefined && { userCode: payload.userCode }),
        expiresAt: expiresIn ? now + Math.ceil(expiresIn * 1000) : null,
      });
      // Expired models are dead weight; sweep them now and then rather than on a timer.
      if (++writes % 200 === 0) await models.sweep(now);
    }

    private async findBy(by: 'id' | 'uid' | 'user_code', value: string): Promise<AdapterPayload | undefined> {
      const row = await models.find(this.kind, by, value);
      if (!row) return undefined;
      const payload = JSON.parse(row.payload) as AdapterPayload;
      // oidc-provider detects code and refresh token reuse by `consumed`.
      return row.consumedAt === null ? payload : { ...payload, consumed: Math.floor(row.consumedAt / 1000) };
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

    consume(id: string) {
      return models.consume(this.kind, id);
    }

    destroy(id: string) {
      return models.destroy(this.kind, id);
    }

    revokeByGrantId(grantId: string) {
      return models.revokeByGrantId(grantId);
    }
  };
}
