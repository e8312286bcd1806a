/**
 * Table types for kysely. One interface per table; times are integer milliseconds since the epoch
 * (the same on SQLite and PostgreSQL, where int8 is parsed back to a number).
 */

export interface KvTable {
  namespace: string;
  key: string;
  value: string;
  version: number;
  updated_at: number;
}

export interface Database {
  nevertrust_kv: KvTable;
}
