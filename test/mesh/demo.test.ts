/**
 * The main job, end to end: `nevertrust demo` runs the server, an agent, the three example services,
 * people's access (the built-in OpenID provider, the back-office app, the access proxy as a workload)
 * and the traffic generator, and exits 0 only if every expected call was allowed, every attack
 * denied, and the audit log verifies. `nevertrust up` shows allowed and denied traffic and stops cleanly.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createMfaService } from '../../src/access/mfa/index.js';
import { queryAuditLog } from '../../src/audit/index.js';
import { PersonClient, type PersonResponse, parseForms } from '../../src/mesh/people-client.js';
import { openStore } from '../../src/store/index.js';
import { runCli, startCli } from '../support/cli.js';
import { code as totpCode } from '../access/mfa/rfc6238.js';
import { tempDir } from '../support/tmp.js';

/**
 * Answers the MFA challenge page with TOTP codes; the demo's traffic uses alice's factor too, so a
 * code whose step it used already is refused: then the next step's (the proxy accepts ±1 step).
 */
async function answerTotp(client: PersonClient, challenge: PersonResponse, secret: string): Promise<PersonResponse> {
  let page = challenge;
  const now = Date.now();
  for (const offset of [0, 1]) {
    const form = parseForms(page.body).find((f) => f.fields.kind === 'totp');
    if (!form) throw new Error(`no TOTP form at ${page.url} (${page.status})`);
    page = await client.navigate('POST', new URL(form.action, page.url).toString(), {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ ...form.fields, code: totpCode(secret, now, offset) }).toString(),
    });
    if (new URL(page.url).pathname !== '/.nevertrust/mfa/challenge') return page;
  }
  return page;
}

// One data dir for both: `up` starts again where `demo` left off (people's credentials are kept).
const dataDir = tempDir();

