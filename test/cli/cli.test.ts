import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort, runCli, startCli } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

describe('nevertrust CLI', () => {
  it('--help lists the commands with examples', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    for (const cmd of ['version', 'server', 'up']) expect(r.stdout).toMatch(new RegExp(`^  ${cmd}\\b`, 'm'));
    expect(r.stdout).toContain('Examples:');
    expect(r.stdout).toContain('--data-dir');
  });

  it('every command has help text with an example', async () => {
    for (const cmd of ['version', 'server', 'up']) {
      const r = await runCli([cmd, '--help']);
      expect(r.code, cmd).toBe(0);
      expect(r.stdout, cmd).toContain('Examples:');
      expect(r.stdout, cmd).toContain(`$ nevertrust ${cmd}`);
    }
  });

  it('version prints the package version', async () => {
    const { version } = (await import('../../package.json', { with: { type: 'json' } })).default;
    expect((await runCli(['version'])).stdout.trim()).toBe(`nevertrust ${version}`);
    expect(JSON.parse((await runCli(['version', '--json'])).stdout)).toMatchObject({ version });
    expect((await runCli(['--version'])).stdout.trim()).toBe(version);
  });

  it('an unknown command or flag: short error, the relevant help, exit 2', async () => {
    const cmd = await runCli(['frobnicate']);
    expect(cmd.code).toBe(2);
    expect(cmd.stderr).toMatch(/unknown command 'frobnicate'/);
    expect(cmd.stderr).toContain('Usage: nevertrust');
    const flag = await runCli(['server', '--frobnicate']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/unknown option '--frobnicate'/);
    expect(flag.stderr).toContain('Usage: nevertrust server');
    const level = await runCli(['--log-level', 'loud', 'version']);
    expect(level.code).toBe(2);
    expect(level.stderr).toMatch(/Allowed choices are/);
    const duration = await runCli(['demo', '--duration', 'forever']);
    expect(duration.code).toBe(2);
    expect(duration.stderr).toMatch(/--duration: "forever" is not a duration/);
    expect(duration.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('a bad config file: file:line:column, field and hint on stderr, exit 2, no stack trace', async () => {
    const dir = tempDir();
    const f = join(dir, 'nevertrust.yaml');
    writeFileSync(f, 'server:\n  port: 8181\n  hots: 0.0.0.0\n');
    const r = await runCli(['--config', f, 'server', '--data-dir', join(dir, 'data')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${f}:3:3: server.hots: unknown key "hots" (hint: did you mean "host"?)`);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('a bad flag value names the flag', async () => {
    const r = await runCli(['server', '--port', 'http', '--data-dir', join(tempDir(), 'd')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/flag --port: server\.port: .*expected number/);
  });

  it('a port in use: one clear line, exit 1, nothing written to the data dir', async () => {
    const blocker = createServer();
    const port = await new Promise<number>((r) =>
      blocker.listen(0, '127.0.0.1', () => r((blocker.address() as { port: number }).port)),
    );
    const dataDir = join(tempDir(), 'data');
    const r = await runCli(['server', '--port', String(port), '--data-dir', dataDir]);
    blocker.close();
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(
      `nevertrust: 127.0.0.1:${port} is already in use (another nevertrust server?): stop it or pick another port with --port / server.port`,
    );
    const { existsSync } = await import('node:fs');
    expect(existsSync(dataDir)).toBe(false);
  });

  it('a data dir that is not writable: one clear line, exit 1', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'file'), 'x');
    const r = await runCli(['server', '--port', String(await freePort()), '--data-dir', join(dir, 'file', 'data')]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(
      /^nevertrust: data dir .* is not writable \(ENOTDIR\): pick another with --data-dir DIR/,
    );
  });

  it('an unreachable PostgreSQL: one clear line without the password, exit 1', async () => {
    const r = await runCli([
      'server',
      '--port',
      String(await freePort()),
      '--data-dir',
      tempDir(),
      '--database',
      'postgres://app:s3cret@127.0.0.1:1/nevertrust',
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(/^nevertrust: cannot reach PostgreSQL at 127\.0\.0\.1:1 \(ECONNREFUSED\)/);
    expect(r.stderr).not.toContain('s3cret');
  });

  it('server: says where it listens and where data lives, serves health, ready and metrics, stops cleanly on SIGTERM', async () => {
    const dataDir = join(tempDir(), 'data');
    const port = await freePort();
    const srv = await startCli(
      ['server', '--agent-port', '0', '--port', String(port), '--data-dir', dataDir],
      /Ctrl-C to stop/,
    );
    expect(srv.output()).toContain(`http://127.0.0.1:${port}`);
    expect(srv.output()).toContain(dataDir);
    const base = `http://127.0.0.1:${port}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', store: 'sqlite' });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain('nevertrust_http_requests_total');
    expect(metrics).toContain('nevertrust_ready 1');
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    expect((await fetch(`${base}/healthz`, { method: 'POST' })).status).toBe(405);
    srv.child.kill('SIGTERM');
    expect(await srv.exited).toBe(0);
    expect(srv.output()).toContain('"msg":"server stopped"');
  });

  it('server runs on PostgreSQL with --database', async () => {
    const { createTestDatabase } = await import('../support/postgres.js');
    const url = await createTestDatabase();
    const port = await freePort();
    const srv = await startCli(
      ['server', '--agent-port', '0', '--port', String(port), '--data-dir', tempDir(), '--database', url],
      /Ctrl-C to stop/,
    );
    expect(await (await fetch(`http://127.0.0.1:${port}/readyz`)).json()).toMatchObject({ store: 'postgres' });
    expect(srv.output()).not.toContain('test-only-password');
    srv.child.kill('SIGINT');
    expect(await srv.exited).toBe(0);
  });

  it('NEVERTRUST_SERVER_PORT picks the port', async () => {
    const port = await freePort();
    // `up` enrolls this machine as a device and collects its posture (apt alone takes seconds under load).
    const srv = await startCli(['up', '--agent-port', '0', '--data-dir', tempDir()], /Ctrl-C to stop/, {
      env: { NEVERTRUST_SERVER_PORT: String(port) },
      timeoutMs: 90_000,
    });
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    srv.child.kill('SIGINT');
    expect(await srv.exited).toBe(0);
  }, 120_000);
});
