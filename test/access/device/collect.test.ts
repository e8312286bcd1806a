/** The collector on this machine: a plausible report, valid on the wire, unknowns with reasons. */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { collectEdr, collectPosture, matchEdr, parseOsRelease } from '../../../src/access/device/index.js';
import { type PostureReport, postureFacts, postureReportSchema } from '../../../src/api/index.js';

describe('collectPosture on this machine', () => {
  it('produces a report valid by the schema, matching /etc/os-release, unknowns carrying reasons', async () => {
    const r = await collectPosture({ deviceId: 'ci-host', edrProcessNames: ['falcon-sensor', 'wdavdaemon'] });
    expect(postureReportSchema.safeParse(r).success).toBe(true);
    expect(r.device_id).toBe('ci-host');
    expect(Date.now() - Date.parse(r.collected_at)).toBeLessThan(120_000);
    const os = parseOsRelease(readFileSync('/etc/os-release', 'utf8'));
    expect(r.os.name).toBe(os.name);
    expect(r.os.id).toBe(os.id);
    expect(r.kernel).toBe(readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim());
    // What this machine is, read independently: apt present → counted by apt; / on a plain disk or
    // partition → not encrypted; / not on a block device (a container's overlay) → unknown.
    if (existsSync('/usr/bin/apt-get')) expect(r.updates.source).toBe('apt');
    expect(r.updates.pending_total ?? 0).toBeGreaterThanOrEqual(r.updates.pending_security ?? 0);
    const rootSource =
      readFileSync('/proc/mounts', 'utf8')
        .split('\n')
        .map((l) => l.split(' '))
        .find((f) => f[1] === '/')?.[0] ?? '';
    if (/^\/dev\/(vd|sd|xvd|nvme|mmcblk)/.test(rootSource)) expect(r.disk.root_encrypted).toBe(false);
    else if (!rootSource.startsWith('/dev/')) expect(r.disk.root_encrypted).toBeNull();
    expect(r.edr).toMatchObject({ active: false, running: [] });
    for (const [name, value, reason] of [
      ['os', r.os.name, r.os.reason],
      ['updates', r.updates.pending_security, r.updates.reason],
      ['firewall', r.firewall.active, r.firewall.reason],
    ] as const) {
      if (value === null) expect(reason, `${name} is unknown without a reason`).toBeTruthy();
    }
    if (r.disk.root_encrypted === null) expect(r.disk.detail).toBeTruthy();
  }, 120_000);

  it('a signal not done by the deadline is unknown with a reason, and the report still comes', async () => {
    const t0 = Date.now();
    const r = await collectPosture({ deviceId: 'ci-host', timeoutMs: 1 });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(postureReportSchema.safeParse(r).success).toBe(true);
    // apt-get takes seconds: it cannot have finished within 1 ms.
    expect(r.updates).toMatchObject({
      source: 'unknown',
      pending_security: null,
      reason: expect.stringMatching(/deadline/),
    });
  });

  it('a bad device id is refused', async () => {
    await expect(collectPosture({ deviceId: '../etc', timeoutMs: 1 })).rejects.toThrow();
  });
});

describe('EDR from /proc', () => {
  it('finds a configured process that really runs, by its /proc comm', async () => {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      await new Promise((r) => child.once('spawn', r));
      const edr = await collectEdr(['falcon-sensor', 'sleep']);
      expect(edr).toEqual({ active: true, running: ['sleep'] });
    } finally {
      child.kill('SIGKILL');
    }
  });
  it('names longer than the kernel keeps (15 bytes) match on their first 15', () => {
    expect(matchEdr(['ds_agent_helper'], ['ds_agent_helper_daemon']).active).toBe(true);
  });
  it('no names configured: inactive with a reason', () => {
    expect(matchEdr(['falcon-sensor'], [])).toEqual({
      active: false,
      running: [],
      reason: 'no EDR process names configured',
    });
  });
  it('an unreadable /proc: inactive with a reason', async () => {
    const edr = await collectEdr(['sleep'], '/nevertrust-no-such-proc');
    expect(edr.active).toBe(false);
    expect(edr.reason).toMatch(/ENOENT/);
  });
});

describe('unknown is never compliant', () => {
  const base: PostureReport = {
    device_id: 'd1',
    collected_at: new Date().toISOString(),
    os: { name: 'Debian GNU/Linux', version: '12', id: 'debian' },
    kernel: '6.1.0',
    updates: { pending_security: 0, pending_total: 0, source: 'apt', checked_at: new Date().toISOString() },
    disk: { root_encrypted: true, detail: 'encrypted' },
    firewall: { active: true, tool: 'nftables' },
    edr: { active: true, running: ['falcon-sensor'] },
    collector_version: 'nevertrust-linux/1',
  };
  it('a fully known, compliant report passes every fact', () => {
    expect(postureFacts(postureReportSchema.parse(base))).toEqual({
      encrypted: true,
      os_patched: true,
      firewall_active: true,
      edr_active: true,
      unknown: [],
    });
  });
  it('each unknown signal fails its fact and is named', () => {
    const r = postureReportSchema.parse({
      ...base,
      updates: { pending_security: null, pending_total: null, source: 'unknown', reason: 'not Debian' },
      disk: { root_encrypted: null, detail: 'container' },
      firewall: { active: null, tool: null, reason: 'needs root' },
    });
    expect(postureFacts(r)).toEqual({
      encrypted: false,
      os_patched: false,
      firewall_active: false,
      edr_active: true,
      unknown: ['disk', 'updates', 'firewall'],
    });
  });
  it('the wire refuses unknowns without reasons, extra fields, and oversized values', () => {
    const bad = [
      { ...base, firewall: { active: null, tool: null } },
      { ...base, extra: 1 },
      { ...base, kernel: 'x'.repeat(257) },
      { ...base, edr: { active: true, running: Array.from({ length: 33 }, (_, i) => `p${i}`) } },
      { ...base, edr: { active: true, running: [] } },
      { ...base, firewall: { active: true, tool: null, reason: 'x' } },
      { ...base, device_id: 'UPPER' },
      { ...base, collected_at: 'yesterday' },
      { ...base, os: { ...base.os, name: 'a\u0007b' } },
    ];
    for (const b of bad) expect(postureReportSchema.safeParse(b).success, JSON.stringify(b).slice(0, 200)).toBe(false);
  });
});
