/**
 * People's access in the local mesh (`nevertrust up`, `nevertrust demo`): the built-in OpenID
 * provider in this process (HTTPS with a certificate from the trust domain's CA for
 * `idp.localhost`), two users, the example back-office as a child process, and the access proxy as
 * a real workload — a child process from its own binary path, attested by the in-process agent,
 * with its SVID over the Workload API and its audit and assertion keys over mTLS to the agent port.
 * The people's steps of the traffic generator sign in through the real login flow; alice enrolls
 * TOTP through the proxy's MFA pages (with a one-time enrollment link made here) and answers the
 * back-office's `/admin` step-up with codes computed as an authenticator app does.
 */
import { loadOrCreateKek } from '../ca/kek.js';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPair, SignJWT } from 'jose';
import { Secret, TOTP } from 'otpauth';
import YAML from 'yaml';
import { z } from 'zod';
import { PEP_NAME as ACCESS_PROXY_ENFORCER } from '../access/proxy/gate.js';
import {
  generatePassword,
  hashPassword,
  type RunningIdentityProvider,
  startIdentityProvider,
} from '../access/idp/index.js';
import { createMfaService } from '../access/mfa/index.js';
import { ENROLL_LINK_PATH } from '../api/users.js';
import type { AuditEventInput } from '../audit/index.js';
import { certificatesToPem } from '../ca/index.js';
import { NevertrustError } from '../errors.js';
import type { RunningServer, ServerPlugin } from '../server/index.js';
import type { CaHandle } from '../server/plugins/ca.js';
import { DuplicateEntryError, type Store } from '../store/index.js';
import type { Logger } from '../util/logger.js';
import { packageRoot } from '../util/package-root.js';
import { type ParsedForm, parseForm, parseForms, PersonClient, type PersonResponse } from './people-client.js';
import {
  judgePeople,
  MFA_CHALLENGE_PATH,
  PEOPLE,
  type Person,
  type PeopleStep,
  type PeopleStepResult,
} from './people-scenario.js';
import { MeshDevice } from './people-device.js';
import { LiveSession } from './people-live.js';
import { cleanExit, serviceBinary, startChild, stopChild } from './processes.js';

export {
  judgePeople,
  MFA_CHALLENGE_PATH,
  PEOPLE,
  PEOPLE_STEPS,
  type Person,
  type PeopleStep,
  type PeopleStepResult,
} from './people-scenario.js';

export const BACKOFFICE_HOST = 'backoffice.localhost';
/** The web console's host at the mesh's access proxy: it forwards to the server's API port. */
export const CONSOLE_HOST = 'console.localhost';

/** The access proxy's SPIFFE ID in the mesh (the server trusts it to vouch for console admins). */
export function meshProxyId(trustDomain: string): string {
  return `spiffe://${trustDomain}/ns/people/sa/access-proxy`;
}

/**
 * The server's `console` settings in the mesh: the mesh's proxy vouches for people, with the console
 * route's audience; the rest (group, MFA age) as configured.
 *
 * @example
 * startServer({ config: { ...config, console: meshConsole(config.console, config.trust_domain) }, … });
 */
export function meshConsole<C extends { proxies: string[]; audience?: string }>(c: C, trustDomain: string): C {
  const proxy = meshProxyId(trustDomain);
  return {
    ...c,
    proxies: c.proxies.includes(proxy) ? c.proxies : [...c.proxies, proxy],
    audience: `https://${CONSOLE_HOST}`,
  };
}
/** Who owns the mesh's managed device (this machine): her client presents its certificate. */
export const DEVICE_OWNER: Person = 'alice';
/** How long a step from the managed device waits for the device's first posture report (a collection takes seconds). */
const FIRST_REPORT_WAIT_MS = 120_000;
export const IDP_HOST = 'idp.localhost';
/** The session idle lifetime the mesh's proxy is configured with (the auth default), for counting live sessions. */
const IDLE_LIFETIME_MS = 3600_000;
/** How long the enrollment links made at start work (as `nevertrust user enroll-link`'s default). */
const ENROLL_LINK_TTL_MS = 24 * 3600_000;
/** The actor of what `nevertrust up` does on people's behalf, in the audit log. */
const ACTOR = 'nevertrust up';

