import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/index.js';
import { discoverTransmitter, ssfWellKnownUrl } from '../../src/signals/ssf/discovery.js';
import { SsfError } from '../../src/signals/ssf/errors.js';

describe('SSF transmitter discovery', () => {
  it('puts the well-known segment between host and issuer path (SSF 1.0 §7.1)', () => {
    expect(ssfWellKnownUrl('https://tx.example')).toBe('https://tx.example/.well-known/ssf-configuration');
    expect(ssfWellKnownUrl('https://tx.example/')).toBe('https://tx.example/.well-known/ssf-configuration');
    expect(ssfWellKnownUrl('https://tx.example/tenants/t1')).toBe(
      'https://tx.example/.well-known/ssf-configuration/tenants/t1',
    );
    expect(() => ssfWellKnownUrl('http://tx.example')).toThrow(SsfError);
    expect(ssfWellKnownUrl('http://127.0.0.1:9/t')).toBe('http://127.0.0.1:9/.well-known/ssf-configuration/t');
  });

  it('refuses a document naming another issuer, or an http jwks_uri off localhost', async () => {
    let doc: Record<string, unknown> = {};
    const srv = createServer((req, res) => {
      res.writeHead(req.url === '/.well-known/ssf-configuration/t1' ? 200 : 404, {
        'content-type': 'application/json',
      });
      res.end(JSON.stringify(doc));
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const issuer = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/t1`;
    try {
      doc = { issuer, jwks_uri: `${issuer}/jwks` };
      expect((await discoverTransmitter(issuer)).jwks_uri).toBe(`${issuer}/jwks`);
      doc = { issuer: 'https://evil.example', jwks_uri: `${issuer}/jwks` };
      await expect(discoverTransmitter(issuer)).rejects.toMatchObject({ code: 'ERR_SSF_DISCOVERY' });
      doc = { issuer, jwks_uri: 'http://keys.example/jwks' };
      await expect(discoverTransmitter(issuer)).rejects.toThrow(/jwks_uri/);
      await expect(discoverTransmitter(`${issuer}x`)).rejects.toThrow(/answered 404/);
    } finally {
      await new Promise<void>((r) => srv.close(() => r()));
    }
  });
});

describe('signals.ssf configuration', () => {
  const receiver = { name: 'idp', issuer: 'https://idp.example', audience: 'https://nt.example' };
  it('fills defaults and refuses duplicate names, names that are not a path segment, and unknown keys', () => {
    const ok = configSchema.parse({ signals: { ssf: { receivers: [receiver] } } });
    expect(ok.signals.ssf.receivers[0]).toMatchObject({ delivery: 'push', max_age: 300, create_stream: true });
    expect(() => configSchema.parse({ signals: { ssf: { receivers: [receiver, receiver] } } })).toThrow(/unique/);
    expect(() => configSchema.parse({ signals: { ssf: { receivers: [{ ...receiver, name: '../x' }] } } })).toThrow(
      /path segment/,
    );
    expect(() => configSchema.parse({ signals: { ssf: { receivers: [{ ...receiver, isuer: 'x' }] } } })).toThrow();
    expect(() =>
      configSchema.parse({ signals: { ssf: { receivers: [{ ...receiver, issuer: 'ftp://idp.example' }] } } }),
    ).toThrow();
  });
});
