/**
 * People's access in the local mesh is judged, not just run: when the access proxy lets through
 * what it must refuse, the step is reported as unexpected (so `nevertrust demo` fails). Here the
 * proxy enforces a policy that wrongly lets staff use /admin.
 */
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverPlugins } from '../../src/cli/server-plugins.js';
import { loadConfig } from '../../src/config/index.js';
import { LocalMesh } from '../../src/mesh/local-mesh.js';
import {
  judgePeople,
  loadCredentials,
  loadSecret,
  MFA_CHALLENGE_PATH,
  PEOPLE_STEPS,
  PeopleFileError,
  type PeopleStep,
  pageDecisionId,
} from '../../src/mesh/people.js';
import { NO_DEVICE_REASON } from '../../src/mesh/people-scenario.js';
import { peopleStats, renderSummary } from '../../src/mesh/summary.js';
import { NO_DEVICE_REASON as PROXY_NO_DEVICE_REASON } from '../../src/access/proxy/device.js';
import { MFA_CHALLENGE_PATH as PROXY_CHALLENGE_PATH } from '../../src/access/proxy/step-up.js';
import { PersonClient } from '../../src/mesh/people-client.js';
import { packageRoot } from '../../src/util/package-root.js';
import { createLogger } from '../../src/util/logger.js';
import { tempDir } from '../support/tmp.js';

const step = (label: string): PeopleStep => {
  const s = PEOPLE_STEPS.find((x) => x.label === label);
  if (!s) throw new Error(`no step ${label}`);
  return s;
};

describe('judging people’s steps', () => {
  const bobPage = '<b id="email">bob@example.com</b>';
  it('wants the expected status and, where it says, the right person on the page', () => {
    const sees = step('bob forges an assertion: the app still sees bob');
    expect(judgePeople(sees, { status: 200, body: bobPage })).toBe(true);
    // the app was handed the forged assertion (alice), or nobody at all
    expect(judgePeople(sees, { status: 200, body: '<b id="email">alice@example.com</b>' })).toBe(false);
    expect(judgePeople(sees, { status: 401, body: 'Not through the access proxy' })).toBe(false);
    const admin = step('bob GET /admin (staff only)');
    expect(judgePeople(admin, { status: 403, body: '' })).toBe(true);
    expect(judgePeople(admin, { status: 200, body: bobPage })).toBe(false);
    expect(judgePeople(admin, { status: 302, body: '' })).toBe(false);
    // A step-up: a 303 to the proxy's own MFA challenge, on the same origin, and nothing else.
    const stepUp = step('alice GET /admin without MFA (2nd browser)');
    const challenge = '/.nevertrust/mfa/challenge?rd=%2Fadmin';
    expect(judgePeople(stepUp, { status: 303, body: '', location: challenge })).toBe(true);
    expect(judgePeople(stepUp, { status: 200, body: '<b id="email">alice@example.com</b>' })).toBe(false);
    expect(judgePeople(stepUp, { status: 303, body: '' })).toBe(false);
    expect(judgePeople(stepUp, { status: 303, body: '', location: '/.nevertrust/login?rd=%2Fadmin' })).toBe(false);
    for (const elsewhere of [`https://evil.example${challenge}`, `//evil.example${challenge}`, 'http://[bad'])
      expect(judgePeople(stepUp, { status: 303, body: '', location: elsewhere }), elsewhere).toBe(false);
    expect(judgePeople(stepUp, { status: 403, body: '', location: challenge })).toBe(false);
    expect(MFA_CHALLENGE_PATH).toBe(PROXY_CHALLENGE_PATH);
  });

  it('wants the refusal of the client without a device to say why, and reads the decision id of a page', () => {
    const none = step('alice GET /reports/export, 2nd browser, no device');
    const why = `<p>DENY policy &quot;x&quot; rule &quot;y&quot; could not be evaluated (request lacks device.managed: ${NO_DEVICE_REASON}); failing closed: deny</p><p>Decision id: <code>d-1</code></p>`;
    expect(judgePeople(none, { status: 403, body: why })).toBe(true);
    // refused, but for another reason (a 403 for bob's group, say): not what this step shows
    expect(judgePeople(none, { status: 403, body: '<p>no ALLOW rule matched (default deny)</p>' })).toBe(false);
    expect(judgePeople(none, { status: 200, body: '<b id="email">alice@example.com</b>' })).toBe(false);
    expect(NO_DEVICE_REASON).toBe(PROXY_NO_DEVICE_REASON);
    expect(pageDecisionId(why)).toBe('d-1');
    expect(pageDecisionId('<span id="amr">pwd</span>; decision 0193abc-9f)</p>')).toBe('0193abc-9f');
    expect(pageDecisionId('<p>Decision id: <code>a b</code></p>')).toBeUndefined();
  });
});