/** What one people's step got: the status, the page, and where a redirect not followed pointed. */
interface StepAnswer {
  status: number;
  body: string;
  location?: string;
  detail?: string;
}

export interface PeopleStartOptions {
  server: RunningServer;
  /** The server's plugins: the CA (`ca`) issues the provider's certificate; `audit` records its logins. */
  plugins: readonly ServerPlugin[];
  trustDomain: string;
  dataDir: string;
  /** The server's KEK file (`ca.kek_file`, default `<data-dir>/kek`): it seals the provider's keys too. */
  kekFile: string;
  /** The agent's Workload API socket. */
  socket: string;
  /** The agent port, `https://host:port` (the proxy's audit and assertion keys go there over mTLS). */
  agentUrl: string;
  agentId: string;
  binDir: string;
  bundlePem: string;
  policies?: string;
  ports: { proxy: number; idp: number; app: number };
  /** The server's API, `http://127.0.0.1:<port>`: the console route's upstream. */
  consoleUpstream: string;
  svidTtl: { x509: number; jwt: number };
  logger: Logger;
}

interface CaPluginLike extends ServerPlugin {
  handle: CaHandle;
}
interface AuditPluginLike extends ServerPlugin {
  handle: { record(e: AuditEventInput): void };
}

function plugin<T extends ServerPlugin>(plugins: readonly ServerPlugin[], name: string): T | undefined {
  return plugins.find((p) => p.name === name && 'handle' in p) as T | undefined;
}

/** Writes `text` to `file` readable only by this user (also when it existed with wider rights). */
function writeSecret(file: string, text: string): void {
  writeFileSync(file, text, { mode: 0o600 });
  chmodSync(file, 0o600);
}

/** A file of `<data-dir>/people/` that cannot be used; names the file and what is wrong. */
export class PeopleFileError extends NevertrustError<'ERR_MESH_PEOPLE_FILE'> {
  override readonly name = 'PeopleFileError';
  readonly code = 'ERR_MESH_PEOPLE_FILE';
  constructor(file: string, problem: string) {
    super(`${file}: ${problem} (remove the file to have it generated again)`, { status: 400 });
  }
}

// At least the provider's minimum (10 characters), printable, as `generatePassword()` makes them.
const password = z.string().regex(/^[\x21-\x7e]{10,200}$/, '10–200 printable characters without spaces');
const credentialsSchema = z.strictObject({ alice: password, bob: password });

/** The two users' passwords: generated once, kept in `<people>/credentials.json` (0600). */
export function loadCredentials(file: string): Record<Person, string> {
  if (existsSync(file)) {
    let doc: unknown;
    try {
      doc = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new PeopleFileError(file, `not JSON: ${(e as Error).message}`);
    }
    const r = credentialsSchema.safeParse(doc);
    if (!r.success) {
      const i = r.error.issues[0];
      throw new PeopleFileError(file, `${i?.path.join('.') || '(root)'}: ${i?.message ?? 'invalid'}`);
    }
    return r.data;
  }
  const c = { alice: generatePassword(), bob: generatePassword() };
  writeSecret(file, `${JSON.stringify(c, null, 2)}\n`);
  return c;
}

/** The provider client's secret: generated once (256 bits), kept in `<people>/client.secret` (0600). */
export function loadSecret(file: string): string {
  if (existsSync(file)) {
    const secret = readFileSync(file, 'utf8').trim();
    // The provider wants at least 16 characters; a shorter one is a damaged file, not a secret.
    if (secret.length < 16) throw new PeopleFileError(file, 'the client secret is shorter than 16 characters');
    return secret;
  }
  const secret = randomBytes(32).toString('base64url');
  writeSecret(file, `${secret}\n`);
  return secret;
}

/** The access proxy's decisions: allowed, denied, and `step_up` (sent to the MFA challenge: expected traffic). */
export interface PeopleDecisions {
  allow: number;
  deny: number;
  stepUp: number;
}

/** The latest answer to one step of the device pair, with the decision id its page named. */
export interface DeviceStepAnswer {
  status: number;
  asExpected: boolean;
  decisionId?: string;
}

/** The decision id a page names: the app's (from the verified assertion) or a refusal page's. */
export function pageDecisionId(body: string): string | undefined {
  return (/Decision id: <code>([\w.:-]{1,128})<\/code>/.exec(body) ??
    /\bdecision ([\w.:-]{1,128})\)<\/p>/.exec(body))?.[1];
}

