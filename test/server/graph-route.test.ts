/**
 * `GET /v1/admin/graph` through a real server (policy, audit and graph plugins, HTTP on 127.0.0.1):
 * the answer fits its contract and counts what was appended, with the policy in force overlaid;
 * admin authentication is required; every bad parameter is a 400 naming the field; full blocks are
 * summarized in the background after they fill.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { graphResponseSchema } from '../../src/api/graph.js';
import { parseWire } from '../../src/api/parse.js';
import { configSchema } from '../../src/config/index.js';
import { readAdminToken, type RunningServer, startServer } from '../../src/server/index.js';
import { auditPlugin } from '../../src/server/plugins/audit.js';
import { graphPlugin } from '../../src/server/plugins/graph.js';
import { policyPlugin } from '../../src/server/plugins/policy.js';
import { BLOCK_EVENTS } from '../../src/store/audit-blocks.js';
import { tempDir } from '../support/tmp.js';

const gw = 'spiffe://example.org/ns/payments/sa/api-gateway';
const pay = 'spiffe://example.org/ns/payments/sa/payment-service';
const audit = 'spiffe://example.org/ns/payments/sa/audit-service';

const POLICY = `
apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: payment-service-ingress }
spec:
  action: ALLOW
  target: { spiffeIds: ["${pay}"] }
  rules:
    - name: gateway
      from: [{ principals: ["${gw}"] }]
---
apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata: { name: audit-service-ingress }
spec:
  action: ALLOW
  target: { spiffeIds: ["${audit}"] }
  rules:
    - name: payments
      from: [{ principals: ["${pay}"] }]
`;

let server: RunningServer;
let token: string;
const now = Date.now();

beforeAll(async () => {
  const dataDir = tempDir();
  const policies = join(dataDir, 'policy.yaml');
  writeFileSync(policies, POLICY);
  const config = configSchema.parse({ data_dir: dataDir, server: { port: 0, shutdown_timeout: 2 }, policies });
  const policy = policyPlugin();
  const auditP = auditPlugin({ anomaly: false });
  server = await startServer({
    config,
    logger: (await import('../../src/util/logger.js')).createLogger('silent'),
    plugins: [policy, auditP, graphPlugin({ audit: auditP.handle, policy: policy.handle })],
  });
  token = readAdminToken(dataDir) as string;
  // Two full blocks and a bit, over the last 50 minutes: gateway → payments (some denied),
  // payments → audit never, a person → payments (denied), and an old call two hours ago.
  const events = [];
  const n = 2 * BLOCK_EVENTS + 500;
  for (let i = 0; i < n; i++) {
    const person = i % 10 === 0;
    events.push({
      kind: 'access.decision',
      time: now - 3_000_000 + i * 100,
      decision_id: `d-${i}`,
      source: person ? { user: 'alice@example.com' } : { spiffe_id: gw },
      target: { spiffe_id: pay, method: 'POST', path: '/v1/charges' },
      outcome: person || i % 7 === 0 ? ('deny' as const) : ('allow' as const),
    });
  }
  events.push({
    kind: 'access.decision',
    time: now - 7_200_000,
    decision_id: 'old',
    source: { spiffe_id: audit },
    target: { spiffe_id: gw },
    outcome: 'deny' as const,
  });
  await auditP.handle.log().appendInputs(events);
}, 120_000);

afterAll(async () => {
  await server?.close();
});

async function get(query: string, auth: string | null = token) {
  const r = await request(`${server.url}/v1/admin/graph${query}`, {
    headers: auth === null ? {} : { authorization: `Bearer ${auth}` },
  });
  return { status: r.statusCode, body: (await r.body.json()) as Record<string, unknown> };
}

describe('GET /v1/admin/graph', () => {
  it('summarizes full blocks in the background after they fill, before any graph is asked for', async () => {
    const deadline = Date.now() + 20_000;
    let rows = 0;
    while (Date.now() < deadline) {
      rows = (await server.store.db.selectFrom('audit_block_edges').select('block').execute()).length;
      if (rows >= 2) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(rows).toBe(2);
  });

  it('answers the contract: counts, nodes, the policy overlay and an unused allowed edge', async () => {
    const { status, body } = await get('?window=1h');
    expect(status).toBe(200);
    const g = parseWire(graphResponseSchema, body, 'GET /v1/admin/graph');
    const edge = (s: string, t: string) => g.edges.find((e) => e.source === s && e.target === t);
    const n = 2 * BLOCK_EVENTS + 500;
    let denied = 0;
    for (let i = 0; i < n; i++) if (i % 10 !== 0 && i % 7 === 0) denied++;
    const people = Math.ceil(n / 10);
    expect(edge(gw, pay)).toMatchObject({
      allowed: n - people - denied,
      denied,
      other: 0,
      policy: 'allowed',
      new: true,
    });
    expect(edge('alice@example.com', pay)).toMatchObject({ allowed: 0, denied: people, policy: 'not_allowed' });
    // Nobody called audit-service from payments in the last hour: a least-privilege candidate.
    expect(edge(pay, audit)).toMatchObject({ unused: true, allowed: 0, first_seen: null });
    // Two hours ago is outside the window.
    expect(edge(audit, gw)).toBeUndefined();
    expect(g.events).toBe(n);
    expect(g.policy_version).toMatch(/\S/);
    expect(g.nodes.find((x) => x.id === 'alice@example.com')?.kind).toBe('person');
    expect(g.nodes.find((x) => x.id === gw)).toEqual({ id: gw, label: 'api-gateway', kind: 'workload' });
    expect(Date.parse(g.to) - Date.parse(g.from)).toBe(3_600_000);

    const wide = parseWire(graphResponseSchema, (await get('?window=3h&scope=workloads')).body, 'graph');
    expect(wide.edges.find((e) => e.source === audit && e.target === gw)).toMatchObject({ denied: 1 });
    expect(wide.edges.some((e) => e.source === 'alice@example.com')).toBe(false);
    const between = parseWire(
      graphResponseSchema,
      (await get(`?from=${now - 7_300_000}&to=${now - 7_100_000}&scope=all`)).body,
      'graph',
    );
    expect(between.edges.filter((e) => !e.unused).map((e) => [e.source, e.target])).toEqual([[audit, gw]]);
  });

  it('requires an admin: no credential and a wrong token are 401', async () => {
    expect((await get('?window=1h', null)).status).toBe(401);
    const wrong = await get('?window=1h', 'not-the-admin-token');
    expect(wrong.status).toBe(401);
    expect(wrong.body).not.toHaveProperty('edges');
  });

  it.each([
    ['?window=abc', 'window'],
    ['?window=400d', 'window'],
    ['?window=0s', 'window'],
    [`?window=<5,000 digits>h`, 'window'],
    [`?from=${now}&to=${now - 1000}`, 'from'],
    [`?from=${now}&to=${now}`, 'from'],
    [`?from=${now - 40 * 86_400_000}&to=${now}`, 'to'],
    [`?from=${now}`, 'to'],
    [`?to=${now}`, 'from'],
    ['?from=-5&to=10', 'from'],
    ['?from=1e3&to=2e3', 'from'],
    ['?from=<40 digits>&to=<40 digits>', 'from'],
    [`?window=1h&from=${now - 1000}&to=${now}`, 'window'],
    ['?scope=everyone', 'scope'],
    ['?window=1h&limit=5', '(root)'],
  ])('%s is a 400 naming %s', async (query, field) => {
    const q = query.replace('<5,000 digits>', '9'.repeat(5000)).replaceAll('<40 digits>', '1'.repeat(40));
    const { status, body } = await get(q);
    expect(status).toBe(400);
    expect(body).toMatchObject({ error: 'bad_query', field });
    expect(String(body.message).startsWith(`${field}: `)).toBe(true);
  });
});
