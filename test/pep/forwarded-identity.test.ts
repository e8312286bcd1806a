/**
 * Forwarded identity (X-Client-Cert, XFCC) is believed only from a proxy listed as sending it, in the
 * form it is listed with: certificates by default, a bare XFCC URI only when configured per proxy.
 * Real certificates, a real decision listener (the agent's) and the real config loader.
 */
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, configSchema, loadConfig } from '../../src/config/index.js';
import { identityFromProxyHeaders, TrustedProxies } from '../../src/pep/identity.js';
import { loadPolicies } from '../../src/policy/index.js';
import { type RunningDecisionListener, startDecisionListener } from '../../src/server/decision-listener.js';
import type { ServerEvent } from '../../src/server/index.js';
import { createLogger } from '../../src/util/logger.js';
import { tempDir } from '../support/tmp.js';
import { id, makePki, type Pki } from './pki.js';

const POLICIES = fileURLToPath(new URL('./fixtures/policies', import.meta.url));
const PAYMENT = id('payment-service');
const dir = tempDir();
let pki: Pki;
beforeAll(async () => {
  pki = await makePki(dir);
});

/** What a verified forwarded certificate adds: its leaf's serial and notBefore (for revocation checks). */
const leafOf = (pem: string) => {
  const leaf = new X509Certificate(pem);
  return { serial: leaf.serialNumber, notBeforeMs: Date.parse(leaf.validFrom) };
};
const bareUri = (name: string) => `By=${PAYMENT};Hash=abc;URI=${id(name)}`;
const withCert = (pem: string, name: string) => `By=${PAYMENT};Cert="${encodeURIComponent(pem)}";URI=${id(name)}`;

describe('identityFromProxyHeaders: forms per trusted proxy', () => {
  it('an address alone is trusted for certificates, never for a bare XFCC URI', () => {
    const trust = { proxies: new TrustedProxies(['127.0.0.1']), bundles: pki.bundle() };
    const gw = pki.mint('api-gateway').certChainPem;
    expect(identityFromProxyHeaders({ 'x-forwarded-client-cert': bareUri('api-gateway') }, '127.0.0.1', trust)).toEqual(
      {
        kind: 'invalid',
        reason: expect.stringMatching(/^xfcc_no_cert/),
      },
    );
    expect(
      identityFromProxyHeaders({ 'x-forwarded-client-cert': withCert(gw, 'api-gateway') }, '127.0.0.1', trust),
    ).toEqual({ kind: 'ok', spiffeId: id('api-gateway'), via: 'xfcc', verified: true, ...leafOf(gw) });
    // The certificate decides, not the URI beside it.
    expect(
      identityFromProxyHeaders({ 'x-forwarded-client-cert': withCert(gw, 'admin') }, '::ffff:127.0.0.1', trust),
    ).toMatchObject({ kind: 'ok', spiffeId: id('api-gateway') });
    expect(identityFromProxyHeaders({ 'x-client-cert': encodeURIComponent(gw) }, '127.0.0.1', trust)).toEqual({
      kind: 'ok',
      spiffeId: id('api-gateway'),
      via: 'x-client-cert',
      verified: true,
      ...leafOf(gw),
    });
    // A certificate of another trust domain is refused, not believed.
    const foreign = pki.mint('api-gateway', { other: true }).certChainPem;
    expect(identityFromProxyHeaders({ 'x-client-cert': encodeURIComponent(foreign) }, '127.0.0.1', trust).kind).toBe(
      'invalid',
    );
  });

  it('a bare URI only from a proxy listed with xfcc-uri; a header a proxy is not listed for is ignored', () => {
    const proxies = new TrustedProxies([
      { address: '10.0.0.0/24', identity: ['xfcc-uri'] },
      { address: '10.0.1.1', identity: ['x-client-cert'] },
      '10.0.2.1',
    ]);
    const trust = { proxies, bundles: pki.bundle() };
    const gw = encodeURIComponent(pki.mint('api-gateway').certChainPem);
    expect(identityFromProxyHeaders({ 'x-forwarded-client-cert': bareUri('api-gateway') }, '10.0.0.7', trust)).toEqual({
      kind: 'ok',
      spiffeId: id('api-gateway'),
      via: 'xfcc',
      verified: false,
    });
    expect(
      identityFromProxyHeaders({ 'x-forwarded-client-cert': bareUri('api-gateway') }, '10.0.2.1', trust).kind,
    ).toBe('invalid');
    // nginx listed for X-Client-Cert: an XFCC it passed on from its client is not an identity.
    expect(identityFromProxyHeaders({ 'x-forwarded-client-cert': bareUri('api-gateway') }, '10.0.1.1', trust)).toEqual({
      kind: 'none',
      ignored: ['x-forwarded-client-cert'],
    });
    expect(
      identityFromProxyHeaders({ 'x-client-cert': gw, 'x-forwarded-client-cert': bareUri('admin') }, '10.0.1.1', trust),
    ).toEqual({
      kind: 'ok',
      spiffeId: id('api-gateway'),
      via: 'x-client-cert',
      verified: true,
      ...leafOf(decodeURIComponent(gw)),
      ignored: ['x-forwarded-client-cert'],
    });
    // A proxy listed only for a bare XFCC URI does not send X-Client-Cert.
    expect(identityFromProxyHeaders({ 'x-client-cert': gw }, '10.0.0.7', trust)).toEqual({
      kind: 'none',
      ignored: ['x-client-cert'],
    });
    // Not a proxy at all: both ignored.
    expect(
      identityFromProxyHeaders({ 'x-client-cert': gw, 'x-forwarded-client-cert': bareUri('a') }, '10.9.9.9', trust),
    ).toEqual({ kind: 'none', ignored: ['x-client-cert', 'x-forwarded-client-cert'] });
  });
});

