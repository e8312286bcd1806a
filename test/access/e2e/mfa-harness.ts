/**
 * The people's-access stack with the proxy's own MFA on (see harness.ts for the parts): back-office
 * policies with STEP_UP rules, an MFA service on the same store sealing under the
 * authenticator's key, and the proxy serving a certificate whose PEM the browser tests trust by SPKI.
 * Also TOTP codes from the tests' own RFC 6238 implementation (../mfa/rfc6238.ts), apart from the product's.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { OidcAuthenticator } from '../../../src/access/auth/index.js';
import type { RunningIdentityProvider } from '../../../src/access/idp/index.js';
import { type AttemptLimits, createMfaService, type MfaService } from '../../../src/access/mfa/index.js';
import { parseAccessProxyConfig, type RunningAccessProxy, startAccessProxy } from '../../../src/access/proxy/index.js';
import type { AuditEventInput } from '../../../src/audit/event.js';
import type { AccessDecisionEvent } from '../../../src/pep/decision.js';
import { openStore, type Store } from '../../../src/store/index.js';
import { freePort } from '../../support/cli.js';
import { tempDir } from '../../support/tmp.js';
import {
  type App,
  addPeople,
  HOST,
  makeAuthenticator,
  startApp,
  startBuiltinIdp,
  startTrust,
  type Trust,
} from './harness.js';
import { hotp } from '../mfa/rfc6238.js';

export { base32Decode, hotp } from '../mfa/rfc6238.js';

/** The RFC 6238 time step (30 s) now. */
export const totpStepNow = (): number => Math.floor(Date.now() / 1000 / 30);

/** TOTP codes for one secret, each for a step not used before (now, or the next: the window is ±1). */
export class TotpDevice {
  private last = 0;
  constructor(readonly secret: Buffer) {}
  code(): string {
    const s = Math.max(totpStepNow(), this.last + 1);
    if (s > totpStepNow() + 1) throw new Error('no unused TOTP step within the window');
    this.last = s;
    return hotp(this.secret, s);
  }
}

/**
 * The tests' own policies (not the examples', which change with the demo): staff read, admins use
 * /admin; STEP_UP for /admin, for /admin/fresh within 2 s, and a security key for /reports/secret.
 */
export const MFA_POLICY = `apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: backoffice-read }
spec:
  action: ALLOW
  target: { services: [backoffice] }
  rules:
    - to: [{ methods: [GET, HEAD], paths: [/, /reports, /reports/*, /favicon.ico] }]
      when:
        - key: request.auth.claims[groups]
          values: [staff, admins]
---
apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: backoffice-admin }
spec:
  action: ALLOW
  target: { services: [backoffice] }
  rules:
    - to: [{ paths: [/admin, /admin/*] }]
      when:
        - key: request.auth.claims[groups]
          values: [admins]
---
apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: backoffice-mfa }
spec:
  action: STEP_UP
  target: { services: [backoffice] }
  rules:
    - name: admin-needs-mfa
      to: [{ paths: [/admin, /admin/*] }]
      when: [{ key: auth.mfa, equals: false }]
    - name: fresh-within-2s
      to: [{ paths: [/admin/fresh, /admin/fresh/*] }]
      when: [{ key: auth.mfa_age, gt: 2 }]
    - name: keys-for-secrets
      to: [{ paths: [/reports/secret, /reports/secret/*] }]
      when: [{ key: auth.methods, notValues: [hwk, swk] }]
`;

export interface MfaStack {
  trust: Trust;
  store: Store;
  app: App;
  idp: RunningIdentityProvider;
  auth: OidcAuthenticator;
  proxy: RunningAccessProxy;
  mfa: MfaService;
  origin: string;
  /** The proxy's serving certificate (PEM). */
  proxyCert: string;
  decisions: AccessDecisionEvent[];
  authEvents: AuditEventInput[];
  mfaEvents: AuditEventInput[];
  close(): Promise<void>;
}

export async function startMfaStack(
  opts: { firstLoginEnrollment?: boolean; attempts?: { user?: { max: number } } } = {},
): Promise<MfaStack> {
  const dir = tempDir();
  const trust = await startTrust(dir);
  const store = await openStore({ dataDir: join(dir, 'store') });
  await addPeople(store);
  const app = await startApp(trust);
  const port = await freePort();
  const origin = `https://${HOST}:${port}`;
  const idp = await startBuiltinIdp(trust, store, [origin]);
  const decisions: AccessDecisionEvent[] = [];
  const authEvents: AuditEventInput[] = [];
  const mfaEvents: AuditEventInput[] = [];
  // `sub` is the user name at the built-in provider: the name enrollment links are made for.
  const auth = await makeAuthenticator(trust, idp.issuer, store, join(dir, 'auth'), authEvents, { user_claim: 'sub' });
  const policies = join(dir, 'policies');
  mkdirSync(policies);
  writeFileSync(join(policies, 'mfa.yaml'), MFA_POLICY);
  const tls = trust.tlsFor([HOST]);
  writeFileSync(join(dir, 'proxy.crt'), tls.cert);
  writeFileSync(join(dir, 'proxy.key'), tls.key);
  const config = parseAccessProxyConfig({
    listen: `127.0.0.1:${port}`,
    svid: { workload_api: 'unused' },
    tls: { cert_file: join(dir, 'proxy.crt'), key_file: join(dir, 'proxy.key') },
    policies,
    assertion: { server: trust.agentUrl, ttl_seconds: 60 },
    mfa: {
      first_login_enrollment: opts.firstLoginEnrollment ?? false,
      webauthn: { rp_name: 'Back-office' },
      ...(opts.attempts ? { attempts: opts.attempts } : {}),
    },
    routes: [{ name: 'backoffice', from: { host: HOST }, to: `http://127.0.0.1:${app.port}` }],
  });
  const mfa = createMfaService({
    store,
    kek: auth.kek,
    record: (e) => mfaEvents.push(e),
    ...(config.mfa?.attempts ? { attempts: config.mfa.attempts as AttemptLimits } : {}),
  });
  const proxy = await startAccessProxy(config, {
    authenticator: auth,
    source: trust.proxySource([HOST]),
    recorder: { record: (e) => decisions.push(e) },
    mfa: { service: mfa, record: (e) => mfaEvents.push(e) },
  });
  return {
    trust,
    store,
    app,
    idp,
    auth,
    proxy,
    mfa,
    origin,
    proxyCert: tls.cert,
    decisions,
    authEvents,
    mfaEvents,
    async close() {
      await proxy.close();
      await idp.close();
      app.close();
      await store.close();
      await trust.close();
    },
  };
}
