import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, AuditRecorder, queryAuditLog } from '../../src/audit/index.js';
import type { AccessDecisionEvent } from '../../src/pep/decision.js';
import { type EnforcerOptions, SnapshotHolder, withNevertrust } from '../../src/pep/middleware/index.js';
import { loadPolicies } from '../../src/policy/index.js';
import { openStore } from '../../src/store/index.js';
import { tempDir } from '../support/tmp.js';
import { id, makePki, type Pki } from './pki.js';

const POLICIES = fileURLToPath(new URL('./fixtures/policies', import.meta.url));
const dir = tempDir();
let pki: Pki;
let url: string;
const events: AccessDecisionEvent[] = [];
const closers: (() => void)[] = [];
const holder = new SnapshotHolder();
let signUser: (sub: string) => Promise<string>;

beforeAll(async () => {
  pki = await makePki(dir);
  holder.set(loadPolicies(POLICIES));
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
  const idp = createServer((_q, s) => s.end(JSON.stringify({ keys: [jwk] })));
  await new Promise<void>((r) => idp.listen(0, '127.0.0.1', () => r()));
  const idpUrl = `http://127.0.0.1:${(idp.address() as AddressInfo).port}`;
  closers.push(() => idp.close());
  signUser = (sub) =>
    new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setSubject(sub)
      .setIssuer(idpUrl)
      .setAudience('payments')
      .setExpirationTime('5m')
      .sign(privateKey);
  url = await serve(
    {
      jwtSvidAudience: 'payment-service',
      oidc: { issuer: idpUrl, audience: 'payments', jwksUri: `${idpUrl}/jwks`, algorithms: ['ES256'] },
      recorder: { record: (e) => events.push(e) },
    },
    '0.0.0.0',
  );
});
afterAll(() => {
  for (const c of closers) c();
});

/**
 * payment-service behind the middleware (XFCC trusted from 127.0.0.1), answering with the verified
 * identity; `extra` adds to or overrides the options. Closed after the file.
 */
async function serve(extra: Partial<EnforcerOptions>, host = '127.0.0.1'): Promise<string> {
  const server = createServer(
    withNevertrust(
      {
        target: id('payment-service'),
        snapshot: holder.get,
        bundles: pki.bundle(),
        // Listed with xfcc-uri: this proxy is one that sends a bare XFCC URI (an address alone would mean certificates only).
        trustedProxies: [{ address: '127.0.0.1', identity: ['xfcc-uri'] }],
        ...extra,
      },
      (req, res) => res.end(JSON.stringify(req.nevertrust.identity)),
    ),
  );
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  closers.push(() => server.close());
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function call(
  method: string,
  path: string,
  headers: Record<string, string> = {},
  localAddress = '127.0.0.1',
  base = url,
) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const u = new URL(base);
    const r = request({ host: u.hostname, port: u.port, method, path, headers, localAddress }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    r.on('error', reject);
    r.end();
  });
}

const xfcc = (name: string) => ({ 'x-forwarded-client-cert': `By=${id('payment-service')};URI=${id(name)}` });

describe('nevertrust/middleware (node:http)', () => {
  it('XFCC from a trusted proxy; forged XFCC from elsewhere ignored and recorded; raw path reaches policy', async () => {
    const ok = await call('POST', '/v1/charges', xfcc('api-gateway'));
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toEqual({ kind: 'xfcc', spiffeId: id('api-gateway') });
    const denied = await call('GET', '/v1/charges', xfcc('api-gateway'));
    expect(denied.status).toBe(403);
    expect(Object.keys(JSON.parse(denied.body)).sort()).toEqual(['decision_id', 'error']);
    expect((await call('POST', '/v1/charges/../admin', xfcc('api-gateway'))).status).toBe(403);
    expect((await call('POST', '/v1/charges/%2e%2e/admin', xfcc('api-gateway'))).status).toBe(403);
    expect((await call('POST', '/v1/charges', xfcc('audit-service'))).status).toBe(403);
    const forged = await call('POST', '/v1/charges', xfcc('api-gateway'), '127.0.0.2');
    expect(forged.status).toBe(401);
    const ev = events.find((e) => e.decision_id === JSON.parse(forged.body).decision_id);
    expect(ev?.details?.ignored_identity_headers).toEqual(['x-forwarded-client-cert']);
    expect((await call('POST', '/v1/charges')).status).toBe(401);
  });

  it('JWT-SVID bearer and user JWT from an issuer JWKS; bad tokens are 401', async () => {
    const jwt = await pki.ca.mintJwtSvid({ spiffeId: id('api-gateway'), audience: 'payment-service' });
    const ok = await call('POST', '/v1/refunds', { authorization: `Bearer ${jwt.token}` });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body).kind).toBe('jwt-svid');
    const wrongAud = await pki.ca.mintJwtSvid({ spiffeId: id('api-gateway'), audience: 'other' });
    expect((await call('POST', '/v1/refunds', { authorization: `Bearer ${wrongAud.token}` })).status).toBe(401);
    // A user JWT verifies, but no policy lets users call payment-service: 403.
    const user = await signUser('alice');
    const r = await call('POST', '/v1/charges', { authorization: `Bearer ${user}` });
    expect(r.status).toBe(403);
    expect((await call('POST', '/v1/charges', { authorization: `Bearer ${user}x` })).status).toBe(401);
  });

  it('no snapshot in force denies everything', async () => {
    const saved = holder.get();
    holder.set(undefined);
    expect((await call('POST', '/v1/charges', xfcc('api-gateway'))).status).toBe(403);
    holder.set(saved);
  });
  it('an AuditRecorder takes decision records as they are: every decision stored, an oversized one clipped', async () => {
    const dataDir = tempDir();
    const store = await openStore({ dataDir });
    const log = await AuditLog.open(store, { dataDir });
    const recorder = new AuditRecorder({ sink: { append: (e) => log.append(e) }, spillDir: join(dataDir, 'spill') });
    const base = await serve({ recorder });
    const send = (method: string, path: string, headers: Record<string, string>) =>
      call(method, path, headers, '127.0.0.1', base);
    try {
      expect((await send('POST', '/v1/charges', xfcc('api-gateway'))).status).toBe(200);
      const long = await send('POST', `/v1/charges/${'a'.repeat(5000)}`, xfcc('api-gateway'));
      expect(long.status).toBe(403);
      expect((await send('POST', '/v1/charges', xfcc('audit-service'))).status).toBe(403);
      await recorder.flush();
      expect(recorder.stats()).toMatchObject({ shipped: 3, rejected: 0, lost: 0 });
      const { events: stored } = await queryAuditLog(store, { kind: 'access.decision' });
      expect(stored.map((e) => e.outcome).sort()).toEqual(['allow', 'deny', 'deny']);
      const clipped = stored.find((e) => e.decision_id === JSON.parse(long.body).decision_id);
      expect(clipped?.target?.path).toHaveLength(2048);
      expect(clipped?.target?.path?.endsWith('…')).toBe(true);
      expect(clipped).toMatchObject({ enforcer: 'middleware', source: { spiffe_id: id('api-gateway') } });
    } finally {
      await recorder.close();
      await log.close();
      await store.close();
    }
  });
});