describe('people’s files', () => {
  it('generates the passwords once (0600) and keeps them', () => {
    const file = join(tempDir(), 'credentials.json');
    const first = loadCredentials(file);
    expect(first.alice).toMatch(/^[\w-]{24}$/);
    expect(first.bob).not.toBe(first.alice);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(loadCredentials(file)).toEqual(first);
  });

  it('refuses a damaged credentials file or client secret, naming the file and the field, and changes nothing', () => {
    const dir = tempDir();
    const file = join(dir, 'credentials.json');
    for (const [text, problem] of [
      ['{"alice": "okokokokokok"', /credentials\.json: not JSON/],
      ['{"alice": "okokokokokok"}', /credentials\.json: bob: /],
      ['{"alice": "short", "bob": "okokokokokok"}', /alice: 10–200 printable characters/],
      ['{"alice": "has a space in it", "bob": "okokokokokok"}', /alice: /],
      ['{"alice": "okokokokokok", "bob": "okokokokokok", "mallory": "okokokokokok"}', /mallory/],
    ] as const) {
      writeFileSync(file, text);
      expect(() => loadCredentials(file)).toThrow(PeopleFileError);
      expect(() => loadCredentials(file)).toThrow(problem);
      expect(readFileSync(file, 'utf8')).toBe(text);
    }
    const secret = join(dir, 'client.secret');
    writeFileSync(secret, 'short\n');
    expect(() => loadSecret(secret)).toThrow(/client\.secret: the client secret is shorter than 16 characters/);
  });
});

