import { type Kysely, PostgresAdapter, sql } from 'kysely';

/**
 * Narrower audit rows and indexes: the repeated strings an event is filtered by (kind, outcome,
 * source, target) move into a dictionary, `audit_term`, and the event row keeps small integer term
 * ids, so the four indexes on them hold integers instead of long text (a SPIFFE ID is ~50 bytes);
 * the leaf hash is stored as its 32 bytes instead of 64 hex digits. Same indexes otherwise, and the
 * same log order within each (on SQLite `seq` is the rowid, which every index already ends in).
 * Existing rows are converted in place; nothing about an event's hashed bytes changes.
 */
const FIELDS = ['kind', 'outcome', 'source', 'target'] as const;

export async function up(db: Kysely<unknown>): Promise<void> {
  const pg = db.getExecutor().adapter instanceof PostgresAdapter;
  const tail = pg ? ', seq' : '';
  await sql`create table audit_term (
    id integer primary key not null,
    field text not null,
    value text not null,
    unique (field, value)
  )`.execute(db);
  // Ids are assigned by the appending log (under the head-row lock), so they are given explicitly.
  await sql`insert into audit_term (id, field, value)
    select row_number() over (order by field, value), field, value from (
      select distinct 'kind' as field, kind as value from audit_event
      union select distinct 'outcome', outcome from audit_event
      union select distinct 'source', source from audit_event
      union select distinct 'target', target from audit_event
    ) as t`.execute(db);

  await sql
    .raw(`create table audit_event_v2 (
    seq ${pg ? 'bigint' : 'integer'} primary key not null,
    id text not null,
    time bigint not null,
    kind_term integer not null,
    outcome_term integer not null,
    source_term integer not null,
    target_term integer not null,
    decision_id text,
    body text not null,
    leaf_hash ${pg ? 'bytea' : 'blob'} not null
  )`)
    .execute(db);
  const joins = FIELDS.map((f) => `join audit_term ${f}_t on ${f}_t.field = '${f}' and ${f}_t.value = e.${f}`).join(
    ' ',
  );
  await sql
    .raw(
      `insert into audit_event_v2 (seq, id, time, kind_term, outcome_term, source_term, target_term, decision_id, body, leaf_hash)
      select e.seq, e.id, e.time, kind_t.id, outcome_t.id, source_t.id, target_t.id, e.decision_id, e.body,
        ${pg ? "decode(e.leaf_hash, 'hex')" : 'unhex(e.leaf_hash)'}
      from audit_event e ${joins}`,
    )
    .execute(db);
  await sql`drop table audit_event`.execute(db);
  await sql`alter table audit_event_v2 rename to audit_event`.execute(db);

  // Every filter the query API offers still has an index whose order is the log order within it.
  await sql`create unique index audit_event_id on audit_event (id)`.execute(db);
  for (const f of FIELDS) {
    await sql.raw(`create index audit_event_${f} on audit_event (${f}_term${tail})`).execute(db);
  }
  await sql.raw(`create index audit_event_time on audit_event (time${tail})`).execute(db);
  await sql`create index audit_event_decision on audit_event (decision_id) where decision_id is not null`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  const pg = db.getExecutor().adapter instanceof PostgresAdapter;
  const tail = pg ? ', seq' : '';
  await sql
    .raw(`create table audit_event_v1 (
    seq ${pg ? 'bigint' : 'integer'} primary key not null,
    id text not null,
    time bigint not null,
    kind text not null,
    source text not null,
    target text not null,
    outcome text not null,
    decision_id text,
    body text not null,
    leaf_hash text not null
  )`)
    .execute(db);
  const joins = FIELDS.map((f) => `join audit_term ${f}_t on ${f}_t.id = e.${f}_term`).join(' ');
  await sql
    .raw(
      `insert into audit_event_v1 (seq, id, time, kind, source, target, outcome, decision_id, body, leaf_hash)
      select e.seq, e.id, e.time, kind_t.value, source_t.value, target_t.value, outcome_t.value, e.decision_id, e.body,
        ${pg ? "encode(e.leaf_hash, 'hex')" : 'lower(hex(e.leaf_hash))'}
      from audit_event e ${joins}`,
    )
    .execute(db);
  await sql`drop table audit_event`.execute(db);
  await sql`drop table audit_term`.execute(db);
  await sql`alter table audit_event_v1 rename to audit_event`.execute(db);
  await sql`create unique index audit_event_id on audit_event (id)`.execute(db);
  for (const c of ['source', 'target', 'outcome', 'kind', 'time']) {
    await sql.raw(`create index audit_event_${c} on audit_event (${c}${tail})`).execute(db);
  }
  await sql`create index audit_event_decision on audit_event (decision_id) where decision_id is not null`.execute(db);
}