export class People {
  readonly results: PeopleStepResult[] = [];
  private readonly clients = new Map<Person, PersonClient>();
  /** Each person's other browser: a session of its own, which never passes MFA. */
  private readonly others = new Map<Person, PersonClient>();
  private readonly anonymous: PersonClient;
  /** The latest answers of the device pair's two steps (see PeopleStep.device). */
  readonly deviceAnswers: Partial<Record<'managed' | 'none', DeviceStepAnswer>> = {};
  private readonly tally = { allow: 0, deny: 0, stepUp: 0, lastSeq: -1 };
  private counting: Promise<PeopleDecisions> = Promise.resolve({ allow: 0, deny: 0, stepUp: 0 });
  /**
   * alice's TOTP factor once the traffic enrolled it: the secret (base32, as the enrollment page
   * shows it) and the last time step whose code was accepted (a step is never accepted twice).
   */
  private aliceTotp: { secret: string; lastStep: number } | undefined;
  private stopping = false;
  /** The session held open to be revoked (see openLive), once opened. */
  live: LiveSession | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  /**
   * Serves the provider with a newly minted certificate (restarting it on its port; its sessions
   * and keys are in the store). Done by itself from half the certificate's lifetime and on a CA change.
   */
  renewCertificate: () => Promise<void> = async () => {};
  private unsubscribeBundle: (() => void) | undefined;

  private constructor(
    private readonly o: PeopleStartOptions,
    readonly dir: string,
    readonly credentials: Record<Person, string>,
    readonly proxyId: string,
    private idp: RunningIdentityProvider,
    readonly app: ChildProcess,
    readonly proxy: ChildProcess,
    /** One-time MFA enrollment links (tokens) made at start: alice's for the traffic, the others' for people. */
    private readonly enrollTokens: Record<Person, string>,
    /** This machine as alice's managed device: her (first) client presents its certificate. */
    readonly device: MeshDevice,
    deviceTls: { cert: string; key: string },
  ) {
    const ca = readFileSync(join(dir, 'ca.pem'), 'utf8');
    for (const p of Object.keys(PEOPLE) as Person[]) {
      this.clients.set(p, new PersonClient({ ca, ...(p === DEVICE_OWNER ? deviceTls : {}) }));
      this.others.set(p, new PersonClient({ ca }));
    }
    this.anonymous = new PersonClient({ ca });
    // A renewed certificate replaces the old one at the proxy at once (the old serial is refused).
    device.onRenewed = async () => {
      const tls = await device.credentials();
      this.client(DEVICE_OWNER).setClientCertificate(tls.cert, tls.key);
    };
  }

  /** `https://backoffice.localhost:<port>/.nevertrust/mfa/enroll?token=…`: `who`'s one-time enrollment link. */
  enrollLink(who: Person): string {
    return `${this.url}${ENROLL_LINK_PATH}?token=${encodeURIComponent(this.enrollTokens[who])}`;
  }

  /** alice's TOTP secret (base32) once the traffic has enrolled it, for a person's authenticator app. */
  get aliceTotpSecret(): string | undefined {
    return this.aliceTotp?.secret;
  }

  /** `https://console.localhost:<port>/console/`: the web console, through the proxy. */
  get consoleUrl(): string {
    return `https://${CONSOLE_HOST}:${this.o.ports.proxy}/console/`;
  }

  /** `https://backoffice.localhost:<port>` */
  get url(): string {
    return `https://${BACKOFFICE_HOST}:${this.o.ports.proxy}`;
  }

  get issuer(): string {
    return this.idp.issuer;
  }