describe('the local mesh', () => {
  it('nevertrust demo passes: allows what the policy allows, denies every attack, audit verifies', async () => {
    const r = await runCli(['demo', '--duration', '4s', '--data-dir', dataDir, '--port', '0', '--agent-port', '0'], {
      // The device's first posture report comes from a real collection (apt included): seconds.
      timeoutMs: 120_000,
    });
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/✓ attack lateral movement: audit-service → payment-service\s+\d+\/\d+/);
    expect(r.stdout).toMatch(/✓ attack path trick: \/v1\/charges\/\.\.\/admin/);
    expect(r.stdout).toMatch(/✓ attack no client certificate/);
    expect(r.stdout).toMatch(/✓ allow {2}gateway creates a charge/);
    expect(r.stdout).toMatch(/audit log: verifies \((\d+) events/);
    expect(r.stdout).toMatch(/demo passed/);
    // Every attack is a recorded denial, the TLS-level refusal of a client without a certificate included.
    const attacks = [...r.stdout.matchAll(/✓ attack .*? (\d+)\/(\d+)/g)].reduce((n, m) => n + Number(m[2]), 0);
    const denied = Number(/decisions: \d+ allowed, (\d+) denied/.exec(r.stdout)?.[1]);
    expect(attacks).toBeGreaterThan(0);
    expect(denied).toBeGreaterThanOrEqual(attacks);

    // People's access: every step ran as it must, and the summary says so.
    expect(r.stdout).toMatch(/access-proxy\s+spiffe:\/\/example\.org\/ns\/people\/sa\/access-proxy/);
    expect(r.stdout).toMatch(/✓ allow {2}alice signs in \(OIDC code flow, PKCE\) → 200\s+\d+\/\d+/);
    // /admin needs MFA: another browser of alice's is sent to the challenge; she enrolls TOTP with
    // her one-time link, answers with a code, and uses /admin.
    expect(r.stdout).toMatch(/✓ mfa {4}alice GET \/admin without MFA \(2nd browser\) → 303/);
    expect(r.stdout).toMatch(/✓ allow {2}alice passes MFA \(TOTP code\) and opens \/admin → 200/);
    expect(r.stdout).toMatch(/✓ allow {2}alice GET \/admin \(admins\) → 200/);
    expect(r.stdout).toMatch(/✓ deny {3}bob GET \/admin \(staff only\) → 403/);
    expect(r.stdout).toMatch(/✓ deny {3}API client without a session → 401/);
    expect(r.stdout).toMatch(/✓ deny {3}bob forges an admin assertion for \/admin → 403/);
    expect(r.stdout).toMatch(/✓ allow {2}bob forges an assertion: the app still sees bob → 200/);
    expect(r.stdout).toMatch(/✓ allow {2}bob signs out, is refused, signs in again → 200/);
    // This machine is alice's managed device: the same request is allowed from it and fails closed
    // from her other browser, which presents no device certificate.
    expect(r.stdout).toMatch(/✓ allow {2}alice GET \/reports\/export from her managed device → 200/);
    expect(r.stdout).toMatch(/✓ deny {3}alice GET \/reports\/export, 2nd browser, no device → 403/);
    const device =
      /\n {2}● (\S+) {2}owner alice {2}certificate until \S+\n {4}posture \(collector, \d+ s old\): managed yes · /.exec(
        r.stdout,
      )?.[1];
    expect(device, r.stdout).toBeDefined();
    expect(r.stdout).toContain(
      `✓ from her managed device ${device}: allow — ALLOW policy "backoffice-staff" rule "staff-read" matched: allow`,
    );
    expect(r.stdout).toContain(
      '✓ from her 2nd browser, no device certificate: deny — DENY policy "backoffice-export-managed-device" rule "export-from-unmanaged-device" could not be evaluated (request lacks device.managed: no device certificate presented); failing closed: deny',
    );
    expect(r.stdout).toContain(`npx nevertrust device show ${device} --data-dir ${dataDir}`);
    expect(r.stdout).not.toMatch(/✗/);
    expect(r.stdout).toMatch(/people's sessions: [1-9]\d* active \(in the store\)/);
    const people =
      /people's decisions: (\d+) allowed, (\d+) sent to MFA, (\d+) denied \(the access proxy's audit events\)/.exec(
        r.stdout,
      );
    expect(Number(people?.[1])).toBeGreaterThan(0);
    expect(Number(people?.[2])).toBeGreaterThan(0);
    expect(Number(people?.[3])).toBeGreaterThan(0);
    // How to get past the step-up and how to enroll.
    expect(r.stdout).toMatch(/alice's authenticator app \(TOTP\) secret is [A-Z2-7]{32}\b/);
    expect(r.stdout).toMatch(
      /bob's one-time link https:\/\/backoffice\.localhost:\d+\/\.nevertrust\/mfa\/enroll\?token=\S+/,
    );
    expect(r.stdout).toMatch(
      /https:\/\/backoffice\.localhost:\d+\/ {2}alice \/ \S+ \(admin\) · bob \/ \S+ \(staff\) — the CA is .*people\/ca\.pem/,
    );

    // The secrets are the owner's only.
    for (const f of ['credentials.json', 'client.secret', 'session.key'])
      expect(statSync(join(dataDir, 'people', f)).mode & 0o077, f).toBe(0);

    // The audit log holds the logins (relying party and provider) and the access proxy's decisions.
    const store = await openStore({ dataDir });
    try {
      const logins = await queryAuditLog(store, { kind: 'access.login', limit: 1000 });
      expect(logins.events.filter((e) => e.outcome === 'allow').length).toBeGreaterThanOrEqual(4);
      const idpLogins = await queryAuditLog(store, { kind: 'idp.login', limit: 1000 });
      expect(idpLogins.events.some((e) => e.outcome === 'allow')).toBe(true);
      const decisions = await queryAuditLog(store, { kind: 'access.decision', limit: 1000 });
      const proxy = decisions.events.filter((e) => e.enforcer === 'access-proxy');
      expect(proxy.some((e) => e.outcome === 'allow' && e.target?.path === '/admin')).toBe(true);
      expect(proxy.some((e) => e.outcome === 'deny' && e.target?.path === '/admin')).toBe(true);
      expect(proxy.some((e) => e.outcome === 'step_up' && e.target?.path === '/admin')).toBe(true);
      // The enrollment links made at start, and alice's enrollment through the proxy's pages.
      for (const kind of ['mfa.enroll_link', 'mfa.enroll']) {
        const mfa = await queryAuditLog(store, { kind, limit: 1000 });
        expect(
          mfa.events.some((e) => e.outcome === 'allow'),
          kind,
        ).toBe(true);
      }
      expect(await queryAuditLog(store, { kind: 'access.logout', limit: 1 })).toMatchObject({
        events: [expect.objectContaining({ outcome: 'allow' })],
      });
      // No password, cookie or token value in any event.
      const creds = JSON.parse(readFileSync(join(dataDir, 'people', 'credentials.json'), 'utf8')) as Record<
        string,
        string
      >;
      const all = JSON.stringify((await queryAuditLog(store, { limit: 1000 })).events);
      for (const pw of Object.values(creds)) expect(all).not.toContain(pw);
      expect(all).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./);
    } finally {
      await store.close();
    }
  }, 150_000);

  it('nevertrust up shows allowed and denied traffic with identities, then stops on Ctrl-C', async () => {
    const before = JSON.parse(readFileSync(join(dataDir, 'people', 'credentials.json'), 'utf8')) as {
      alice: string;
    };
    const up = await startCli(
      ['up', '--data-dir', dataDir, '--port', '0', '--agent-port', '0', '--interval', '100ms'],
      /decisions: [1-9]\d* allowed, [1-9]\d* denied[\s\S]*people's decisions: [1-9]\d* allowed, [1-9]\d* sent to MFA, [1-9]\d* denied[\s\S]*✓ from her managed device[\s\S]*secret is [A-Z2-7]{32}\b/,
      { timeoutMs: 90_000 },
    );
    const out = up.output();
    expect(out).toContain('spiffe://example.org/ns/payments/sa/payment-service');
    // The device enrolled by the demo is kept (still good: not revoked, its certificate current).
    const store0 = await openStore({ dataDir });
    try {
      expect((await store0.devices.list()).map((d) => [d.owner, d.revokedAt])).toEqual([['alice', null]]);
    } finally {
      await store0.close();
    }
    expect(out).toMatch(/curl -s -X POST http:\/\/127\.0\.0\.1:\d+\/charge/);
    // The curl line printed for people works.
    const port = /curl -s -X POST http:\/\/127\.0\.0\.1:(\d+)\/charge/.exec(out)?.[1];
    const res = await fetch(`http://127.0.0.1:${port}/charge`, { method: 'POST', body: '{"amount": 4200}' });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ upstream_status: 201 });

    // The browser line works too: its URL, alice's password (the one kept since the demo) and the CA.
    const line = /(https:\/\/backoffice\.localhost:\d+)\/ {2}alice \/ (\S+) \(admin\).* the CA is (\S+)/.exec(out);
    expect(line?.[2]).toBe(before.alice);
    const alice = new PersonClient({ ca: readFileSync(line?.[3] as string, 'utf8') });
    try {
      // /admin asks for a second factor: a code from the printed secret, as an authenticator app makes it.
      const challenge = await alice.signIn(`${line?.[1]}/admin`, 'alice', line?.[2] as string);
      expect(new URL(challenge.url).pathname).toBe('/.nevertrust/mfa/challenge');
      const secret = /alice's authenticator app \(TOTP\) secret is ([A-Z2-7]{32})\b/.exec(out)?.[1] as string;
      const page = await answerTotp(alice, challenge, secret);
      expect(page.status).toBe(200);
      expect(new URL(page.url).pathname).toBe('/admin');
      expect(page.body).toContain('id="email">alice@example.com<');
      expect(page.body).toMatch(/id="amr">pwd, otp</); // the app sees the second factor in the assertion
      const wrong = new PersonClient({ ca: readFileSync(line?.[3] as string, 'utf8') });
      await expect(wrong.signIn(`${line?.[1]}/`, 'alice', 'not-the-password')).rejects.toThrow(
        /ended at https:\/\/idp\.localhost/,
      );
      await wrong.close();
    } finally {
      await alice.close();
    }

    up.child.kill('SIGINT');
    expect(await up.exited).toBe(0);

    // The demo's factor belonged to the demo's provider (another issuer): reset at this start, so
    // alice has only the factor enrolled in this run.
    const store = await openStore({ dataDir });
    try {
      const factors = await createMfaService({ store }).listByUser('alice');
      expect(factors.map((f) => [f.kind, f.confirmed])).toEqual([['totp', true]]);
      const resets = await queryAuditLog(store, { kind: 'mfa.reset', limit: 10 });
      expect(resets.events.some((e) => e.outcome === 'allow')).toBe(true);
      // One enrollment (the demo's), reports from both runs, and the proxy's decisions naming the device.
      const [device] = await store.devices.list();
      expect((await queryAuditLog(store, { kind: 'device.enroll', limit: 10 })).events).toHaveLength(1);
      expect((await store.devices.history(device?.id as string)).length).toBeGreaterThanOrEqual(2);
    } finally {
      await store.close();
    }
  }, 150_000);

  it('refuses a bad --people-port before starting anything (exit 2, naming the flag)', async () => {
    for (const bad of ['99999', 'abc', '-1', '80.5']) {
      const r = await runCli([
        'demo',
        '--people-port',
        bad,
        '--data-dir',
        tempDir(),
        '--port',
        '0',
        '--agent-port',
        '0',
      ]);
      expect(r.code, bad).toBe(2);
      expect(r.stderr).toContain(`--people-port: expected a port number 0–65535, got "${bad}"`);
      expect(r.stdout).toBe('');
    }
  }, 60_000);
});
