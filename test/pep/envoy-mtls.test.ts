/**
 * The Envoy ext_authz gRPC port over mTLS: it presents the server's SVID, and only the configured
 * callers (Envoy's SPIFFE IDs) may ask. Everyone else fails the handshake or gets a gRPC error —
 * never a decision — and the refusal is recorded.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority, certificatesToPem, Kek, MemoryCaStateStore } from '../../src/ca/index.js';
import { configSchema } from '../../src/config/index.js';
import { type CheckResponse, envoyAuthPackage } from '../../src/pep/envoy.js';
import { type RunningServer, type ServerEvent, startServer } from '../../src/server/index.js';
import { caPlugin } from '../../src/server/plugins/ca.js';
import { decisionPlugin } from '../../src/server/plugins/decision.js';
import { policyPlugin } from '../../src/server/plugins/policy.js';
import { createLogger } from '../../src/util/logger.js';
import { tempDir } from '../support/tmp.js';

const TD = 'example.org';
const id = (name: string, td = TD) => `spiffe://${td}/ns/payments/sa/${name}`;
const ENVOY = id('envoy');
const POLICIES = new URL('./fixtures/policies', import.meta.url).pathname;

let server: RunningServer;
let ca: ReturnType<typeof caPlugin>;
let plugin: ReturnType<typeof decisionPlugin>;
const events: ServerEvent[] = [];

beforeAll(async () => {
  ca = caPlugin();
  const policy = policyPlugin();
  plugin = decisionPlugin({
    policy: policy.handle,
    bundles: () => ca.handle.current().bundle(),
    grpc: { port: 0, mtls: { ca: ca.handle, clients: [ENVOY] } },
  });
  server = await startServer({
    config: configSchema.parse({ data_dir: tempDir(), trust_domain: TD, server: { port: 0 }, policies: POLICIES }),
    logger: createLogger('silent'),
    plugins: [
      ca,
      policy,
      plugin,
      { name: 'capture', register: (ctx) => void ctx.events.on('event', (e) => events.push(e)) },
    ],
  });
});
afterAll(async () => {
  await server?.close();
});

function pair(authority: CertificateAuthority, spiffeId: string) {
  const m = authority.mintX509Svid({ spiffeId, ttlSeconds: 600 });
  return {
    cert: Buffer.from(certificatesToPem(m.chain)),
    key: Buffer.from(m.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string),
  };
}

function check(creds: grpc.ChannelCredentials): Promise<CheckResponse> {
  const Authorization = envoyAuthPackage().Authorization as grpc.ServiceClientConstructor;
  const client = new Authorization(`localhost:${plugin.grpcPort()}`, creds);
  const attributes = {
    source: { principal: id('api-gateway') },
    destination: { principal: id('payment-service') },
    request: { http: { method: 'POST', path: '/v1/charges' } },
  };
  return new Promise((resolve, reject) => {
    (
      client as unknown as { Check: (r: unknown, o: unknown, cb: (e: Error | null, r: CheckResponse) => void) => void }
    ).Check({ attributes }, { deadline: Date.now() + 5000 }, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res);
    });
  });
}

const roots = () => Buffer.from(ca.handle.current().bundle().toPem());

describe('Envoy ext_authz over mTLS', () => {
  it('the configured caller gets decisions; the server presents its own SPIFFE ID', async () => {
    const envoy = pair(ca.handle.current(), ENVOY);
    const res = await check(grpc.credentials.createSsl(roots(), envoy.key, envoy.cert));
    expect(res.status.code).toBe(0);
  });

  it('refuses a plaintext client, a client without a certificate and one from another trust domain', async () => {
    await expect(check(grpc.credentials.createInsecure())).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    await expect(check(grpc.credentials.createSsl(roots()))).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    const other = await CertificateAuthority.open({
      trustDomain: 'evil.example',
      store: new MemoryCaStateStore(),
      kek: Kek.fromBytes(Buffer.alloc(32, 7)),
    });
    const evil = pair(other, id('envoy', 'evil.example'));
    await expect(check(grpc.credentials.createSsl(roots(), evil.key, evil.cert))).rejects.toMatchObject({
      code: grpc.status.UNAVAILABLE,
    });
  });

  it('a workload of the trust domain that is not a configured caller gets PERMISSION_DENIED, recorded', async () => {
    const gw = pair(ca.handle.current(), id('api-gateway'));
    await expect(check(grpc.credentials.createSsl(roots(), gw.key, gw.cert))).rejects.toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
      details: 'ERR_PEER_UNAUTHORIZED',
    });
    expect(
      events.some(
        (e) => e.kind === 'access.decision' && e.outcome === 'deny' && /ext_authz caller refused/.test(e.reason),
      ),
    ).toBe(true);
  });
});
