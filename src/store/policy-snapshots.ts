import type { Kysely } from 'kysely';
import type { Database } from './schema.js';

export interface PolicySnapshotRecord {
  version: string;
  createdAt: number;
  source: string;
  /** The accepted documents, as loaded (JSON). */
  documents: string;
  ruleCount: number;
}

/** Every accepted policy snapshot, by content hash; the newest is the one in force. */
export class PolicySnapshotRepository {
  constructor(private readonly db: Kysely<Database>) {}

  /** Stores a snapshot; storing the same version again is a no-op. Returns true when it was new. */
  async put(s: PolicySnapshotRecord): Promise<boolean> {
    const res = await this.db
      .insertInto('policy_snapshots')
      .values({
        version: s.version,
        created_at: s.createdAt,
        source: s.source,
        documents: s.documents,
        rule_count: s.ruleCount,
      })
      .onConflict((oc) => oc.column('version').doNothing())
      .executeTakeFirst();
    return Number(res.numInsertedOrUpdatedRows ?? 0) === 1;
  }

  async latest(): Promise<PolicySnapshotRecord | undefined> {
    const r = await this.db
      .selectFrom('policy_snapshots')
      .selectAll()
      .orderBy('created_at', 'desc')
      .limit(1)
      .executeTakeFirst();
    return r
      ? {
          version: r.version,
          createdAt: Number(r.created_at),
          source: r.source,
          documents: r.documents,
          ruleCount: Number(r.rule_count),
        }
      : undefined;
  }

  async list(limit = 50): Promise<Omit<PolicySnapshotRecord, 'documents'>[]> {
    const rows = await this.db
      .selectFrom('policy_snapshots')
      .select(['version', 'created_at', 'source', 'rule_count'])
      .orderBy('created_at', 'desc')
      .limit(limit)
      .execute();
    return rows.map((r) => ({
      version: r.version,
      createdAt: Number(r.created_at),
      source: r.source,
      ruleCount: Number(r.rule_count),
    }));
  }
}
