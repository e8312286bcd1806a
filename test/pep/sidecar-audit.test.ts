/**
 * The sidecar as a real `nevertrust sidecar` process shipping its decisions to a real server's
 * audit log: allowed and denied requests both end up there, and the log verifies.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { certificatesToPem } from '../../src/ca/index.js';
import { freePort, runCli, startCli } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { id, makePki } from './pki.js';

const run = promisify(execFile);
const POLICIES = fileURLToPath(new URL('./fixtures/policies', import.meta.url));
const kills: (() => void)[] = [];
afterAll(() => {
  for (const k of kills) k();
});

/** `nevertrust audit query <filters> --format json` against a running server: its events. */
async function auditQuery(data: string, api: string, ...filters: string[]): Promise<Record<string, unknown>[]> {
  const q = await runCli(['audit', 'query', ...filters, '--format', 'json', '--data-dir', data, '--server', api]);
  expect(q.code, q.stderr).toBe(0);
  return (JSON.parse(q.stdout) as { events: Record<string, unknown>[] }).events;
}

describe('sidecar → audit log', () => {
  it('records every decision of the sidecar in the server audit log', async () => {
    const dir = tempDir();
    const data = join(dir, 'data');
    const apiPort = await freePort();
    const server = await startCli(
      ['server', '--port', String(apiPort), '--agent-port', '0', '--data-dir', data],
      /Ctrl-C to stop/,
    );
    kills.push(() => server.child.kill('SIGKILL'));
    const pki = await makePki(dir);
    // The app answers with the decision id the sidecar handed it, as an app would log it.
    const app = createServer((req, res) => {
      res.setHeader('x-nevertrust-decision-id', String(req.headers['x-nevertrust-decision-id'] ?? ''));
      res.end('{"ok":true}');
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    kills.push(() => app.close());
    const appPort = (app.address() as { port: number }).port;
    const inPort = await freePort();
    const m = pki.ca.mintX509Svid({ spiffeId: id('payment-service'), dnsNames: ['localhost'] });
    const ps = pki.files(dir, 'ps', {
      spiffeId: id('payment-service'),
      certChainPem: certificatesToPem(m.chain),
      privateKeyPem: m.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    });
    const cfg = join(dir, 'sidecar.yaml');
    writeFileSync(
      cfg,
      `svid: { cert: ${ps.cert}, key: ${ps.key}, bundle: ${pki.bundleFile(dir)} }
policies: ${POLICIES}
inbound: { listen: 127.0.0.1:${inPort}, app: 127.0.0.1:${appPort} }
audit: { server: http://127.0.0.1:${apiPort}, token_file: ${join(data, 'admin.token')} }
`,
    );
    const sc = await startCli(['sidecar', '--config', cfg], /sidecar ready/);
    kills.push(() => sc.child.kill('SIGKILL'));
    const gw = pki.files(dir, 'gw', pki.mint('api-gateway'));
    const curl = async (method: string, path: string) => {
      const args = [
        '-s',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code} %header{x-nevertrust-decision-id}',
        '-X',
        method,
        '--path-as-is',
        '--cacert',
        pki.bundleFile(dir),
      ];
      args.push('--cert', gw.cert, '--key', gw.key, '--resolve', `localhost:${inPort}:127.0.0.1`);
      const [code, decisionId] = (await run('curl', [...args, `https://localhost:${inPort}${path}`])).stdout.split(' ');
      return { code: Number(code), decisionId: decisionId ?? '' };
    };
    const allowed = await curl('POST', '/v1/charges');
    expect(allowed.code).toBe(200);
    const denied = await curl('POST', '/v1/charges/../admin');
    expect(denied.code).toBe(403);
    expect(denied.decisionId).toMatch(/\S/);
    expect(allowed.decisionId).toMatch(/\S/);
    sc.child.kill('SIGTERM');
    await sc.exited;
    const api = `http://127.0.0.1:${apiPort}`;
    const events = (await auditQuery(data, api, '--kind', 'access.decision')) as {
      outcome: string;
      source?: { spiffe_id?: string };
    }[];
    expect(events.map((e) => e.outcome).sort()).toEqual(['allow', 'deny']);
    expect(events.every((e) => e.source?.spiffe_id === id('api-gateway'))).toBe(true);
    // The id the caller was given finds the record of its answer, with the deciding rule and the
    // enforcement point as fields of their own (not buried in details).
    const byDecision = (decisionId: string) => auditQuery(data, api, '--decision-id', decisionId);
    const deniedRows = await byDecision(denied.decisionId);
    expect(deniedRows).toHaveLength(1);
    expect(deniedRows[0]).toMatchObject({
      decision_id: denied.decisionId,
      outcome: 'deny',
      enforcer: 'sidecar',
      target: { path: '/v1/charges/../admin', method: 'POST' },
      // Shipped with the admin token here: the server names that principal as the reporter.
      details: { pep: 'sidecar', reported_by: expect.stringMatching(/^token:[0-9a-f]{8}$/) },
    });
    expect(typeof deniedRows[0]?.reason).toBe('string');
    const allowedRows = await byDecision(allowed.decisionId);
    expect(allowedRows).toHaveLength(1);
    expect(allowedRows[0]).toMatchObject({ decision_id: allowed.decisionId, outcome: 'allow', enforcer: 'sidecar' });
    expect(allowedRows[0]?.policy).toEqual(expect.any(String));
    expect(allowedRows[0]?.rule).toEqual(expect.any(String));
    const empty = await runCli(['audit', 'query', '--decision-id', '', '--data-dir', data, '--server', api]);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('--decision-id: empty value');
    const v = await runCli(['audit', 'verify', '--data-dir', data, '--server', api]);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    expect(readFileSync(join(data, 'admin.token'), 'utf8').length).toBeGreaterThan(0);
  });
  it('ships with its own SVID to the agent port: no token, each event names its reporter, a stranger is refused', async () => {
    const dir = tempDir();
    const data = join(dir, 'data');
    const apiPort = await freePort();
    const agentPort = await freePort();
    const server = await startCli(
      ['server', '--port', String(apiPort), '--agent-port', String(agentPort), '--data-dir', data],
      /Ctrl-C to stop/,
    );
    kills.push(() => server.child.kill('SIGKILL'));
    const api = `http://127.0.0.1:${apiPort}`;
    // SVIDs from the server's own CA, as a workload would get them.
    const mint = async (name: string, extra: string[] = []) => {
      const out = join(dir, name);
      const r = await runCli([
        'x509',
        'mint',
        '--spiffe-id',
        id(name),
        '--out',
        out,
        '--server',
        api,
        '--data-dir',
        data,
        ...extra,
      ]);
      expect(r.code, r.stderr).toBe(0);
      return { cert: join(out, 'svid.pem'), key: join(out, 'svid.key'), bundle: join(out, 'bundle.pem') };
    };
    const ps = await mint('payment-service', ['--dns', 'localhost']);
    const gw = await mint('api-gateway');
    const app = createServer((_req, res) => res.end('{"ok":true}'));
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    kills.push(() => app.close());
    const inPort = await freePort();
    const cfg = join(dir, 'sidecar.yaml');
    writeFileSync(
      cfg,
      `svid: { cert: ${ps.cert}, key: ${ps.key}, bundle: ${ps.bundle} }
policies: ${POLICIES}
inbound: { listen: 127.0.0.1:${inPort}, app: 127.0.0.1:${(app.address() as { port: number }).port} }
audit: { server: https://127.0.0.1:${agentPort} }
`,
    );
    const sc = await startCli(['sidecar', '--config', cfg], /sidecar ready/);
    kills.push(() => sc.child.kill('SIGKILL'));
    const curl = async (method: string, path: string, who = gw, extra: string[] = []) =>
      (
        await run('curl', [
          '-s',
          '-o',
          '/dev/null',
          '-w',
          '%{http_code}',
          '-X',
          method,
          '--path-as-is',
          '--cacert',
          who.bundle,
          '--cert',
          who.cert,
          '--key',
          who.key,
          ...extra,
          '--resolve',
          `localhost:${inPort}:127.0.0.1`,
          `https://localhost:${inPort}${path}`,
        ])
      ).stdout;
    expect(await curl('POST', '/v1/charges')).toBe('200');
    expect(await curl('GET', '/v1/charges')).toBe('403');
    sc.child.kill('SIGTERM');
    await sc.exited;

    // Straight at the ingestion route: without a client certificate, and with one from another CA.
    const pki = await makePki(dir);
    const stranger = pki.files(dir, 'stranger', pki.mint('api-gateway'));
    const forged = JSON.stringify({
      events: [{ kind: 'access.decision', outcome: 'allow', reason: 'forged', details: { reported_by: 'x' } }],
    });
    const post = async (extra: string[]) =>
      (
        await run('curl', [
          '-s',
          '-k',
          '-w',
          ' %{http_code}',
          '-H',
          'content-type: application/json',
          '--data',
          forged,
          ...extra,
          `https://127.0.0.1:${agentPort}/agent/v1/audit/events`,
        ])
      ).stdout;
    expect(await post([])).toMatch(/unauthenticated.* 401$/);
    expect(await post(['--cert', stranger.cert, '--key', stranger.key])).toMatch(/unauthenticated.* 401$/);
    // A workload of the trust domain may report, but not as someone else: reported_by is the server's.
    expect(await post(['--cert', gw.cert, '--key', gw.key])).toMatch(/"stored":1.* 200$/);

    const events = await auditQuery(data, api, '--kind', 'access.decision');
    const byReason = (r: string) => events.filter((e) => e.reason === r);
    expect(byReason('forged').map((e) => (e.details as { reported_by?: string }).reported_by)).toEqual([
      id('api-gateway'),
    ]);
    const fromSidecar = events.filter((e) => e.enforcer === 'sidecar');
    expect(fromSidecar.map((e) => e.outcome).sort()).toEqual(['allow', 'deny']);
    for (const e of fromSidecar)
      expect(e.details).toMatchObject({ pep: 'sidecar', reported_by: id('payment-service') });
    // The refusals are on record too.
    const refused = (await auditQuery(data, api, '--kind', 'admin.action', '--outcome', 'deny')).filter((e) =>
      String(e.reason).startsWith('audit ingestion refused'),
    );
    expect(refused).toHaveLength(2);
    const v = await runCli(['audit', 'verify', '--data-dir', data, '--server', api]);
    expect(v.code, v.stdout + v.stderr).toBe(0);
  });
  it('refuses an audit section it cannot use, naming the file and field, before serving anything', async () => {
    const dir = tempDir();
    const pki = await makePki(dir);
    const ps = pki.files(dir, 'ps', pki.mint('payment-service'));
    const inPort = await freePort();
    const write = (audit: string) => {
      const cfg = join(dir, 'sidecar.yaml');
      writeFileSync(
        cfg,
        `svid: { cert: ${ps.cert}, key: ${ps.key}, bundle: ${pki.bundleFile(dir)} }
policies: ${POLICIES}
inbound: { listen: 127.0.0.1:${inPort}, app: 127.0.0.1:1 }
audit: ${audit}
`,
      );
      return cfg;
    };
    const { loadSidecarConfig } = await import('../../src/pep/sidecar/index.js');
    // Plain HTTP without a token would have to trust the network: refused.
    const plain = write('{ server: http://127.0.0.1:8181 }');
    expect(() => loadSidecarConfig(plain)).toThrow(
      /sidecar\.yaml:\d+:\d+: audit\.server: without token_file, server must be the https:\/\/ agent port/,
    );
    const noToken = write(`{ server: http://127.0.0.1:8181, token_file: ${join(dir, 'missing.token')} }`);
    const r = await runCli(['sidecar', '--config', noToken]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/sidecar\.yaml: audit\.token_file: ENOENT/);
    const badId = write('{ server: https://127.0.0.1:8081, server_id: "spiffe://example.org/a/../b" }');
    expect(() => loadSidecarConfig(badId)).not.toThrow();
    const r2 = await runCli(['sidecar', '--config', badId]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/audit\.server_id/);
  });
});
