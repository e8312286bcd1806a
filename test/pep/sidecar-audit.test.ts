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
    const q = await runCli([
      'audit',
      'query',
      '--kind',
      'access.decision',
      '--format',
      'json',
      '--data-dir',
      data,
      '--server',
      `http://127.0.0.1:${apiPort}`,
    ]);
    expect(q.code, q.stderr).toBe(0);
    const parsed = JSON.parse(q.stdout) as unknown;
    const events = (Array.isArray(parsed) ? parsed : (parsed as { events: unknown[] }).events) as {
      outcome: string;
      source?: { spiffe_id?: string };
    }[];
    expect(events.map((e) => e.outcome).sort()).toEqual(['allow', 'deny']);
    expect(events.every((e) => e.source?.spiffe_id === id('api-gateway'))).toBe(true);
    // The id the caller was given finds the record of its answer, with the deciding rule and the
    // enforcement point as fields of their own (not buried in details).
    const byDecision = async (decisionId: string) => {
      const one = await runCli([
        'audit',
        'query',
        '--decision-id',
        decisionId,
        '--format',
        'json',
        '--data-dir',
        data,
        '--server',
        `http://127.0.0.1:${apiPort}`,
      ]);
      expect(one.code, one.stderr).toBe(0);
      const found = JSON.parse(one.stdout) as unknown;
      return (Array.isArray(found) ? found : (found as { events: unknown[] }).events) as Record<string, unknown>[];
    };
    const deniedRows = await byDecision(denied.decisionId);
    expect(deniedRows).toHaveLength(1);
    expect(deniedRows[0]).toMatchObject({
      decision_id: denied.decisionId,
      outcome: 'deny',
      enforcer: 'sidecar',
      target: { path: '/v1/charges/../admin', method: 'POST' },
      details: { pep: 'sidecar' },
    });
    expect(typeof deniedRows[0]?.reason).toBe('string');
    const allowedRows = await byDecision(allowed.decisionId);
    expect(allowedRows).toHaveLength(1);
    expect(allowedRows[0]).toMatchObject({ decision_id: allowed.decisionId, outcome: 'allow', enforcer: 'sidecar' });
    expect(allowedRows[0]?.policy).toEqual(expect.any(String));
    expect(allowedRows[0]?.rule).toEqual(expect.any(String));
    const empty = await runCli([
      'audit',
      'query',
      '--decision-id',
      '',
      '--data-dir',
      data,
      '--server',
      `http://127.0.0.1:${apiPort}`,
    ]);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('--decision-id: empty value');
    const v = await runCli(['audit', 'verify', '--data-dir', data, '--server', `http://127.0.0.1:${apiPort}`]);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    expect(readFileSync(join(data, 'admin.token'), 'utf8').length).toBeGreaterThan(0);
  });
});