  static async start(o: PeopleStartOptions): Promise<People> {
    const ca = plugin<CaPluginLike>(o.plugins, 'ca')?.handle;
    if (!ca) throw new Error("people's access needs the server's CA plugin");
    const audit = plugin<AuditPluginLike>(o.plugins, 'audit')?.handle;
    const dir = join(o.dataDir, 'people');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    // The bundle, for the proxy (the provider's TLS) and for people's browsers.
    writeFileSync(join(dir, 'ca.pem'), o.bundlePem, { mode: 0o644 });
    const credentials = loadCredentials(join(dir, 'credentials.json'));
    const clientSecret = loadSecret(join(dir, 'client.secret'));
    for (const [name, p] of Object.entries(PEOPLE) as [Person, (typeof PEOPLE)[Person]][]) {
      const hash = await hashPassword(credentials[name]);
      if (await o.server.store.users.get(name)) await o.server.store.users.update(name, { passwordHash: hash });
      else await o.server.store.users.create({ username: name, email: p.email, groups: p.groups, passwordHash: hash });
    }
    // A person with no second factor enrolls only with an admin's one-time link (what
    // `nevertrust user enroll-link` makes): one each, alice's used by the traffic, bob's printed.
    // Factors belong to a provider identity (issuer, sub), and the provider's issuer has a new port
    // every start: the factors of earlier starts belong to nobody now, so they go.
    const mfa = createMfaService({ store: o.server.store, record: audit ? (e) => audit.record(e) : undefined });
    const enrollTokens = {} as Record<Person, string>;
    for (const name of Object.keys(PEOPLE) as Person[]) {
      if ((await mfa.listByUser(name)).length > 0) await mfa.resetUser(name, ACTOR);
      enrollTokens[name] = (await mfa.createEnrollLink(name, ACTOR, ENROLL_LINK_TTL_MS)).token;
    }

    const proxyOrigin = `https://${BACKOFFICE_HOST}:${o.ports.proxy}`;
    const consoleOrigin = `https://${CONSOLE_HOST}:${o.ports.proxy}`;
    const { kek } = await loadOrCreateKek({ file: o.kekFile });
    const idpOptions = {
      kek,
      issuer: `https://${IDP_HOST}:${o.ports.idp}`,
      listen: { host: '127.0.0.1', port: o.ports.idp },
      store: o.server.store,
      clients: [
        {
          client_id: 'access-proxy',
          client_secret: clientSecret,
          redirect_uris: [`${proxyOrigin}/.nevertrust/callback`, `${consoleOrigin}/.nevertrust/callback`],
          post_logout_redirect_uris: [
            `${proxyOrigin}/.nevertrust/signed_out`,
            `${consoleOrigin}/.nevertrust/signed_out`,
          ],
          backchannel_logout_uri: `${proxyOrigin}/.nevertrust/backchannel-logout`,
        },
      ],
      record: audit ? (e: AuditEventInput) => audit.record(e) : undefined,
      outboundCa: o.bundlePem,
      onError: (err: Error) => o.logger.error({ err }, 'identity provider error'),
    };
    const tls = () => {
      const s = ca.current().mintX509Svid({
        spiffeId: `spiffe://${o.trustDomain}/ns/people/sa/idp`,
        dnsNames: [IDP_HOST],
      });
      const now = Date.now();
      return {
        renewAt: now + (s.notAfter.getTime() - now) / 2,
        cert: certificatesToPem(s.chain),
        key: s.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
      };
    };
    const root = packageRoot();
    const proxyId = meshProxyId(o.trustDomain);
    const uid = process.getuid?.() ?? 0;
    const proxyBinary = serviceBinary(o.binDir, 'access-proxy');
    const appBinary = serviceBinary(o.binDir, 'backoffice');
    // Its serving certificate (the SVID) names the hosts browsers use.
    const dnsNames = [BACKOFFICE_HOST, CONSOLE_HOST];
    try {
      await o.server.store.entries.create({
        spiffeId: proxyId,
        parentId: o.agentId,
        selectors: [`unix:uid:${uid}`, `unix:path:${proxyBinary}`],
        x509SvidTtl: o.svidTtl.x509,
        jwtSvidTtl: o.svidTtl.jwt,
        dnsNames,
        hint: 'access-proxy',
        admin: false,
        expiresAt: null,
      });
    } catch (e) {
      if (!(e instanceof DuplicateEntryError)) throw e;
      // A data dir of an earlier version: its entry lacks the console's host.
      for (const entry of await o.server.store.entries.list({ spiffeId: proxyId, parentId: o.agentId })) {
        if (!dnsNames.every((n) => entry.dnsNames.includes(n)))
          await o.server.store.entries.update(entry.id, { dnsNames: [...new Set([...entry.dnsNames, ...dnsNames])] });
      }
    }

    const configFile = join(dir, 'access-proxy.yaml');
    const config = {
      listen: `127.0.0.1:${o.ports.proxy}`,
      svid: { workload_api: `unix://${o.socket}` },
      policies: o.policies ?? join(root, 'examples', 'policies', 'people'),
      audit: { server: o.agentUrl, spill_dir: 'audit-spill' },
      assertion: { server: o.agentUrl },
      // Revocations and other signals, followed with its SVID: a revoked session ends at once,
      // its live connections too (docs/signals.md). This machine is rarely fully compliant (no
      // EDR, say): the seed policies judge its posture (managed), not the four-fact rule.
      signals: { server: o.agentUrl, device_non_compliant: 'policy' },
      auth: {
        issuer: idpOptions.issuer,
        client_id: 'access-proxy',
        client_secret_file: 'client.secret',
        ca_file: 'ca.pem',
        session: { key_file: 'session.key', idle_lifetime: `${IDLE_LIFETIME_MS / 1000}s` },
        // The built-in provider's subject is the user name: `nevertrust user enroll-link alice` and
        // `user mfa list alice` then name the person the proxy knows as alice.
        user_claim: 'sub',
      },
      // Local MFA (TOTP, WebAuthn, recovery codes) at /.nevertrust/mfa; enrollment by one-time link.
      mfa: {},
      store: { data_dir: o.dataDir },
      routes: [
        { name: 'backoffice', from: { host: BACKOFFICE_HOST }, to: `http://127.0.0.1:${o.ports.app}` },
        // The web console and its admin API: the server verifies the assertion again (docs/console.md).
        { name: 'console', from: { host: CONSOLE_HOST }, to: o.consoleUpstream },
      ],
    };
    writeFileSync(
      configFile,
      `# Written by \`nevertrust up\` at every start (docs/people.md describes the fields).\n${YAML.stringify(config)}`,
      { mode: 0o600 },
    );

    let people: People | undefined;
    const exited = (name: string) => (code: number | null, signal: NodeJS.Signals | null, stderr: string) =>
      o.logger[cleanExit(code, signal) ? 'warn' : 'error']({ service: name, code, signal, stderr }, 'service exited');
    // Last before the children: from here on a failure closes it.
    let cert = tls();
    const idp = await startIdentityProvider({ ...idpOptions, tls: cert });
    const common = { expected: () => people?.stopping ?? false };
    const starting = [
      startChild({
        ...common,
        name: 'backoffice',
        script: join(root, 'examples', 'backoffice', 'app.mjs'),
        execPath: appBinary,
        env: {
          PATH: process.env.PATH,
          NT_PORT: String(o.ports.app),
          NT_JWKS_URL: `${o.server.url}/v1/assertion-keys/jwks.json?issuer=${encodeURIComponent(proxyId)}`,
          NT_ASSERTION_ISSUER: proxyId,
          NT_AUDIENCE: `https://${BACKOFFICE_HOST}`,
        },
        readyOn: 'ipc',
        onExit: exited('backoffice'),
      }),
      startChild({
        ...common,
        name: 'access-proxy',
        script: join(root, 'bin', 'nevertrust.js'),
        args: ['access-proxy', '--config', configFile],
        execPath: proxyBinary,
        env: { PATH: process.env.PATH, HOME: process.env.HOME },
        readyOn: /"msg":"access proxy ready"/,
        onExit: exited('access-proxy'),
      }),
    ] as const;
    // This machine enrolls as alice's device meanwhile (the server's agent port is up already).
    const enrolling = MeshDevice.start({
      apiUrl: o.server.url,
      agentUrl: o.agentUrl,
      dataDir: o.dataDir,
      dir: join(dir, 'device'),
      trustDomain: o.trustDomain,
      owner: DEVICE_OWNER,
      store: o.server.store,
      logger: o.logger,
    });
    const [app, proxy, device] = await Promise.allSettled([...starting, enrolling]);
    if (app.status === 'rejected' || proxy.status === 'rejected' || device.status === 'rejected') {
      await Promise.all([app, proxy].map((r) => (r.status === 'fulfilled' ? stopChild(r.value) : undefined)));
      if (device.status === 'fulfilled') await device.value.stop();
      await idp.close();
      const failed = [app, proxy, device].find((r) => r.status === 'rejected') as PromiseRejectedResult;
      throw failed.reason;
    }
    const deviceTls = await device.value.credentials();
    people = new People(
      o,
      dir,
      credentials,
      proxyId,
      idp,
      app.value,
      proxy.value,
      enrollTokens,
      device.value,
      deviceTls,
    );
    const started = people;
    // The provider's certificate is static while it runs: serve a fresh one from half its lifetime
    // and after a CA rotation, by starting it again (sessions and keys live in the store).
    const renew = async () => {
      if (started.stopping) return;
      cert = tls();
      await started.idp.close();
      started.idp = await startIdentityProvider({ ...idpOptions, tls: cert });
    };
    // One restart at a time (the timer and a CA change may coincide on the one port).
    let renewing = Promise.resolve();
    started.renewCertificate = () => {
      renewing = renewing.then(renew, renew);
      return renewing;
    };
    const renewSoon = () =>
      void started
        .renewCertificate()
        .catch((err: unknown) => o.logger.error({ err }, 'identity provider restart failed'));
    started.unsubscribeBundle = ca.onBundleChange(renewSoon);
    started.renewTimer = setInterval(() => {
      if (Date.now() >= cert.renewAt) renewSoon();
    }, 10_000);
    started.renewTimer.unref();
    return started;
  }