describe('people’s access in the local mesh', () => {
  let mesh: LocalMesh;
  let dataDir: string;
  let policies: string;
  let doc: string;
  beforeAll(async () => {
    const dir = tempDir();
    // The back-office policies, with the admin rule wrongly open to staff, without MFA.
    policies = join(dir, 'policies');
    mkdirSync(policies);
    doc = readFileSync(join(packageRoot(), 'examples', 'policies', 'people', 'backoffice.yaml'), 'utf8');
    const wrong = doc
      .replace(/(admins-admin[\s\S]*?values: )\[admins\]/, '$1[admins, staff]')
      .split(/\n---\n/)
      .filter((d) => !d.includes('name: backoffice-admin-mfa'))
      .join('\n---\n');
    expect(wrong).toContain('values: [admins, staff]');
    expect(wrong).not.toContain('action: STEP_UP');
    writeFileSync(join(policies, 'backoffice.yaml'), wrong);
    // The console's policy as shipped.
    const consolePolicy = join(packageRoot(), 'examples', 'policies', 'people', 'console.yaml');
    writeFileSync(join(policies, 'console.yaml'), readFileSync(consolePolicy, 'utf8'));
    const config = loadConfig({
      env: {},
      cwd: dir,
      overrides: { data_dir: join(dir, 'data'), server: { port: 0, agent_port: 0 } },
    });
    dataDir = config.data_dir;
    mesh = await LocalMesh.start({
      config,
      logger: createLogger('error'),
      plugins: serverPlugins(config),
      people: { policies },
    });
  }, 120_000);
  afterAll(async () => {
    await mesh?.stop();
  }, 30_000);

  it('reports a request the proxy should have refused as unexpected', async () => {
    const people = mesh.people;
    if (!people) throw new Error('people not started');
    expect((await people.run(step('bob signs in (OIDC code flow, PKCE)'))).asExpected).toBe(true);
    const r = await people.run(step('bob GET /admin (staff only)'));
    expect(r.status).toBe(200);
    expect(r.asExpected).toBe(false);
    // what the policy still refuses is refused, and judged so
    expect((await people.run(step('API client without a session'))).asExpected).toBe(true);
    expect(await people.activeSessions()).toBe(1);
  }, 60_000);

  it('serves the provider with a new certificate from the CA, and people still sign in', async () => {
    const people = mesh.people;
    if (!people) throw new Error('people not started');
    const ca = readFileSync(join(people.dir, 'ca.pem'), 'utf8');
    const port = Number(new URL(people.issuer).port);
    const served = () =>
      new Promise<{ fingerprint: string; names: string | undefined }>((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port, servername: 'idp.localhost', ca }, () => {
          const c = s.getPeerCertificate();
          s.destroy();
          resolve({ fingerprint: c.fingerprint256, names: c.subjectaltname });
        });
        s.on('error', reject);
      });
    const before = await served();
    expect(before.names).toContain('DNS:idp.localhost');
    await people.renewCertificate();
    const after = await served();
    expect(after.names).toContain('DNS:idp.localhost');
    expect(after.fingerprint).not.toBe(before.fingerprint);
    // The proxy reaches the restarted provider: a sign-out and a sign-in through its login form.
    const r = await people.run(step('bob signs out, is refused, signs in again'));
    expect(r.asExpected, r.detail).toBe(true);
  }, 60_000);

  it('alice enrolls TOTP through the pages with her link, and answers the challenge when her MFA is stale', async () => {
    const people = mesh.people;
    if (!people) throw new Error('people not started');
    // The real back-office policies (the proxy reloads the file), with MFA fresh for 2 s instead of 15 min.
    const fresh = doc.replace(/(key: auth\.mfa_age\s+gt: )900\b/, '$12');
    expect(fresh).not.toBe(doc);
    writeFileSync(join(policies, 'backoffice.yaml'), fresh);
    const stepUp = step('alice GET /admin without MFA (2nd browser)');
    for (let i = 0; !(await people.run(stepUp)).asExpected; i++) {
      if (i > 100) throw new Error('the proxy did not load the policies');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(people.aliceTotpSecret).toBeUndefined();
    const mfa = step('alice passes MFA (TOTP code) and opens /admin');
    const admin = step('alice GET /admin (admins)');
    const enrolled = await people.run(mfa);
    expect(enrolled.asExpected, enrolled.detail).toBe(true);
    expect(people.aliceTotpSecret).toMatch(/^[A-Z2-7]{32}$/);
    expect((await people.run(admin)).asExpected).toBe(true);
    // Stale: /admin sends her to the challenge again (the page she lands on is not the admin page) …
    await new Promise((r) => setTimeout(r, 3000));
    const stale = await people.run(admin);
    expect(stale.asExpected).toBe(false);
    // … where a code (a later time step than the enrollment's: a step is accepted once) lets her in.
    const again = await people.run(mfa);
    expect(again.asExpected, again.detail).toBe(true);
    expect(again.status).toBe(200);
    // The link adds nothing more: in a new session (no MFA yet) it offers no enrollment, only a check first.
    const c = new PersonClient({ ca: readFileSync(join(people.dir, 'ca.pem'), 'utf8') });
    try {
      await c.signIn(`${people.url}/`, 'alice', people.credentials.alice);
      const link = await c.get(people.enrollLink('alice'));
      expect(link.body).not.toContain('id="totp-add"');
      expect(link.body).toContain('verify it is you first');
    } finally {
      await c.close();
    }
  }, 90_000);

  it('this machine is alice’s managed device: the same request is allowed from it and fails closed without it, with reasons; revoked, it is refused', async () => {
    const people = mesh.people;
    if (!people) throw new Error('people not started');
    // alice's first browser (the one presenting the device certificate) signs in: the session is bound to the device.
    expect((await people.run(step('alice signs in (OIDC code flow, PKCE)'))).asExpected).toBe(true);
    const managed = await people.run(step('alice GET /reports/export from her managed device'));
    expect(managed.asExpected, managed.detail).toBe(true);
    expect(managed.status).toBe(200);
    const none = await people.run(step('alice GET /reports/export, 2nd browser, no device'));
    expect(none.asExpected, none.detail).toBe(true);
    expect(none.status).toBe(403);
    // The device as the server keeps it (enrolled with a token, its posture reported), and the two
    // decisions as the audit log has them (shipped by the proxy through the agent: a moment later).
    let stats = await peopleStats(people);
    for (let i = 0; i < 100 && !(stats.device?.decisions.managed && stats.device.decisions.none); i++) {
      await new Promise((r) => setTimeout(r, 100));
      stats = await peopleStats(people);
    }
    expect(stats.device?.record).toMatchObject({ id: people.device.id, owner: 'alice', revokedAt: null });
    expect(stats.device?.record?.posture).toMatchObject({ source: 'collector', managed: true });
    expect(stats.device?.decisions.managed).toEqual({
      outcome: 'allow',
      reason: 'ALLOW policy "backoffice-staff" rule "staff-read" matched: allow',
    });
    expect(stats.device?.decisions.none).toEqual({
      outcome: 'deny',
      reason: `DENY policy "backoffice-export-managed-device" rule "export-from-unmanaged-device" could not be evaluated (request lacks device.managed: ${NO_DEVICE_REASON}); failing closed: deny`,
    });
    // Revoked: its certificate is refused (the proxy's lookup is cached for at most a second).
    expect(await people.store.devices.revoke(people.device.id, 'lost on a train')).toBe(true);
    await new Promise((r) => setTimeout(r, 1100));
    const revoked = await people.run(step('alice GET /reports/export from her managed device'));
    expect(revoked.status).toBe(403);
    expect(revoked.asExpected).toBe(false);
    expect(revoked.detail).toContain(`device ${people.device.id} was revoked (lost on a train)`);
  }, 180_000);

  it('the console: the proxy routes console.localhost to the server, which takes alice as an admin; bob is refused', async () => {
    const people = mesh.people;
    if (!people) throw new Error('people not started');
    const port = new URL(people.url).port;
    const stats = await peopleStats(people);
    const summary = renderSummary(mesh, {
      anomalies: [],
      elapsedS: 0,
      apiUrl: mesh.server.url,
      dataDir,
      people: stats,
    });
    expect(summary).toContain(`console: https://console.localhost:${port}/console/ (alice, after MFA)`);
    const ca = readFileSync(join(people.dir, 'ca.pem'), 'utf8');
    const whoami = `https://console.localhost:${port}/v1/admin/whoami`;
    const alice = new PersonClient({ ca });
    const bob = new PersonClient({ ca });
    try {
      // The whole chain: the proxy's TLS for console.localhost, login, policy, the assertion, the server's checks.
      const a = await alice.signIn(whoami, 'alice', people.credentials.alice);
      expect(a.status, a.body).toBe(200);
      expect(JSON.parse(a.body)).toMatchObject({ id: 'person:alice', kind: 'person', user: 'alice' });
      // A destructive call without a fresh second factor: the proxy asks for one (RFC 9470), nothing reaches the server.
      const revoke = await alice.send('POST', `https://console.localhost:${port}/v1/admin/revoke`, {
        headers: { accept: 'application/json', 'content-type': 'application/json' },
        body: JSON.stringify({ session: 'nope' }),
      });
      expect(revoke.status).toBe(401);
      expect(String(revoke.headers['www-authenticate'])).toContain('insufficient_user_authentication');
      // Staff: refused by the proxy's policy.
      const b = await bob.signIn(whoami, 'bob', people.credentials.bob);
      expect(b.status).toBe(403);
    } finally {
      await alice.close();
      await bob.close();
    }
  }, 120_000);

  it('a live session: the summary prints the command that revokes it; run, it cuts the connection within 1 s and shows so', async () => {
    const people = mesh.people;
    if (!people) throw new Error('people not started');
    const live = await people.openLive();
    expect(live.user).toBe('bob');
    await new Promise((r) => setTimeout(r, 2500)); // a request or two on the one connection
    expect(live.requests).toBeGreaterThanOrEqual(2);
    expect(live.connections).toBe(1);
    const summary = () =>
      peopleStats(people).then((stats) =>
        renderSummary(mesh, { anomalies: [], elapsedS: 0, apiUrl: mesh.server.url, dataDir, people: stats }),
      );
    const before = await summary();
    expect(before).toContain(`● ${live.id}  bob`);
    const command = /revoke it: npx nevertrust (revoke session \S+ --data-dir \S+ --server \S+)/.exec(before)?.[1];
    expect(command).toBe(`revoke session ${live.id} --data-dir ${dataDir} --server ${mesh.server.url}`);
    // The printed command, as a person runs it (the CLI → the admin API → the signal → the proxy).
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [join(packageRoot(), 'bin', 'nevertrust.js'), ...(command as string).split(' ')],
      { timeout: 30_000 },
    );
    expect(stdout).toContain(`session.revoked session:${live.id} kept as signal`);
    for (let i = 0; i < 50 && live.afterStatus === undefined; i++) await new Promise((r) => setTimeout(r, 100));
    expect(live.ended).toBeDefined();
    const ended = live.ended as NonNullable<typeof live.ended>;
    expect(ended.closedAt - ended.revokedAt).toBeLessThanOrEqual(1000);
    expect(live.afterStatus).toBe(401);
    expect((await people.store.accessSessions.findById(live.id))?.endedAt).not.toBeNull();
    // The proxy's own account of the cut reaches the audit log, and the summary shows both.
    let after = await summary();
    for (let i = 0; i < 50 && !after.includes('access.cut'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await summary();
    }
    expect(after).toContain(`○ ${live.id}  bob`);
    expect(after).toMatch(
      /✓ connection cut \d+ ms after the revocation \(the client saw it close\) · the proxy's access\.cut audit event at [\d:.]+Z; its cookie now gets 401/,
    );
  }, 120_000);
});
