/**
 * The sidecar vouches for each caller to its app with a signed identity assertion: the app gets
 * `x-nevertrust-assertion`, verifies it against the JWKS the server publishes for this sidecar,
 * and a client can never supply its own.
 */
import { createServer, type Server } from 'node:http';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certificatesToPem } from '../../src/ca/index.js';
import { assertionKeySet, verifyIdentityAssertion } from '../../src/pep/assertion.js';
import { MemorySvidSource } from '../../src/pep/mtls/index.js';
import { type RunningSidecar, SidecarConfigSchema, startSidecar } from '../../src/pep/sidecar/index.js';
import type { RunningServer } from '../../src/server/index.js';
import type { caPlugin } from '../../src/server/plugins/ca.js';
import { startAssertionServer } from './assertion-server.js';

const TD = 'example.org';
const id = (name: string) => `spiffe://${TD}/ns/payments/sa/${name}`;
const POLICIES = new URL('./fixtures/policies', import.meta.url).pathname;

let server: RunningServer;
let ca: ReturnType<typeof caPlugin>;
let sidecar: RunningSidecar;
let app: Server;
let client: Pool;
const seen: Record<string, string | undefined>[] = [];

function svid(name: string, dnsNames: string[] = []) {
  const m = ca.handle.current().mintX509Svid({ spiffeId: id(name), dnsNames, ttlSeconds: 3600 });
  return {
    spiffeId: id(name),
    certChainPem: certificatesToPem(m.chain),
    privateKeyPem: m.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
  };
}

beforeAll(async () => {
  let agentUrl: string;
  ({ server, ca, agentUrl } = await startAssertionServer(TD));
  app = createServer((req, res) => {
    req.resume();
    seen.push({
      assertion: req.headers['x-nevertrust-assertion'] as string | undefined,
      peer: req.headers['x-nevertrust-peer-id'] as string | undefined,
    });
    res.end('ok');
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  const bundle = ca.handle.current().bundle();
  sidecar = await startSidecar(
    SidecarConfigSchema.parse({
      svid: { workload_api: 'unused' },
      policies: POLICIES,
      inbound: {
        listen: '127.0.0.1:0',
        app: `127.0.0.1:${(app.address() as { port: number }).port}`,
        assertion: { server: agentUrl, ttl_seconds: 30 },
      },
    }),
    { source: new MemorySvidSource(svid('payment-service', ['localhost']), [bundle]) },
  );
  const gw = svid('api-gateway');
  client = new Pool(`https://127.0.0.1:${sidecar.inboundPort}`, {
    connect: { cert: gw.certChainPem, key: gw.privateKeyPem, ca: bundle.toPem(), servername: 'localhost' },
  });
}, 60_000);

afterAll(async () => {
  await client?.close();
  await sidecar?.close();
  app?.close();
  await server?.close();
});

describe('sidecar identity assertions', () => {
  it('the app gets a token it can verify against the server JWKS; a client-supplied one never passes', async () => {
    const forged = 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy9ucy9wYXltZW50cy9zYS9hZG1pbiJ9.';
    for (let i = 0; i < 3; i++) {
      const r = await client.request({
        path: '/v1/charges',
        method: 'POST',
        body: '{}',
        headers: { 'x-nevertrust-assertion': forged },
      });
      await r.body.text();
      expect(r.statusCode).toBe(200);
    }
    expect(seen).toHaveLength(3);
    const token = seen[0]?.assertion as string;
    expect(token).toBeDefined();
    expect(token).not.toBe(forged);
    // Cached per caller: the same token for requests within half its lifetime.
    expect(seen.every((s) => s.assertion === token)).toBe(true);
    const v = await verifyIdentityAssertion(token, assertionKeySet(server.url, id('payment-service')), {
      issuer: id('payment-service'),
    });
    expect(v.subject).toBe(id('api-gateway'));

    // The forged token from the client fails verification, as it should if it ever got through.
    await expect(
      verifyIdentityAssertion(forged, assertionKeySet(server.url, id('payment-service')), {
        issuer: id('payment-service'),
      }),
    ).rejects.toThrow();
  });

  it('a denied request reaches neither the app nor the signer', async () => {
    const before = seen.length;
    const r = await client.request({ path: '/v1/charges', method: 'GET' });
    await r.body.text();
    expect(r.statusCode).toBe(403);
    expect(seen.length).toBe(before);
  });
});
