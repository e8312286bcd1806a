/**
 * Every migration, in order. Names sort lexically; a migration, once released, never changes:
 * add a new one instead. Each must work on SQLite and PostgreSQL.
 */
import type { Migration } from 'kysely';
import * as m0001 from './0001_kv.js';
import * as m0002 from './0002_registration.js';
import * as m0003 from './0003_audit.js';
import * as m0004 from './0004_audit_terms.js';
import * as m0005 from './0005_audit_blocks.js';
import * as m0006 from './0006_users.js';
import * as m0007 from './0007_access_sessions.js';
import * as m0008 from './0008_mfa.js';
import * as m0009 from './0009_devices.js';
import * as m0010 from './0010_signals.js';
import * as m0011 from './0011_audit_block_edges.js';

export const migrations: Record<string, Migration> = {
  '0001_kv': m0001,
  '0002_registration': m0002,
  '0003_audit': m0003,
  '0004_audit_terms': m0004,
  '0005_audit_blocks': m0005,
  '0006_users': m0006,
  '0007_access_sessions': m0007,
  '0008_mfa': m0008,
  '0009_devices': m0009,
  '0010_signals': m0010,
  '0011_audit_block_edges': m0011,
};
