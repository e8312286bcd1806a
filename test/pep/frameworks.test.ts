/**
 * The middleware inside real Express and Fastify apps, served over mTLS with SVIDs: the framework
 * handler runs only for allowed requests and sees the verified caller; refusals carry a reason
 * code and the decision id; every decision is recorded.
 */
import type { Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AccessDecisionEvent } from '../../src/pep/decision.js';
import {
  type EnforcedRequest,
  expressMiddleware,
  fastifyHook,
  SnapshotHolder,
} from '../../src/pep/middleware/index.js';
import { authorizeAny, createMtlsServer, MemorySvidSource } from '../../src/pep/mtls/index.js';
import { loadPolicies } from '../../src/policy/index.js';
import { tempDir } from '../support/tmp.js';
import { id, makePki, type Pki, type Svid } from './pki.js';

const POLICIES = fileURLToPath(new URL('./fixtures/policies', import.meta.url));
const dir = tempDir();
let pki: Pki;
let expressServer: Server;
let fastify: FastifyInstance;
const events: AccessDecisionEvent[] = [];
const handled: string[] = [];
const holder = new SnapshotHolder();

beforeAll(async () => {
  pki = await makePki(dir);
  holder.set(loadPolicies(POLICIES));
  const ps = pki.ca.mintX509Svid({ spiffeId: id('payment-service'), dnsNames: ['localhost'] });
  const source = new MemorySvidSource(
    {
      spiffeId: id('payment-service'),
      certChainPem: (await import('../../src/ca/index.js')).certificatesToPem(ps.chain),
      privateKeyPem: ps.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    },
    [pki.bundle()],
  );
  const opts = {
    target: id('payment-service'),
    snapshot: holder.get,
    bundles: source,
    recorder: { record: (e: AccessDecisionEvent) => events.push(e) },
  };

  const app = express();
  app.use(expressMiddleware(opts));
  app.post('/v1/charges', (req, res) => {
    handled.push('express');
    res.json({ framework: 'express', caller: (req as unknown as EnforcedRequest).nevertrust.identity.spiffeId });
  });
  expressServer = createMtlsServer(source, { authorize: authorizeAny() }, app);
  await new Promise<void>((r) => expressServer.listen(0, '127.0.0.1', () => r()));

  fastify = Fastify({
    serverFactory: (handler) => createMtlsServer(source, { authorize: authorizeAny() }, handler),
  });
  fastify.addHook('onRequest', fastifyHook(opts));
  fastify.post('/v1/charges', async (req) => {
    handled.push('fastify');
    return { framework: 'fastify', caller: (req.raw as EnforcedRequest).nevertrust.identity.spiffeId };
  });
  await fastify.listen({ port: 0, host: '127.0.0.1' });
});

afterAll(async () => {
  expressServer?.close();
  await fastify?.close();
});

function client(port: number, svid: Svid) {
  return new Pool(`https://127.0.0.1:${port}`, {
    connect: { cert: svid.certChainPem, key: svid.privateKeyPem, ca: pki.bundle().toPem(), servername: 'localhost' },
  });
}

async function call(pool: Pool, method: 'GET' | 'POST', path: string, headers: Record<string, string> = {}) {
  const body = method === 'POST' ? '{}' : undefined;
  const r = await pool.request({
    method,
    path,
    headers: { ...headers, ...(body ? { 'content-type': 'application/json' } : {}) },
    body,
  });
  const text = await r.body.text();
  return {
    status: r.statusCode,
    json: JSON.parse(text) as Record<string, unknown>,
    decisionId: r.headers['x-nevertrust-decision-id'],
  };
}

const ports = () => ({
  express: (expressServer.address() as AddressInfo).port,
  fastify: (fastify.server.address() as AddressInfo).port,
});

describe.each(['express', 'fastify'] as const)('nevertrust/middleware in %s over mTLS', (framework) => {
  it('runs the handler only for allowed requests, with the verified caller', async () => {
    const gw = client(ports()[framework], pki.mint('api-gateway'));
    const before = handled.length;
    const eventsBefore = events.length;
    try {
      // A forged identity header on an mTLS connection changes nothing: the certificate decides.
      const ok = await call(gw, 'POST', '/v1/charges', { 'x-forwarded-client-cert': `URI=${id('admin')}` });
      expect(ok.status).toBe(200);
      expect(ok.json).toEqual({ framework, caller: id('api-gateway') });

      const denied = await call(gw, 'GET', '/v1/charges');
      expect(denied.status).toBe(403);
      expect(denied.json).toEqual({ error: 'forbidden', decision_id: denied.decisionId });

      const trick = await call(gw, 'POST', '/v1/charges/../admin');
      expect(trick.status).toBe(403);
      const encoded = await call(gw, 'POST', '/v1/charges/%2e%2e/admin');
      expect(encoded.status).toBe(403);
    } finally {
      await gw.close();
    }
    const other = client(ports()[framework], pki.mint('audit-service'));
    try {
      const wrongCaller = await call(other, 'POST', '/v1/charges');
      expect(wrongCaller.status).toBe(403);
    } finally {
      await other.close();
    }
    expect(handled.slice(before)).toEqual([framework]);
    const mine = events.slice(eventsBefore);
    expect(mine).toHaveLength(5);
    expect(mine.map((e) => e.outcome)).toEqual(['allow', 'deny', 'deny', 'deny', 'deny']);
  });
});
