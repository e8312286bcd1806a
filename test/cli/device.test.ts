/**
 * `nevertrust device …` through the built binary against a real `nevertrust server`: token create →
 * enroll (the printed command) → report (this machine's real posture) → list/show → export --p12
 * (OpenSSL reads it) → daemon (reports, stops on SIGTERM) → revoke → refused.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, runCli, startCli } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

describe('nevertrust device (built CLI, real server)', () => {
  let srv: Awaited<ReturnType<typeof startCli>>;
  let admin: string[];
  // The admin CLI prints the enroll command with the configured agent port: the same config for both.
  let env: NodeJS.ProcessEnv;
  const devDir = join(tempDir(), 'device');
  let enrollCmd: string[];

  beforeAll(async () => {
    const dataDir = join(tempDir(), 'data');
    const port = await freePort();
    const agentPort = await freePort();
    env = { NEVERTRUST_SERVER_AGENT_PORT: String(agentPort) };
    srv = await startCli(['server', '--port', String(port), '--data-dir', dataDir], /Ctrl-C to stop/, { env });
    admin = ['--data-dir', dataDir, '--server', `http://127.0.0.1:${port}`];
  }, 30_000);
  afterAll(async () => {
    srv?.child.kill('SIGTERM');
    await srv?.exited;
  });

  it('token create prints the token and the enroll command; enroll with it stores the device', async () => {
    const t = await runCli(['device', 'token', 'create', '--owner', 'alice', '--device', 'cli-laptop', ...admin], {
      env,
    });
    expect(t.stderr).toBe('');
    expect(t.code).toBe(0);
    const line = t.stdout.split('\n').find((l) => l.includes('nevertrust device enroll')) as string;
    expect(line).toMatch(/--server https:\/\/127\.0\.0\.1:\d+ --token [0-9a-f]{32}\.[0-9a-f]{64} --device cli-laptop/);
    enrollCmd = line.trim().split(/\s+/).slice(1);
    const e = await runCli([...enrollCmd, '--dir', devDir]);
    expect(e.stderr).toBe('');
    expect(e.stdout).toContain('enrolled spiffe://example.org/device/cli-laptop for alice');
    // The token was one-time.
    const again = await runCli([...enrollCmd, '--dir', join(tempDir(), 'other')]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/token_used|409/);
  });

  it("report --dry-run prints this machine's report; report sends it and the server keeps it", async () => {
    const dry = await runCli(['device', 'report', '--dry-run', '--dir', devDir], { timeoutMs: 100_000 });
    expect(dry.code, dry.stderr).toBe(0);
    const r = JSON.parse(dry.stdout) as { device_id: string; kernel: string | null; collector_version: string };
    expect(r.device_id).toBe('cli-laptop');
    expect(r.collector_version).toBe('nevertrust-linux/1');
    const sent = await runCli(['device', 'report', '--json', '--dir', devDir], { timeoutMs: 100_000 });
    expect(sent.code, sent.stderr).toBe(0);
    expect(JSON.parse(sent.stdout)).toMatchObject({
      device_id: 'cli-laptop',
      posture: { source: 'collector', managed: true },
    });

    const list = await runCli(['device', 'list', '--owner', 'alice', '--json', ...admin]);
    const devices = JSON.parse(list.stdout) as { id: string; posture: unknown }[];
    expect(devices.map((d) => d.id)).toEqual(['cli-laptop']);
    expect(devices[0]?.posture).not.toBeNull();
    const show = await runCli(['device', 'show', 'cli-laptop', ...admin]);
    expect(show.stdout).toMatch(/owner\s+alice/);
    expect(show.stdout).toMatch(/history \(newest first, 1\):\n {2}#\d+ (NOT )?compliant \(collector/);
  }, 220_000);

  it('export --p12 writes a file OpenSSL opens with the password, with the device certificate', async () => {
    const file = join(tempDir(), 'device.p12');
    const r = await runCli(['device', 'export', '--p12', file, '--dir', devDir], {
      env: { NEVERTRUST_P12_PASSWORD: 'export-pw' },
    });
    expect(r.code, r.stderr).toBe(0);
    const pem = execFileSync('/usr/bin/openssl', ['pkcs12', '-in', file, '-passin', 'pass:export-pw', '-nokeys'], {
      encoding: 'utf8',
    });
    expect(new X509Certificate(pem).subjectAltName).toBe('URI:spiffe://example.org/device/cli-laptop');
    const again = await runCli(['device', 'export', '--p12', file, '--dir', devDir], {
      env: { NEVERTRUST_P12_PASSWORD: 'export-pw' },
    });
    expect(again.stderr).toContain('exists');
  });

  it('daemon reports, then stops cleanly on SIGTERM', async () => {
    const d = await startCli(
      ['device', 'daemon', '--check', '1s', '--interval', '10s', '--dir', devDir],
      /sent a posture report/,
      {
        timeoutMs: 100_000,
      },
    );
    d.child.kill('SIGTERM');
    expect(await d.exited).toBe(0);
    expect(d.output()).toContain('stopped');
  }, 120_000);

  it('revoke asks first (no answer: nothing changes), --yes revokes, then the device is refused', async () => {
    const asked = await runCli(['device', 'revoke', 'cli-laptop', ...admin]);
    expect(asked.code).toBe(1);
    expect(asked.stderr).toContain('aborted: nothing changed');
    const r = await runCli(['device', 'revoke', 'cli-laptop', '--reason', 'lost', '--yes', ...admin]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('revoked cli-laptop');
    const refused = await runCli(['device', 'report', '--dir', devDir], { timeoutMs: 100_000 });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/\/device\/v1\/posture: refused \(403/);
  }, 120_000);

  it('says how to enroll when the directory holds no device', async () => {
    const r = await runCli(['device', 'report', '--dir', join(tempDir(), 'none')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('nevertrust device enroll');
  });
});
