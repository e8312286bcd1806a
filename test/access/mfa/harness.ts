/** A real SQLite store, a real KEK and an audit sink for the MFA service tests. */
import { randomBytes } from 'node:crypto';
import { onTestFinished } from 'vitest';
import { type AuditEventInput, auditEventInputSchema } from '../../../src/audit/event.js';
import { Kek } from '../../../src/ca/kek.js';
import { createMfaService, type MfaService, type MfaServiceDeps } from '../../../src/access/mfa/index.js';
import { openStore, type Store } from '../../../src/store/index.js';
import { tempDir } from '../../support/tmp.js';

export const alice = { issuer: 'https://idp.example', sub: 'sub-alice', user: 'alice' };
export const bob = { issuer: 'https://idp.example', sub: 'sub-bob', user: 'bob' };

export interface Harness {
  store: Store;
  kek: Kek;
  events: AuditEventInput[];
  /** The audit sink the services use (checks every event against the audit schema). */
  record: (e: AuditEventInput) => void;
  clock: { now: number };
  service(over?: Partial<MfaServiceDeps>): MfaService;
}

/** One store on a temp SQLite file; `service()` makes another service (another proxy) on it. */
export async function harness(url?: string): Promise<Harness> {
  const store = await openStore({ dataDir: tempDir(), ...(url ? { url } : {}) });
  const kek = Kek.fromBytes(randomBytes(32));
  const events: AuditEventInput[] = [];
  const clock = { now: 1_700_000_000_000 };
  // Every event the service records must be one the audit log accepts (the service swallows errors).
  const invalid: unknown[] = [];
  const record = (e: AuditEventInput) => {
    const r = auditEventInputSchema.safeParse(e);
    if (!r.success) invalid.push({ kind: e.kind, issues: r.error.issues });
    events.push(e);
  };
  onTestFinished(() => store.close());
  onTestFinished(() => {
    if (invalid.length > 0) throw new Error(`invalid audit events: ${JSON.stringify(invalid)}`);
  });
  return {
    store,
    kek,
    events,
    record,
    clock,
    service: (over = {}) => createMfaService({ store, kek, record, now: () => clock.now, ...over }),
  };
}
