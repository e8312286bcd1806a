/**
 * The main job, end to end: `nevertrust demo` runs the server, an agent, the three example services
 * and the traffic generator, and exits 0 only if every expected call was allowed, every attack denied,
 * and the audit log verifies. `nevertrust up` shows allowed and denied traffic and stops cleanly.
 */
import { describe, expect, it } from 'vitest';
import { runCli, startCli } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

describe('the local mesh', () => {
  it('nevertrust demo passes: allows what the policy allows, denies every attack, audit verifies', async () => {
    const r = await runCli(['demo', '--duration', '4s', '--data-dir', tempDir(), '--port', '0', '--agent-port', '0'], {
      timeoutMs: 90_000,
    });
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/✓ attack lateral movement: audit-service → payment-service\s+\d+\/\d+/);
    expect(r.stdout).toMatch(/✓ attack path trick: \/v1\/charges\/\.\.\/admin/);
    expect(r.stdout).toMatch(/✓ attack no client certificate/);
    expect(r.stdout).toMatch(/✓ allow {2}gateway creates a charge/);
    expect(r.stdout).toMatch(/audit log: verifies \((\d+) events/);
    expect(r.stdout).toMatch(/demo passed/);
    // Every attack is a recorded denial, the TLS-level refusal of a client without a certificate included.
    const attacks = [...r.stdout.matchAll(/✓ attack .*? (\d+)\/(\d+)/g)].reduce((n, m) => n + Number(m[2]), 0);
    const denied = Number(/decisions: \d+ allowed, (\d+) denied/.exec(r.stdout)?.[1]);
    expect(attacks).toBeGreaterThan(0);
    expect(denied).toBeGreaterThanOrEqual(attacks);
  }, 120_000);

  it('nevertrust up shows allowed and denied traffic with identities, then stops on Ctrl-C', async () => {
    const up = await startCli(
      ['up', '--data-dir', tempDir(), '--port', '0', '--agent-port', '0', '--interval', '100ms'],
      /decisions: [1-9]\d* allowed, [1-9]\d* denied/,
      { timeoutMs: 60_000 },
    );
    const out = up.output();
    expect(out).toContain('spiffe://example.org/ns/payments/sa/payment-service');
    expect(out).toMatch(/curl -s -X POST http:\/\/127\.0\.0\.1:\d+\/charge/);
    // The curl line printed for people works.
    const port = /curl -s -X POST http:\/\/127\.0\.0\.1:(\d+)\/charge/.exec(out)?.[1];
    const res = await fetch(`http://127.0.0.1:${port}/charge`, { method: 'POST', body: '{"amount": 4200}' });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ upstream_status: 201 });
    up.child.kill('SIGINT');
    expect(await up.exited).toBe(0);
  }, 120_000);
});