  /** Runs one people's step and records whether it ended as it must. */
  async run(step: PeopleStep): Promise<PeopleStepResult> {
    let r: StepAnswer;
    try {
      r = await this.act(step);
    } catch (e) {
      r = { status: -1, body: '', detail: (e as Error).message };
    }
    const asExpected = judgePeople(step, r);
    const detail = r.detail ?? (asExpected ? '' : r.body.replace(/\s+/g, ' ').slice(0, 200));
    const result = { step, status: r.status, asExpected, detail };
    if (step.device) {
      const decisionId = pageDecisionId(r.body);
      this.deviceAnswers[step.device] = { status: r.status, asExpected, ...(decisionId ? { decisionId } : {}) };
    }
    this.results.push(result);
    if (this.results.length > 2000) this.results.shift();
    return result;
  }

  private client(who: Person | undefined, other = false): PersonClient {
    const c = who && (other ? this.others : this.clients).get(who);
    if (!c) throw new Error(`no such person: ${who}`);
    return c;
  }

  private async act(step: PeopleStep): Promise<StepAnswer> {
    const url = `${this.url}${step.path}`;
    const c = this.client(step.who ?? 'alice', step.other);
    // The managed device's facts reach policy once the server kept its first report.
    if (step.device === 'managed') await this.device.reported(FIRST_REPORT_WAIT_MS);
    switch (step.action) {
      case 'sign-in': {
        const who = step.who as Person;
        return c.signIn(url, who, this.credentials[who]);
      }
      case 'get':
        return c.get(url);
      case 'page': {
        // Signed in (as a browser would be), then the page load itself, its redirect not followed.
        const who = step.who as Person;
        await c.signIn(`${this.url}/`, who, this.credentials[who]);
        const r = await c.send('GET', url);
        const location = typeof r.headers.location === 'string' ? r.headers.location : undefined;
        return { status: r.status, body: r.body, ...(location !== undefined ? { location } : {}) };
      }
      case 'mfa':
        return this.throughMfa(c, url);
      case 'no-session':
        return this.anonymous.send('GET', url, { headers: { accept: 'application/json' } });
      case 'forged-assertion':
        return c.get(url, { 'x-nevertrust-jwt-assertion': await this.forgedAssertion() });
      case 'sign-out':
        return this.signOutAndIn(step.who as Person, c);
    }
  }

