/**
 * Policy tools over the admin API, against a real server (HTTP on 127.0.0.1, SQLite audit log) with a
 * real policy directory: lint finds the shadowed rule, evaluate explains an allow and a deny by rule
 * name without recording a traffic decision, dry-run adds up exactly what dry-run policies said of
 * decisions made through the real decision API; bad input is a 400 naming the field; every route
 * needs the admin token.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  dryRunAnswerSchema,
  evaluateAnswerSchema,
  lintAnswerSchema,
  type DryRunAnswer,
  type DryRunPolicy,
} from '../../src/api/policy-tools.js';
import { parseWire } from '../../src/api/parse.js';
import { queryAuditLog } from '../../src/audit/index.js';
import { configSchema } from '../../src/config/index.js';
import { type RunningServer, startServer } from '../../src/server/index.js';
import { auditPlugin } from '../../src/server/plugins/audit.js';
import { decisionPlugin } from '../../src/server/plugins/decision.js';
import { policyPlugin } from '../../src/server/plugins/policy.js';
import { createLogger } from '../../src/util/logger.js';
import { tempDir } from '../support/tmp.js';

const GATEWAY = 'spiffe://example.org/ns/payments/sa/api-gateway';
const PAYMENTS = 'spiffe://example.org/ns/payments/sa/payment-service';
const LEDGER = 'spiffe://example.org/ns/payments/sa/ledger';

const POLICIES: Record<string, string> = {
  // `charges-again` is narrower than `gateway-writes`, which comes first: it can never decide.
  'payments.yaml': `apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata:
  name: payments
spec:
  action: ALLOW
  target:
    spiffeIds: [${PAYMENTS}]
  rules:
    - name: gateway-writes
      from:
        - principals: [${GATEWAY}]
      to:
        - methods: [POST]
          paths: [/v1/charges, /v1/refunds]
    - name: charges-again
      from:
        - principals: [${GATEWAY}]
      to:
        - methods: [POST]
          paths: [/v1/charges]
`,
  'no-admin.yaml': `apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata:
  name: no-admin
spec:
  action: DENY
  target:
    spiffeIds: [${PAYMENTS}]
  rules:
    - name: admin-paths
      to:
        - paths: [/admin/*]
`,
  // Dry-run: would deny refunds (allowed today), and would allow reports (denied today).
  'block-refunds.yaml': `apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata:
  name: block-refunds
spec:
  action: DENY
  dryRun: true
  dryRunSince: 2026-12-01
  target:
    spiffeIds: [${PAYMENTS}]
  rules:
    - name: refunds
      to:
        - paths: [/v1/refunds]
`,
  'open-reports.yaml': `apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata:
  name: open-reports
spec:
  action: ALLOW
  dryRun: true
  target:
    spiffeIds: [${PAYMENTS}]
  rules:
    - name: gateway-reports
      from:
        - principals: [${GATEWAY}]
      to:
        - methods: [GET]
          paths: [/v1/reports]
`,
  'ledger.yaml': `apiVersion: nevertrust.dev/v1
kind: AccessPolicy
metadata:
  name: ledger
spec:
  action: ALLOW
  target:
    spiffeIds: [${LEDGER}]
  rules:
    - name: payments-post
      from:
        - principals: [${PAYMENTS}]
      to:
        - methods: [POST]
`,
};

let server: RunningServer;
let token: string;

beforeAll(async () => {
  const dir = tempDir();
  const policies = join(dir, 'policies');
  mkdirSync(policies);
  for (const [name, text] of Object.entries(POLICIES)) writeFileSync(join(policies, name), text);
  const policy = policyPlugin();
  server = await startServer({
    config: configSchema.parse({ data_dir: dir, server: { port: 0, host: '127.0.0.1' }, policies }),
    logger: createLogger('silent'),
    plugins: [
      auditPlugin({ checkpointIntervalMs: 0, anomaly: false }),
      policy,
      decisionPlugin({ policy: policy.handle }),
    ],
  });
  token = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
});

afterAll(async () => {
  await server?.close();
});

function admin(path: string, init: RequestInit = {}, bearer: string | null = token): Promise<Response> {
  const headers = new Headers(init.headers);
  if (bearer !== null) headers.set('authorization', `Bearer ${bearer}`);
  return fetch(`${server.url}${path}`, { ...init, headers });
}

const evaluate = (body: string) =>
  admin('/v1/admin/policy/evaluate', { method: 'POST', body, headers: { 'content-type': 'application/json' } });

const call = (source: string, target: string, method: string, path: string) => ({
  source: { spiffe_id: source },
  target: { spiffe_id: target },
  request: { method, path },
});

/** Decides through the real decision API. */
async function decide(body: unknown): Promise<{ decision: string; decision_id: string }> {
  const r = await fetch(`${server.url}/v1/decide`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(r.status).toBe(200);
  return (await r.json()) as { decision: string; decision_id: string };
}

/** Everything recorded so far is stored (signing a checkpoint flushes the recorder first). */
async function flush(): Promise<void> {
  expect((await admin('/v1/admin/audit/checkpoint', { method: 'POST' })).status).toBe(200);
}

async function dryRun(query = ''): Promise<DryRunAnswer> {
  const r = await admin(`/v1/admin/policy/dry-run${query}`);
  expect(r.status).toBe(200);
  return parseWire(dryRunAnswerSchema, await r.json(), 'dry-run');
}

const byName = (a: DryRunAnswer, name: string) => a.policies.find((p) => p.policy === name) as DryRunPolicy;

describe('policy tools over the admin API', () => {
  it('lint finds the shadowed rule in the snapshot in force', async () => {
    const r = await admin('/v1/admin/policy/lint');
    expect(r.status).toBe(200);
    const a = parseWire(lintAnswerSchema, await r.json(), 'lint');
    const snapshot = (await (await admin('/v1/admin/policy')).json()) as { version: string };
    expect(a.version).toBe(snapshot.version);
    const shadowed = a.findings.filter((f) => f.code === 'shadowed-rule');
    expect(shadowed).toHaveLength(1);
    expect(shadowed[0]).toMatchObject({ policy: 'payments', rule: 'charges-again', severity: 'warning' });
    expect(shadowed[0]?.file).toMatch(/payments\.yaml$/);
    expect(shadowed[0]?.line).toBeGreaterThan(1);
  });

  it('evaluate explains an allow and a deny by rule name, recorded as an admin action, not as traffic', async () => {
    await flush();
    const before = await queryAuditLog(server.store, { kind: 'access.decision', limit: 1000 });

    const allow = await evaluate(JSON.stringify(call(GATEWAY, PAYMENTS, 'POST', '/v1/charges')));
    expect(allow.status).toBe(200);
    const a = parseWire(evaluateAnswerSchema, await allow.json(), 'evaluate');
    expect(a.decision).toMatchObject({ allow: true, outcome: 'allow', policy: 'payments', rule: 'gateway-writes' });
    const payments = a.explanation.candidates.find((c) => c.policy === 'payments');
    expect(payments?.rules.map((r) => [r.rule, r.result])).toEqual([
      ['gateway-writes', 'match'],
      ['charges-again', 'match'],
    ]);
    // The dry-run policies say what they would have done, as the decision event would record it.
    expect(a.decision.dry_run).toEqual(
      expect.arrayContaining([
        { policy: 'block-refunds', rule: null, decision: 'allow', changed: false },
        { policy: 'open-reports', rule: null, decision: 'allow', changed: false },
      ]),
    );
    expect(a.explanation.request).toMatchObject({ sourceSpiffeId: GATEWAY, path: '/v1/charges' });
    expect(a.explanation.not_selected).toBe(1); // ledger

    // A DENY rule decides: named, with its rule's why.
    const denied = parseWire(
      evaluateAnswerSchema,
      await (await evaluate(JSON.stringify(call(GATEWAY, PAYMENTS, 'POST', '/admin/users')))).json(),
      'evaluate',
    );
    expect(denied.decision).toMatchObject({ allow: false, outcome: 'deny', policy: 'no-admin', rule: 'admin-paths' });
    expect(denied.decision.reason).toMatch(/admin-paths/);
    const noAdmin = denied.explanation.candidates.find((c) => c.policy === 'no-admin');
    expect(noAdmin?.rules[0]).toMatchObject({ rule: 'admin-paths', result: 'match' });

    // The default deny: every ALLOW rule says why it did not match.
    const read = parseWire(
      evaluateAnswerSchema,
      await (await evaluate(JSON.stringify(call(GATEWAY, PAYMENTS, 'GET', '/v1/charges')))).json(),
      'evaluate',
    );
    expect(read.decision).toMatchObject({ outcome: 'deny', policy: null, rule: null });
    expect(read.decision.reason).toMatch(/default deny/);
    const writes = read.explanation.candidates
      .find((c) => c.policy === 'payments')
      ?.rules.find((r) => r.rule === 'gateway-writes');
    expect(writes?.result).toBe('no_match');
    expect(writes?.why.join('\n')).toMatch(/to: no operation matched \(GET \/v1\/charges/);

    // The OPA flat shape is taken as /v1/decide takes it.
    const flat = await evaluate(JSON.stringify({ source_service: 'x', target_service: 'ledger', method: 'POST' }));
    expect(flat.status).toBe(200);

    await flush();
    const after = await queryAuditLog(server.store, { kind: 'access.decision', limit: 1000 });
    expect(after.events.length).toBe(before.events.length);
    const actions = await queryAuditLog(server.store, { kind: 'admin.action', limit: 1000 });
    const whatIfs = actions.events.filter((e) => e.target?.resource === 'policy.evaluate');
    expect(whatIfs).toHaveLength(4);
    // Newest first: the flat request names no SPIFFE ID, so ledger's policy denies it.
    expect(whatIfs.map((e) => e.details?.outcome)).toEqual(['deny', 'deny', 'deny', 'allow']);
    expect(whatIfs[3]).toMatchObject({ outcome: 'allow', source: { user: expect.stringMatching(/^token:/) } });
    expect(whatIfs[3]?.details).toMatchObject({ policy: 'payments', rule: 'gateway-writes', path: '/v1/charges' });
  });

  it('evaluate refuses a bad body with a 400 naming the field, an oversized one with 413; refusals are recorded', async () => {
    const wrongType = await evaluate(JSON.stringify({ source: { spiffe_id: 5 } }));
    expect(wrongType.status).toBe(400);
    expect(await wrongType.json()).toMatchObject({ error: 'invalid_request', field: 'source.spiffe_id' });

    const device = await evaluate(JSON.stringify({ source: { device: { managed: 'yes' } } }));
    expect(await device.json()).toMatchObject({ error: 'invalid_request', field: 'source.device.managed' });

    const unknown = await evaluate(JSON.stringify({ source: {}, sorce: {} }));
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as { message: string }).message).toMatch(/sorce/);

    const notJson = await evaluate('{"source": ');
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toMatchObject({ error: 'bad_json' });

    const array = await evaluate('[1]');
    expect(array.status).toBe(400);
    expect(await array.json()).toMatchObject({ error: 'invalid_request', field: '(root)' });

    const huge = await evaluate(JSON.stringify(call(GATEWAY, PAYMENTS, 'GET', `/${'a'.repeat(70_000)}`)));
    expect(huge.status).toBe(413);

    await flush();
    const actions = await queryAuditLog(server.store, { kind: 'admin.action', outcome: 'deny', limit: 1000 });
    const refused = actions.events.filter((e) => e.reason?.startsWith('policy evaluate refused'));
    expect(refused.length).toBeGreaterThanOrEqual(5);
    expect(refused.some((e) => /source\.device\.managed/.test(e.reason ?? ''))).toBe(true);
  });

  it('dry-run adds up exactly what the dry-run policies said of real decisions', async () => {
    const start = await dryRun('?window=1h');
    const base = {
      refunds: byName(start, 'block-refunds'),
      reports: byName(start, 'open-reports'),
    };
    // Listed from the snapshot even before any decision, with `since` from the policy.
    expect(base.refunds).toMatchObject({ in_force: true, since: '2026-12-01' });
    expect(base.reports.in_force).toBe(true);
    expect(start.policies.map((p) => p.policy).sort()).toEqual(['block-refunds', 'open-reports']);

    const plan: [string, string, string, string, number][] = [
      [GATEWAY, PAYMENTS, 'POST', '/v1/charges', 3], // allowed; both dry-runs agree
      [GATEWAY, PAYMENTS, 'POST', '/v1/refunds', 2], // allowed; block-refunds would deny
      [GATEWAY, PAYMENTS, 'GET', '/v1/reports', 4], // denied; open-reports would allow
      [GATEWAY, PAYMENTS, 'GET', '/v1/charges', 1], // denied; both agree
      [PAYMENTS, LEDGER, 'POST', '/v1/entries', 2], // no dry-run policy selects ledger
    ];
    const refundIds: string[] = [];
    for (const [src, tgt, method, path, n] of plan) {
      for (let i = 0; i < n; i++) {
        const d = await decide(call(src, tgt, method, path));
        expect(d.decision).toBe(method === 'POST' ? 'allow' : 'deny');
        if (path === '/v1/refunds') refundIds.push(d.decision_id);
      }
    }
    await flush();

    const now = await dryRun('?window=1h');
    const refunds = byName(now, 'block-refunds');
    const reports = byName(now, 'open-reports');
    expect(refunds.decisions - base.refunds.decisions).toBe(10);
    expect(refunds.would_deny_allowed - base.refunds.would_deny_allowed).toBe(2);
    expect(refunds.would_allow_denied - base.refunds.would_allow_denied).toBe(0);
    expect(refunds.agree - base.refunds.agree).toBe(8);
    expect(reports.decisions - base.reports.decisions).toBe(10);
    expect(reports.would_allow_denied - base.reports.would_allow_denied).toBe(4);
    expect(reports.would_deny_allowed - base.reports.would_deny_allowed).toBe(0);
    expect(reports.agree - base.reports.agree).toBe(6);
    expect(now.scan_limited).toBe(false);

    // The examples are the changes, newest first, and they are the real decision events.
    expect(refunds.examples).toHaveLength(2);
    for (const ex of refunds.examples) {
      expect(ex).toMatchObject({ source: GATEWAY, target: PAYMENTS, enforced: 'allow', dry_run: 'deny' });
      const stored = await queryAuditLog(server.store, { kind: 'access.decision', limit: 1000 });
      const event = stored.events.find((e) => e.id === ex.event_id);
      expect(refundIds).toContain(event?.decision_id);
    }
    expect(reports.examples.every((e) => e.enforced === 'deny' && e.dry_run === 'allow')).toBe(true);
    expect(reports.examples.length).toBe(4);

    // The what-ifs of evaluate were not counted: they are not decisions.
    await evaluate(JSON.stringify(call(GATEWAY, PAYMENTS, 'POST', '/v1/refunds')));
    await flush();
    expect(byName(await dryRun('?window=1h'), 'block-refunds').decisions).toBe(refunds.decisions);

    // A bounded scan says so: the newest three decision events (two to ledger, one GET /v1/charges).
    const bounded = await dryRun('?window=1h&limit=3');
    expect(bounded).toMatchObject({ examined: 3, scan_limited: true });
    expect(byName(bounded, 'block-refunds')).toMatchObject({ decisions: 1, agree: 1 });
  });

  it('dry-run refuses malformed, oversized and repeated parameters with a 400 naming them', async () => {
    for (const [query, field] of [
      ['?window=0s', 'window'],
      ['?window=31d', 'window'],
      ['?window=yesterday', 'window'],
      ['?limit=0', 'limit'],
      ['?limit=100001', 'limit'],
      ['?limit=-1', 'limit'],
      ['?limit=1e3', 'limit'],
      ['?window=1h&window=2h', 'window'],
    ] as const) {
      const r = await admin(`/v1/admin/policy/dry-run${query}`);
      expect(r.status, query).toBe(400);
      expect(await r.json(), query).toMatchObject({ error: 'bad_query', field });
    }
    const unknown = await admin('/v1/admin/policy/dry-run?windw=1h');
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as { message: string }).message).toMatch(/windw/);
  });

  it('every policy tool needs the admin token', async () => {
    const routes: [string, string][] = [
      ['GET', '/v1/admin/policy/lint'],
      ['POST', '/v1/admin/policy/evaluate'],
      ['GET', '/v1/admin/policy/dry-run'],
    ];
    for (const [method, path] of routes) {
      for (const bearer of [null, 'not-the-token', `${token}x`]) {
        const r = await admin(path, { method, ...(method === 'POST' ? { body: '{}' } : {}) }, bearer);
        expect(r.status, `${method} ${path} with ${bearer?.slice(0, 4)}`).toBe(401);
        const body = (await r.json()) as { error: string; findings?: unknown; decision?: unknown; policies?: unknown };
        expect(body.error).toBe('unauthenticated');
        expect(body.findings ?? body.decision ?? body.policies).toBeUndefined();
      }
    }
  });
});

