import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort, runCli, startCli } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

describe('audit configuration in the server', () => {
  it('checkpoints go to the configured file outside the database, and audit verify checks against it', async () => {
    const dir = tempDir();
    const cpFile = join(dir, 'offsite', 'checkpoints.ndjson');
    const cfg = join(dir, 'nevertrust.yaml');
    writeFileSync(cfg, `audit:\n  checkpoint_file: ${cpFile}\n  checkpoint_every: 1\n  checkpoint_interval: 1s\n`);
    const port = await freePort();
    const data = join(dir, 'data');
    const srv = await startCli(
      ['--config', cfg, 'server', '--port', String(port), '--agent-port', '0', '--data-dir', data],
      /Ctrl-C to stop/,
    );
    // Admin actions are audit events: a refused one and an allowed one.
    await fetch(`http://127.0.0.1:${port}/v1/admin/entries`);
    const token = readFileSync(join(data, 'admin.token'), 'utf8').trim();
    await fetch(`http://127.0.0.1:${port}/v1/admin/entries`, { headers: { authorization: `Bearer ${token}` } });
    for (let i = 0; i < 50 && !existsSync(cpFile); i++) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 1500));
    srv.child.kill('SIGTERM');
    expect(await srv.exited).toBe(0);
    const lines = readFileSync(cpFile, 'utf8').trim().split('\n');
    expect(lines.length).toBeGreaterThan(0);
    expect(JSON.parse(lines[lines.length - 1] ?? '{}')).toMatchObject({ tree_size: expect.any(Number) });
    const verify = await runCli(['--config', cfg, 'audit', 'verify', '--data-dir', data, '--from-checkpoint', cpFile]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  });

  it('an unknown audit key is refused with its line', async () => {
    const dir = tempDir();
    const cfg = join(dir, 'nevertrust.yaml');
    writeFileSync(cfg, 'audit:\n  checkpoint_fille: x\n');
    const r = await runCli(['--config', cfg, 'server', '--data-dir', join(dir, 'd')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `${cfg}:2:3: audit.checkpoint_fille: unknown key "checkpoint_fille" (hint: did you mean "checkpoint_file"?)`,
    );
  });
});

describe('start-up is recorded', () => {
  it('the policy snapshot accepted while plugins register is in the audit log (the audit plugin registers after it)', async () => {
    const dir = tempDir();
    const port = await freePort();
    const data = join(dir, 'data');
    const srv = await startCli(
      [
        'server',
        '--port',
        String(port),
        '--agent-port',
        '0',
        '--data-dir',
        data,
        '--policies',
        join(import.meta.dirname, '../../examples/policies/payments'),
      ],
      /Ctrl-C to stop/,
    );
    try {
      const token = readFileSync(join(data, 'admin.token'), 'utf8').trim();
      let events: { kind: string; reason?: string }[] = [];
      for (let i = 0; i < 50 && events.length === 0; i++) {
        const res = await fetch(`http://127.0.0.1:${port}/v1/admin/audit/events?kind=policy.changed`, {
          headers: { authorization: `Bearer ${token}` },
        });
        events = ((await res.json()) as { events: typeof events }).events;
        if (events.length === 0) await new Promise((r) => setTimeout(r, 100));
      }
      expect(events.map((e) => e.reason)).toEqual(['policy snapshot accepted']);
    } finally {
      srv.child.kill('SIGTERM');
      await srv.exited;
    }
  });
});
