/**
 * End to end: a decision request carrying secret headers (x-api-key and friends) never puts them in
 * clear into the audit log's database or the server's log — whether sent to the decision API or
 * recorded by an enforcement point that ships its decision with the request's headers.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/index.js';
import { type AccessDecisionEvent, enforce } from '../../src/pep/decision.js';
import { loadPolicies } from '../../src/policy/index.js';
import { readAdminToken, type RunningServer, startServer } from '../../src/server/index.js';
import { type AuditHandle, auditPlugin } from '../../src/server/plugins/audit.js';
import { decisionPlugin } from '../../src/server/plugins/decision.js';
import { policyPlugin } from '../../src/server/plugins/policy.js';
import { createLogger } from '../../src/util/logger.js';
import { tempDir } from '../support/tmp.js';
import { id } from './pki.js';

const POLICIES = fileURLToPath(new URL('./fixtures/policies', import.meta.url));
const SECRET = 'k3y-6f1d2e9a8b7c-should-never-be-stored';
const secretHeaders = {
  'x-api-key': SECRET,
  'api-key': `${SECRET}-2`,
  'x-session-id': `${SECRET}-3`,
  'x-amz-security-token': `${SECRET}-4`,
  'x-request-id': 'req-1',
};

let server: RunningServer;
let audit: ReturnType<typeof auditPlugin>;
const dataDir = tempDir();
let logged = '';

beforeAll(async () => {
  const policy = policyPlugin();
  audit = auditPlugin({ checkpointEvery: 10, checkpointIntervalMs: 0 });
  server = await startServer({
    config: configSchema.parse({ data_dir: dataDir, server: { port: 0, shutdown_timeout: 2 }, policies: POLICIES }),
    logger: createLogger(
      'trace',
      new Writable({
        write(chunk, _enc, cb) {
          logged += chunk;
          cb();
        },
      }),
    ),
    plugins: [policy, decisionPlugin({ policy: policy.handle }), audit],
  });
});
afterAll(async () => {
  await server?.close();
});

/** Every byte under the data dir (database, WAL, segments), as text. */
function everything(dir: string): string {
  let out = '';
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    out += statSync(p).isDirectory() ? everything(p) : readFileSync(p, 'latin1');
  }
  return out;
}

describe('secret headers in decision requests', () => {
  it('reach neither the audit log nor the log in clear', async () => {
    // 1. The decision API, with the secrets as HTTP headers and in the access request's headers.
    const res = await fetch(`${server.url}/v1/decide`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...secretHeaders },
      body: JSON.stringify({
        source: { spiffe_id: id('api-gateway') },
        target: { spiffe_id: id('payment-service') },
        request: { method: 'POST', path: '/v1/charges', headers: secretHeaders },
      }),
    });
    expect(res.status).toBe(200);
    const decisionId = ((await res.json()) as { decision_id: string }).decision_id;

    // 2. An enforcement point that records its decision with the request's headers, shipped to the log.
    const recorded: AccessDecisionEvent[] = [];
    enforce(
      () => loadPolicies(POLICIES),
      {
        source: { spiffe_id: id('api-gateway') },
        target: { spiffe_id: id('payment-service') },
        request: { method: 'POST', path: '/v1/charges' },
      },
      { record: (e) => recorded.push(e) },
      { pep: 'gateway-plugin', details: { 'x-api-key': SECRET, accessKey: `${SECRET}-5` } },
    );
    // As a shipper posts it to the ingestion API (the recorder's own normalization is the same code).
    const shipped = await fetch(`${server.url}/v1/audit/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${readAdminToken(dataDir)}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        events: recorded.map((e) => ({ ...e, details: { ...e.details, headers: secretHeaders } })),
      }),
    });
    expect(shipped.status).toBe(200);

    const log = (audit.handle as AuditHandle).log();
    const all = await Promise.all(Array.from({ length: log.treeSize }, (_, i) => log.get(i)));
    expect(all.some((e) => e?.decision_id === decisionId)).toBe(true);
    const stored = all.find((e) => e?.details?.pep === 'gateway-plugin');
    expect(stored?.details).toMatchObject({ pep: 'gateway-plugin', headers: { 'x-request-id': 'req-1' } });
    expect(stored?.redacted?.sort()).toEqual(
      [
        'details.accessKey',
        'details.headers.api-key',
        'details.headers.x-amz-security-token',
        'details.headers.x-api-key',
        'details.headers.x-session-id',
        'details.x-api-key',
      ].sort(),
    );
    await server.close();
    expect(everything(dataDir)).not.toContain(SECRET);
    expect(logged).not.toContain(SECRET);
  });
});
