/** A real SQLite store, a real KEK and an audit sink for the MFA service tests. */
import { randomBytes } from 'node:crypto';
import type { AuditEventInput } from '../../../src/audit/event.js';
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
  clock: { now: number };
  service(over?: Partial<MfaServiceDeps>): MfaService;
}

/** One store on a temp SQLite file; `service()` makes another service (another proxy) on it. */
export async function harness(url?: string): Promise<Harness> {
  const store = await openStore({ dataDir: tempDir(), ...(url ? { url } : {}) });
  const kek = Kek.fromBytes(randomBytes(32));
  const events: AuditEventInput[] = [];
  const clock = { now: 1_700_000_000_000 };
  return {
    store,
    kek,
    events,
    clock,
    service: (over = {}) =>
      createMfaService({ store, kek, record: (e) => events.push(e), now: () => clock.now, ...over }),
  };
}