  /**
   * alice opens `url`; when the proxy asks for a second factor she enrolls TOTP (the first time,
   * with her enrollment link) and answers the challenge with a code, as a person with an
   * authenticator app does. Ends on the page she asked for.
   */
  private async throughMfa(c: PersonClient, url: string): Promise<StepAnswer> {
    let page = await c.signIn(url, 'alice', this.credentials.alice);
    if (new URL(page.url).pathname !== MFA_CHALLENGE_PATH) return page;
    if (!this.aliceTotp) {
      const enrolled = await this.enrollTotp(c);
      if (enrolled) return enrolled;
      page = await c.get(url);
      if (new URL(page.url).pathname !== MFA_CHALLENGE_PATH) return page;
    }
    return this.answerChallenge(c, page);
  }

  /** Submits `form` of `page` with `fields` added, following the answer's redirects. */
  private submit(c: PersonClient, page: PersonResponse, form: ParsedForm, fields: Record<string, string>) {
    return c.navigate('POST', new URL(form.action || page.url, page.url).toString(), {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ ...form.fields, ...fields }).toString(),
    });
  }

  /**
   * alice's TOTP enrollment through the proxy's pages: her one-time link, "set up an authenticator
   * app", the secret read from the setup page (as a person types it into an app), the first code to
   * confirm. Resolves undefined when enrolled, else what went wrong.
   */
  private async enrollTotp(c: PersonClient): Promise<StepAnswer | undefined> {
    const manage = await c.get(this.enrollLink('alice'));
    const add = parseForms(manage.body).find((f) => f.action.endsWith('/totp'));
    if (!add) return { status: manage.status, body: manage.body, detail: 'no "add an authenticator app" form' };
    const setup = await this.submit(c, manage, add, { name: 'Phone (nevertrust up)' });
    const secret = /data-secret="([A-Z2-7]+)"/.exec(setup.body)?.[1];
    const confirm = parseForms(setup.body).find((f) => f.action.endsWith('/totp/confirm'));
    if (!secret || !confirm) return { status: setup.status, body: setup.body, detail: 'no TOTP secret shown' };
    const totp = { secret, lastStep: -1 };
    const { code, step } = await this.nextCode(totp);
    const done = await this.submit(c, setup, confirm, { code });
    if (parseForms(done.body).some((f) => f.action.endsWith('/totp/confirm')))
      return { status: done.status, body: done.body, detail: 'the first TOTP code was refused' };
    totp.lastStep = step;
    this.aliceTotp = totp;
    return undefined;
  }

  /** Answers the MFA challenge `page` with TOTP; a refused code (its step used already) is retried once with the next. */
  private async answerChallenge(c: PersonClient, page: PersonResponse): Promise<StepAnswer> {
    const totp = this.aliceTotp as { secret: string; lastStep: number };
    let at = page;
    for (let attempt = 0; attempt < 2; attempt++) {
      const form = parseForms(at.body).find((f) => f.fields.kind === 'totp');
      if (!form) return { status: at.status, body: at.body, detail: 'no TOTP form on the MFA challenge' };
      const { code, step } = await this.nextCode(totp);
      totp.lastStep = step;
      at = await this.submit(c, at, form, { code });
      if (new URL(at.url).pathname !== MFA_CHALLENGE_PATH) return at;
    }
    return { status: at.status, body: at.body, detail: 'the MFA challenge refused two codes' };
  }

  /** The code of the first time step not used yet: now's, else the next (the proxy accepts ±1 step). */
  private async nextCode(totp: { secret: string; lastStep: number }): Promise<{ code: string; step: number }> {
    const now = Math.floor(Date.now() / 1000 / 30);
    const step = Math.max(now, totp.lastStep + 1);
    // Two steps ahead is outside the window: wait for time to catch up (only when steps come faster than 30 s).
    if (step > now + 1) await new Promise((r) => setTimeout(r, (step - 1) * 30_000 - Date.now() + 100));
    const generator = new TOTP({ secret: Secret.fromBase32(totp.secret), algorithm: 'SHA1', digits: 6, period: 30 });
    return { code: generator.generate({ timestamp: step * 30_000 }), step };
  }

  /** An assertion claiming alice in `admins`, signed with a key nobody registered. */
  private async forgedAssertion(): Promise<string> {
    const { privateKey } = await generateKeyPair('ES256');
    return new SignJWT({ email: PEOPLE.alice.email, groups: PEOPLE.alice.groups, amr: ['pwd'] })
      .setProtectedHeader({ alg: 'ES256', typ: 'nevertrust-person+jwt', kid: 'forged' })
      .setSubject('alice')
      .setIssuer(this.proxyId)
      .setAudience(`https://${BACKOFFICE_HOST}`)
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(privateKey);
  }

  /**
   * Signs out through the proxy's form (and confirms at the provider, ending its session too), checks
   * that the old session is refused, and signs in again through the login form.
   */
  private async signOutAndIn(who: Person, c: PersonClient): Promise<StepAnswer> {
    await c.signIn(`${this.url}/`, who, this.credentials[who]);
    const page = await c.send('GET', `${this.url}/.nevertrust/sign_out`);
    const form = parseForm(page.body);
    if (!form) return { status: page.status, body: page.body, detail: 'no sign-out form' };
    let end: PersonResponse = await c.navigate('POST', new URL(form.action, `${this.url}/`).toString(), {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form.fields).toString(),
    });
    // The provider asks to confirm (a form without script): confirm, as a person would.
    const confirm = new URL(end.url).host !== new URL(this.url).host ? parseForm(end.body) : undefined;
    if (confirm) {
      end = await c.navigate('POST', new URL(confirm.action || end.url, end.url).toString(), {
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ ...confirm.fields, logout: 'yes' }).toString(),
      });
    }
    const after = await c.send('GET', `${this.url}/`, { headers: { accept: 'application/json' } });
    if (after.status !== 401)
      return { status: after.status, body: after.body, detail: `after sign-out: ${after.status}, not 401` };
    const again = await c.signIn(`${this.url}/`, who, this.credentials[who]);
    return { status: again.status, body: again.body };
  }

  /**
   * bob signs in from one more browser of his own and keeps one keep-alive connection open through
   * the proxy, a request every 2 s: a live session for a person to revoke (`nevertrust revoke
   * session ID`), which the proxy then cuts. His other browser's traffic is not affected.
   */
  async openLive(): Promise<LiveSession> {
    const ca = readFileSync(join(this.dir, 'ca.pem'), 'utf8');
    const c = new PersonClient({ ca });
    try {
      await c.signIn(`${this.url}/`, 'bob', this.credentials.bob);
      const cookie = LiveSession.cookieOf(c.cookies(BACKOFFICE_HOST));
      if (!cookie) throw new Error('bob signed in but holds no session cookie');
      this.live?.stop();
      this.live = await LiveSession.open({ origin: this.url, cookie, ca, store: this.o.server.store });
      return this.live;
    } finally {
      await c.close().catch(() => {});
    }
  }

  /** The server's store (shared with the proxy). */
  get store(): Store {
    return this.o.server.store;
  }

  /** Live sessions in the store (shared with the proxy). */
  activeSessions(): Promise<number> {
    return this.o.server.store.accessSessions.countActive(Date.now(), IDLE_LIFETIME_MS);
  }

  /** The access proxy's decisions in the audit log, allowed, stepped up and denied (counted once each, as they arrive). */
  decisions(): Promise<PeopleDecisions> {
    // One count at a time: two overlapping ones would count the same events twice.
    this.counting = this.counting.then(
      () => this.countDecisions(),
      () => this.countDecisions(),
    );
    return this.counting;
  }

  private async countDecisions(): Promise<PeopleDecisions> {
    const { queryAuditLog } = await import('../audit/index.js');
    let cursor: number | undefined;
    let newest = this.tally.lastSeq;
    outer: for (;;) {
      const page = await queryAuditLog(this.o.server.store, { kind: 'access.decision', limit: 1000, cursor });
      for (const e of page.events) {
        if (e.seq <= this.tally.lastSeq) break outer;
        newest = Math.max(newest, e.seq);
        if (e.enforcer !== ACCESS_PROXY_ENFORCER) continue;
        if (e.outcome === 'allow') this.tally.allow++;
        else if (e.outcome === 'step_up') this.tally.stepUp++;
        else this.tally.deny++;
      }
      if (page.next_cursor === undefined) break;
      cursor = page.next_cursor;
    }
    this.tally.lastSeq = newest;
    return { allow: this.tally.allow, deny: this.tally.deny, stepUp: this.tally.stepUp };
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.live?.stop();
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.unsubscribeBundle?.();
    await this.renewCertificate().catch(() => {}); // lets a restart under way finish first
    await Promise.all([stopChild(this.proxy), stopChild(this.app), this.device.stop()]);
    await Promise.all(
      [...this.clients.values(), ...this.others.values(), this.anonymous].map((c) => c.close().catch(() => {})),
    );
    await this.idp.close();
  }
}
