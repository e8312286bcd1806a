import type { Kysely } from 'kysely';
import { StoreConflictError } from './errors.js';
import type { Database } from './schema.js';

export interface KvEntry {
  value: string;
  version: number;
  updatedAt: number;
}

/**
 * Versioned documents. `put` with `expectedVersion` is a compare-and-set, so two servers on one
 * PostgreSQL cannot overwrite each other's CA rotation unknowingly.
 */
export class KvRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async get(namespace: string, key: string): Promise<KvEntry | undefined> {
    const row = await this.db
      .selectFrom('nevertrust_kv')
      .select(['value', 'version', 'updated_at'])
      .where('namespace', '=', namespace)
      .where('key', '=', key)
      .executeTakeFirst();
    return row ? { value: row.value, version: Number(row.version), updatedAt: Number(row.updated_at) } : undefined;
  }

  /**
   * Writes a value. `expectedVersion`: 0 means "must not exist yet", n means "must still be at n";
   * undefined writes unconditionally. Returns the new version.
   */
  async put(namespace: string, key: string, value: string, expectedVersion?: number): Promise<number> {
    const now = Date.now();
    if (expectedVersion === undefined) {
      const row = await this.db
        .insertInto('nevertrust_kv')
        .values({ namespace, key, value, version: 1, updated_at: now })
        .onConflict((oc) =>
          oc.columns(['namespace', 'key']).doUpdateSet((eb) => ({
            value,
            updated_at: now,
            version: eb(eb.ref('nevertrust_kv.version'), '+', 1),
          })),
        )
        .returning('version')
        .executeTakeFirstOrThrow();
      return Number(row.version);
    }
    if (expectedVersion === 0) {
      const res = await this.db
        .insertInto('nevertrust_kv')
        .values({ namespace, key, value, version: 1, updated_at: now })
        .onConflict((oc) => oc.columns(['namespace', 'key']).doNothing())
        .executeTakeFirst();
      if (Number(res.numInsertedOrUpdatedRows ?? 0) !== 1) throw new StoreConflictError(`${namespace}/${key}`);
      return 1;
    }
    const res = await this.db
      .updateTable('nevertrust_kv')
      .set({ value, updated_at: now, version: expectedVersion + 1 })
      .where('namespace', '=', namespace)
      .where('key', '=', key)
      .where('version', '=', expectedVersion)
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) throw new StoreConflictError(`${namespace}/${key}`);
    return expectedVersion + 1;
  }

  /** Every document of a namespace, ordered by key. For small namespaces (one row per workload, per CA). */
  async list(namespace: string): Promise<(KvEntry & { key: string })[]> {
    const rows = await this.db
      .selectFrom('nevertrust_kv')
      .select(['key', 'value', 'version', 'updated_at'])
      .where('namespace', '=', namespace)
      .orderBy('key')
      .execute();
    return rows.map((r) => ({
      key: r.key,
      value: r.value,
      version: Number(r.version),
      updatedAt: Number(r.updated_at),
    }));
  }

  /**
   * Deletes a document only if it is still at `expectedVersion` (compare-and-delete), so a cleanup
   * never removes what another server wrote after it read. Returns false when it changed or is gone.
   */
  async deleteIf(namespace: string, key: string, expectedVersion: number): Promise<boolean> {
    const res = await this.db
      .deleteFrom('nevertrust_kv')
      .where('namespace', '=', namespace)
      .where('key', '=', key)
      .where('version', '=', expectedVersion)
      .executeTakeFirst();
    return Number(res.numDeletedRows) > 0;
  }

  async delete(namespace: string, key: string): Promise<boolean> {
    const res = await this.db
      .deleteFrom('nevertrust_kv')
      .where('namespace', '=', namespace)
      .where('key', '=', key)
      .executeTakeFirst();
    return Number(res.numDeletedRows) > 0;
  }
}
