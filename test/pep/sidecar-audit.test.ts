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
    const app = createServer((_req, res) => res.end('{"ok":true}'));
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
        '%{http_code}',
        '-X',
        method,
        '--path-as-is',
        '--cacert',
        pki.bundleFile(dir),
      ];
      args.push('--cert', gw.cert, '--key', gw.key, '--resolve', `localhost:${inPort}:127.0.0.1`);
      return Number((await run('curl', [...args, `https://localhost:${inPort}${path}`])).stdout);
    };
    expect(await curl('POST', '/v1/charges')).toBe(200);
    expect(await curl('POST', '/v1/charges/../admin')).toBe(403);
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
    const v = await runCli(['audit', 'verify', '--data-dir', data, '--server', `http://127.0.0.1:${apiPort}`]);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    expect(readFileSync(join(data, 'admin.token'), 'utf8').length).toBeGreaterThan(0);
  });
});
