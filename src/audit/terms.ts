/**
 * The dictionary of repeated strings that events are filtered by (`audit_term`, migration 0004):
 * an event row keeps the small integer ids of its kind, outcome, source key and target key, so the
 * indexes on them hold integers. Terms are created inside the append transaction, under the head
 * row lock that serializes appenders, and kept in memory; a term created by a transaction that
 * rolled back is forgotten with it.
 */
import type BetterSqlite3 from 'better-sqlite3';
import { type Kysely, sql, type Transaction } from 'kysely';
import type { Database } from '../store/index.js';
import { type AuditEvent, sourceKey, targetKey } from './event.js';
import { TERM_FIELDS, type TermField } from '../store/audit-blocks.js';

export { TERM_FIELDS, type TermField } from '../store/audit-blocks.js';

/** The four terms of an event, in TERM_FIELDS order. */
export function eventTerms(e: AuditEvent): [string, string, string, string] {
  return [e.kind, e.outcome ?? '', sourceKey(e), targetKey(e)];
}

// Beyond this many cached terms (sources may be IP addresses) the cache starts over; misses are
// read back from the table.
const MAX_CACHED = 200_000;

const NEXT_ID = 'select coalesce(max(id), 0) + 1 from audit_term';

/** The statements the synchronous SQLite path needs, prepared once. */
export interface SqliteTermStatements {
  find: BetterSqlite3.Statement<[string, string], number>;
  insert: BetterSqlite3.Statement<[string, string], number>;
}

export function prepareTermStatements(db: BetterSqlite3.Database): SqliteTermStatements {
  return {
    find: db.prepare<[string, string], number>('select id from audit_term where field = ? and value = ?').pluck(),
    insert: db
      .prepare<[string, string], number>(
        `insert into audit_term (id, field, value) select (${NEXT_ID}), ?, ? returning id`,
      )
      .pluck(),
  };
}

/** The stored id of one term, if it is stored. */
export async function findTermId(
  db: Kysely<Database> | Transaction<Database>,
  field: TermField,
  value: string,
): Promise<number | undefined> {
  const row = await db
    .selectFrom('audit_term')
    .select('id')
    .where('field', '=', field)
    .where('value', '=', value)
    .executeTakeFirst();
  return row ? Number(row.id) : undefined;
}

export class TermDictionary {
  // One map per field: a lookup hashes only the value (this runs four times per appended event).
  private readonly ids: Record<TermField, Map<string, number>> = {
    kind: new Map(),
    outcome: new Map(),
    source: new Map(),
    target: new Map(),
  };
  private size = 0;
  private added: [TermField, string][] = [];

  /** The id of a term this process has seen committed or created in the open transaction. */
  get(field: TermField, value: string): number | undefined {
    return this.ids[field].get(value);
  }

  /** Starts a transaction's worth of new terms (see {@link rollback}). */
  begin(): void {
    if (this.size > MAX_CACHED) {
      for (const f of TERM_FIELDS) this.ids[f].clear();
      this.size = 0;
    }
    this.added = [];
  }

  /** Forgets the terms learned since {@link begin}: their transaction did not commit. */
  rollback(): void {
    for (const [field, value] of this.added) if (this.ids[field].delete(value)) this.size--;
    this.added = [];
  }

  private learn(field: TermField, value: string, id: number): number {
    const map = this.ids[field];
    if (!map.has(value)) this.size++;
    map.set(value, id);
    this.added.push([field, value]);
    return id;
  }

  /** The id of a term on the synchronous SQLite path, read or created in the open transaction. */
  resolveSync(st: SqliteTermStatements, field: TermField, value: string): number {
    const have = this.ids[field].get(value);
    if (have !== undefined) return have;
    const id = st.find.get(field, value) ?? st.insert.get(field, value);
    if (id === undefined) throw new Error(`audit term ${field}=${value} could not be stored`);
    return this.learn(field, value, id);
  }

  /** Makes sure every term of `events` is known, reading or creating the missing ones in `db`. */
  async resolveAll(db: Kysely<Database> | Transaction<Database>, events: readonly AuditEvent[]): Promise<void> {
    const missing = new Map<TermField, Set<string>>();
    for (const e of events) {
      const values = eventTerms(e);
      for (let f = 0; f < 4; f++) {
        const field = TERM_FIELDS[f] as TermField;
        const v = values[f] as string;
        if (this.get(field, v) === undefined) {
          const set = missing.get(field) ?? new Set<string>();
          missing.set(field, set);
          set.add(v);
        }
      }
    }
    for (const [field, set] of missing) {
      const values = [...set];
      for (let i = 0; i < values.length; i += 500) {
        const rows = await db
          .selectFrom('audit_term')
          .select(['id', 'value'])
          .where('field', '=', field)
          .where('value', 'in', values.slice(i, i + 500))
          .execute();
        for (const r of rows) this.learn(field, r.value, Number(r.id));
      }
    }
    // New terms get their ids in event order, field by field, as on the synchronous path, so both
    // paths store the same rows.
    for (const e of events) {
      const values = eventTerms(e);
      for (let f = 0; f < 4; f++) {
        const field = TERM_FIELDS[f] as TermField;
        const v = values[f] as string;
        if (this.get(field, v) !== undefined) continue;
        const inserted = await sql<{ id: number | string }>`insert into audit_term (id, field, value)
          select coalesce(max(id), 0) + 1, cast(${field} as text), cast(${v} as text) from audit_term
          returning id`.execute(db);
        const row = inserted.rows[0];
        if (!row) throw new Error(`audit term ${field}=${v} could not be stored`);
        this.learn(field, v, Number(row.id));
      }
    }
  }
}