describe('decision.trusted_proxies in the configuration', () => {
  it('takes addresses and {address, identity} entries; the default is loopback, certificates only', () => {
    const f = join(dir, 'proxies.yaml');
    writeFileSync(
      f,
      'decision:\n  trusted_proxies:\n    - 10.0.1.1\n    - { address: 10.0.0.0/24, identity: [xfcc-uri, xfcc-cert] }\n',
    );
    expect(loadConfig({ env: {}, file: f }).decision.trusted_proxies).toEqual([
      { address: '10.0.1.1' },
      { address: '10.0.0.0/24', identity: ['xfcc-uri', 'xfcc-cert'] },
    ]);
    expect(configSchema.parse({}).decision.trusted_proxies).toEqual([
      { address: '127.0.0.1/32' },
      { address: '::1/128' },
    ]);
  });

  it('a bad address or form names the file, line and field', () => {
    const bad = (name: string, text: string) => {
      const f = join(dir, name);
      writeFileSync(f, text);
      try {
        loadConfig({ env: {}, file: f });
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return { f, problems: (e as ConfigError).problems };
      }
      throw new Error('expected a ConfigError');
    };
    const a = bad('bad-addr.yaml', 'decision:\n  trusted_proxies:\n    - 127.0.0.1\n    - not-an-ip\n');
    expect(a.problems).toEqual([
      expect.objectContaining({
        file: a.f,
        line: 4,
        field: 'decision.trusted_proxies.1.address',
        message: expect.stringMatching(/not-an-ip.*not an IP address or CIDR/),
      }),
    ]);
    const b = bad('bad-form.yaml', 'decision:\n  trusted_proxies:\n    - { address: 10.0.0.1, identity: [xfcc] }\n');
    expect(b.problems).toEqual([
      expect.objectContaining({
        file: b.f,
        line: 3,
        field: 'decision.trusted_proxies.0.identity.0',
        hint: expect.stringMatching(/xfcc-uri/),
      }),
    ]);
  });
});

describe("the agent's decision listener (anyone on the node can reach it on loopback)", () => {
  const listeners: RunningDecisionListener[] = [];
  const events: ServerEvent[] = [];
  const snapshot = loadPolicies(POLICIES);
  const start = (trustedProxies: unknown) =>
    startDecisionListener({
      host: '127.0.0.1',
      port: 0,
      trustDomain: 'example.org',
      policy: { current: () => snapshot },
      bundles: () => pki.bundle(),
      // As `nevertrust agent` wires it: the configuration's decision.trusted_proxies.
      trustedProxies: configSchema.parse({ decision: { trusted_proxies: trustedProxies } }).decision.trusted_proxies,
      record: (e) => events.push(e),
      logger: createLogger('silent'),
    }).then((l) => {
      listeners.push(l);
      return l;
    });
  afterAll(async () => {
    for (const l of listeners) await l.close();
  });
  const ask = (url: string, headers: Record<string, string>) =>
    new Promise<number>((resolve, reject) => {
      const u = new URL(`${url}/v1/authz/nginx`);
      const r = request({ host: u.hostname, port: u.port, path: u.pathname, headers }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      r.on('error', reject);
      r.end();
    });
  const forged = {
    'x-forwarded-client-cert': bareUri('api-gateway'),
    'x-original-method': 'POST',
    'x-original-uri': '/v1/charges',
    'x-nevertrust-target': PAYMENT,
  };

  it('a local process sending a bare XFCC URI gets no identity by default', async () => {
    const l = await start(undefined);
    const before = events.length;
    expect(await ask(l.url, forged)).toBe(401);
    expect(events.slice(before)).toEqual([
      expect.objectContaining({ outcome: 'deny', reason: expect.stringMatching(/^xfcc_no_cert/) }),
    ]);
    expect(events.at(-1)?.source?.spiffe_id).toBeUndefined();
    // A certificate still works: nginx's X-Client-Cert from loopback.
    const gw = encodeURIComponent(pki.mint('api-gateway').certChainPem);
    const { 'x-forwarded-client-cert': _, ...rest } = forged;
    expect(await ask(l.url, { ...rest, 'x-client-cert': gw })).toBe(200);
  });

  it('a bare XFCC URI is believed when the configuration lists the proxy with xfcc-uri', async () => {
    const l = await start([{ address: '127.0.0.1', identity: ['xfcc-uri'] }]);
    expect(await ask(l.url, forged)).toBe(200);
    expect(events.at(-1)).toMatchObject({ outcome: 'allow', source: { spiffe_id: id('api-gateway') } });
  });
});
