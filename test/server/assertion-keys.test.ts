/**
 * The assertion-key registry on a real server (in process), over real TLS: registration on the agent
 * port authenticated by X.509-SVID, refusals (no certificate, foreign trust domain, expired SVID,
 * private or wrong keys), the public JWKS, caps, kid ownership and purging — on SQLite and PostgreSQL.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { calculateJwkThumbprint } from 'jose';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority, certificatesToPem, Kek, MemoryCaStateStore } from '../../src/ca/index.js';
import { configSchema } from '../../src/config/index.js';
import { ASSERTION_JWKS_PATH, ASSERTION_KEYS_PATH, JWK_OWNER_MEMBER } from '../../src/pep/assertion.js';
import { authorizeId, createMtlsFetch, MemorySvidSource, type MtlsFetch } from '../../src/pep/mtls/index.js';
import { type RunningServer, type ServerEvent, startServer } from '../../src/server/index.js';
import { agentEndpointPlugin, SERVER_SVID_PATH } from '../../src/server/plugins/agent-endpoint.js';
import { assertionKeysPlugin } from '../../src/server/plugins/assertion-keys.js';
import { caPlugin } from '../../src/server/plugins/ca.js';
import { createLogger } from '../../src/util/logger.js';
import { createTestDatabase } from '../support/postgres.js';
import { tempDir } from '../support/tmp.js';

const TD = 'example.org';
const id = (name: string, td = TD) => `spiffe://${td}/ns/payments/sa/${name}`;
const SERVER_ID = `spiffe://${TD}${SERVER_SVID_PATH}`;

function publicJwk() {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pub = publicKey.export({ format: 'jwk' }) as { kty: string; crv: string; x: string; y: string };
  const priv = privateKey.export({ format: 'jwk' }) as { d: string };
  return { jwk: { kty: pub.kty, crv: pub.crv, x: pub.x, y: pub.y }, d: priv.d };
}
const inHours = (h: number) => new Date(Date.now() + h * 3_600_000).toISOString();

const engines = [
  { name: 'sqlite', url: async () => undefined },
  { name: 'postgres', url: async () => createTestDatabase('nt_assert') },
];

describe.each(engines)('assertion keys on $name', ({ url }) => {
  let server: RunningServer;
  let agentPort: number;
  let ca: ReturnType<typeof caPlugin>;
  const events: ServerEvent[] = [];
  const clients: MtlsFetch[] = [];

  beforeAll(async () => {
    ca = caPlugin();
    const keys = assertionKeysPlugin({ ca: ca.handle, maxKeysPerIdentity: 3, purgeIntervalMs: 200 });
    const agent = agentEndpointPlugin({ ca: ca.handle, routes: keys.agentRoutes });
    server = await startServer({
      config: configSchema.parse({
        data_dir: tempDir(),
        trust_domain: TD,
        server: { port: 0, agent_port: 0 },
        database: { url: await url() },
      }),
      logger: createLogger('silent'),
      plugins: [ca, keys, agent],
    });
    server.events.on('event', (e) => events.push(e));
    agentPort = agent.address()?.port ?? 0;
  });
  afterAll(async () => {
    for (const c of clients) await c.close();
    await server?.close();
  });

  /** An mTLS client presenting an SVID minted now (or at `now`) by `authority` (default: the server's CA). */
  function client(
    name: string,
    opts: { authority?: CertificateAuthority; td?: string; now?: Date; ttl?: number } = {},
  ) {
    const authority = opts.authority ?? ca.handle.current();
    const m = authority.mintX509Svid({ spiffeId: id(name, opts.td), ttlSeconds: opts.ttl ?? 3600 }, opts.now);
    const source = new MemorySvidSource(
      {
        spiffeId: id(name, opts.td),
        certChainPem: certificatesToPem(m.chain),
        privateKeyPem: m.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      },
      [ca.handle.current().bundle(), ...(opts.authority ? [opts.authority.bundle()] : [])],
    );
    const f = createMtlsFetch(source, { authorize: authorizeId(SERVER_ID) });
    clients.push(f);
    return f;
  }

  async function registerWith(f: MtlsFetch, body: unknown) {
    const res = await f(`https://127.0.0.1:${agentPort}${ASSERTION_KEYS_PATH}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, text, body: JSON.parse(text) as Record<string, unknown> };
  }

  async function jwks(query = '') {
    const res = await fetch(`${server.url}${ASSERTION_JWKS_PATH}${query}`);
    return { status: res.status, cache: res.headers.get('cache-control'), body: (await res.json()) as Jwks };
  }
  type Jwks = { keys: Record<string, string>[]; error?: string };

  it('registers a public key for the caller SVID: server-computed kid, JWKS entry bound to the SPIFFE ID', async () => {
    const gw = client('payment-service');
    const { jwk } = publicJwk();
    const r = await registerWith(gw, { jwk, expires_at: inHours(2) });
    expect(r.status, r.text).toBe(201);
    const kid = await calculateJwkThumbprint(jwk, 'sha256');
    expect(r.body).toMatchObject({ kid, spiffe_id: id('payment-service') });
    // The same key again (a retry after a lost answer) only refreshes it.
    expect((await registerWith(gw, { jwk, expires_at: inHours(3) })).status).toBe(200);

    const all = await jwks();
    expect(all.status).toBe(200);
    expect(all.cache).toMatch(/^public, max-age=\d+$/);
    const entry = all.body.keys.find((k) => k.kid === kid);
    expect(entry).toEqual({ ...jwk, kid, alg: 'ES256', use: 'sig', [JWK_OWNER_MEMBER]: id('payment-service') });
    expect(all.body.keys.filter((k) => k.kid === kid)).toHaveLength(1);
    const ev = events.find((e) => e.outcome === 'allow' && e.target.id === kid);
    expect(ev).toMatchObject({ kind: 'admin.action', source: { id: id('payment-service') } });
    // Never key material in events beyond the kid.
    expect(JSON.stringify(events)).not.toContain(jwk.x);
  });

  it('refuses a client without a certificate, from another trust domain, or with an expired SVID', async () => {
    const { jwk } = publicJwk();
    const body = JSON.stringify({ jwk, expires_at: inHours(1) });
    const anonymous = new Agent({
      connect: { ca: ca.handle.current().bundle().toPem(), checkServerIdentity: () => undefined },
    });
    const none = await undiciFetch(`https://127.0.0.1:${agentPort}${ASSERTION_KEYS_PATH}`, {
      method: 'POST',
      body,
      dispatcher: anonymous,
    });
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({ error: 'unauthenticated', message: expect.stringMatching(/no client/) });
    await anonymous.close();

    const other = await CertificateAuthority.open({
      trustDomain: 'evil.example',
      store: new MemoryCaStateStore(),
      kek: Kek.fromBytes(randomBytes(32)),
    });
    const foreign = await registerWith(client('payment-service', { authority: other, td: 'evil.example' }), {
      jwk,
      expires_at: inHours(1),
    });
    expect(foreign.status).toBe(401);
    expect(foreign.body.error).toBe('unauthenticated');

    const expired = await registerWith(client('expired', { now: new Date(Date.now() - 2 * 3_600_000), ttl: 600 }), {
      jwk,
      expires_at: inHours(1),
    });
    expect(expired.status).toBe(401);
    expect(String(expired.body.message)).toMatch(/expired|not valid/i);

    const kid = await calculateJwkThumbprint(jwk, 'sha256');
    expect((await jwks()).body.keys.some((k) => k.kid === kid)).toBe(false);
    expect(events.filter((e) => e.outcome === 'deny' && e.reason.includes('assertion key refused')).length).toBe(3);
  });

  it('refuses private members, other curves, extra members, off-curve points, bad lifetimes, big or broken bodies', async () => {
    const f = client('checker');
    const { jwk, d } = publicJwk();
    const priv = await registerWith(f, { jwk: { ...jwk, d }, expires_at: inHours(1) });
    expect(priv.status).toBe(400);
    expect(priv.body.error).toBe('private_key_refused');
    expect(priv.text).not.toContain(d);
    expect(JSON.stringify(events)).not.toContain(d);

    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ format: 'jwk' });
    const curve = await registerWith(f, { jwk: p384, expires_at: inHours(1) });
    expect(curve.status).toBe(400);
    expect(curve.body).toMatchObject({ error: 'invalid_request', message: expect.stringMatching(/^jwk\.crv/) });

    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' });
    expect((await registerWith(f, { jwk: rsa, expires_at: inHours(1) })).body.error).toBe('invalid_request');
    const extra = await registerWith(f, { jwk: { ...jwk, kid: 'mine' }, expires_at: inHours(1) });
    expect(extra.body).toMatchObject({ error: 'invalid_request', message: expect.stringMatching(/kid/) });
    expect((await registerWith(f, { jwk, expires_at: inHours(1), note: 1 })).body.error).toBe('invalid_request');

    const offCurve = await registerWith(f, { jwk: { ...jwk, y: jwk.x }, expires_at: inHours(1) });
    expect(offCurve.body.error).toBe('invalid_jwk');

    expect((await registerWith(f, { jwk, expires_at: inHours(26) })).body.error).toBe('invalid_expiry');
    expect((await registerWith(f, { jwk, expires_at: inHours(-1) })).body.error).toBe('invalid_expiry');
    expect((await registerWith(f, { jwk, expires_at: 'tomorrow' })).body.error).toBe('invalid_request');
    expect((await registerWith(f, { jwk, expires_at: inHours(1), pad: 'x'.repeat(9000) })).status).toBe(413);
    expect((await registerWith(f, '{"jwk":')).body.error).toBe('malformed_json');
    expect((await registerWith(f, '')).body.error).toBe('invalid_request');
    expect((await jwks(`?issuer=${encodeURIComponent(id('checker'))}`)).body.keys).toEqual([]);
  });

  it('JWKS by issuer: only that workload; an invalid issuer is a 400 with the reason', async () => {
    const a = publicJwk().jwk;
    const b = publicJwk().jwk;
    expect((await registerWith(client('api-gateway'), { jwk: a, expires_at: inHours(1) })).status).toBe(201);
    expect((await registerWith(client('audit-service'), { jwk: b, expires_at: inHours(1) })).status).toBe(201);
    const only = await jwks(`?issuer=${encodeURIComponent(id('api-gateway'))}`);
    expect(only.body.keys.map((k) => k.x)).toEqual([a.x]);
    expect(only.body.keys[0]?.[JWK_OWNER_MEMBER]).toBe(id('api-gateway'));
    const all = await jwks();
    expect(all.body.keys.map((k) => k.x)).toEqual(expect.arrayContaining([a.x, b.x]));

    const bad = await jwks('?issuer=https://example.org/x');
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ error: 'invalid_issuer', message: expect.stringMatching(/ERR_SPIFFEID/) });
    expect((await jwks('?issuer=spiffe://example.org/a&issuer=spiffe://example.org/b')).status).toBe(400);
    expect((await jwks(`?issuer=${encodeURIComponent(id('nobody'))}`)).body.keys).toEqual([]);
  });

  it('a kid belongs to one workload; a workload holds at most the cap, the soonest-expiring dropped', async () => {
    const { jwk } = publicJwk();
    expect((await registerWith(client('owner'), { jwk, expires_at: inHours(1) })).status).toBe(201);
    const stolen = await registerWith(client('thief'), { jwk, expires_at: inHours(1) });
    expect(stolen.status).toBe(409);
    expect(stolen.body.error).toBe('kid_in_use');

    const many = client('many');
    const regs = [];
    for (let i = 0; i < 5; i++) {
      const k = publicJwk().jwk;
      // Later registrations expire later; the cap (3 in this test) keeps the newest three.
      expect((await registerWith(many, { jwk: k, expires_at: inHours(1 + i) })).status).toBe(201);
      regs.push(k.x);
    }
    const held = (await jwks(`?issuer=${encodeURIComponent(id('many'))}`)).body.keys.map((k) => k.x);
    expect(held.sort()).toEqual(regs.slice(2).sort());
    expect(events.some((e) => Array.isArray(e.details?.dropped))).toBe(true);
  });

  it('expired keys leave the JWKS and the store', async () => {
    const { jwk } = publicJwk();
    const f = client('short-lived');
    expect((await registerWith(f, { jwk, expires_at: new Date(Date.now() + 1200).toISOString() })).status).toBe(201);
    const q = `?issuer=${encodeURIComponent(id('short-lived'))}`;
    expect((await jwks(q)).body.keys).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 1600));
    expect((await jwks(q)).body.keys).toEqual([]);
    await expect
      .poll(async () => (await server.store.kv.list('assertion_keys')).some((d) => d.key === id('short-lived')))
      .toBe(false);
  });
});