describe('policy tools with no policy in force', () => {
  it('lint has nothing to say, evaluate denies as the decision API would, dry-run lists nothing', async () => {
    const dir = tempDir();
    const bare = await startServer({
      config: configSchema.parse({ data_dir: dir, server: { port: 0, host: '127.0.0.1' } }),
      logger: createLogger('silent'),
      plugins: [auditPlugin({ checkpointIntervalMs: 0, anomaly: false }), policyPlugin()],
    });
    try {
      const auth = { authorization: `Bearer ${readFileSync(join(dir, 'admin.token'), 'utf8').trim()}` };
      const lint = await fetch(`${bare.url}/v1/admin/policy/lint`, { headers: auth });
      expect(parseWire(lintAnswerSchema, await lint.json(), 'lint')).toEqual({ version: null, findings: [] });
      const ev = await fetch(`${bare.url}/v1/admin/policy/evaluate`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify(call(GATEWAY, PAYMENTS, 'POST', '/v1/charges')),
      });
      const a = parseWire(evaluateAnswerSchema, await ev.json(), 'evaluate');
      expect(a.decision).toMatchObject({ allow: false, outcome: 'deny', version: null });
      expect(a.decision.reason).toMatch(/no policy snapshot in force/);
      const dry = await fetch(`${bare.url}/v1/admin/policy/dry-run`, { headers: auth });
      expect(parseWire(dryRunAnswerSchema, await dry.json(), 'dry-run')).toMatchObject({
        policies: [],
        scan_limited: false,
      });
    } finally {
      await bare.close();
    }
  });
});
