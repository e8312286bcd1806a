/** The probe runner on real processes: absent tools, timeouts, output caps, exit codes, no shell. */
import { describe, expect, it } from 'vitest';
import { runProbe } from '../../../src/access/device/index.js';
import { PROBE_PATH } from '../../../src/access/device/posture/exec.js';

describe('runProbe', () => {
  it('runs a real command and returns its output', async () => {
    const r = await runProbe('uname', ['-r']);
    expect(r).toMatchObject({ kind: 'exited', code: 0 });
    expect(r.kind === 'exited' && r.stdout.trim().length).toBeGreaterThan(0);
  });
  it('a tool that is not installed is "absent"', async () => {
    expect(await runProbe('nevertrust-no-such-tool', [])).toEqual({
      kind: 'absent',
      reason: 'nevertrust-no-such-tool is not installed',
    });
  });
  it('a non-zero exit keeps stdout and stderr for the parser', async () => {
    const r = await runProbe('ls', ['/nevertrust-no-such-dir']);
    expect(r).toMatchObject({ kind: 'exited', code: 2 });
    expect(r.kind === 'exited' && r.stderr).toMatch(/No such file/);
  });
  it('a hanging command is killed at its timeout', async () => {
    const t0 = Date.now();
    const r = await runProbe('sleep', ['30'], { timeoutMs: 200 });
    expect(r.kind).toBe('failed');
    expect(Date.now() - t0).toBeLessThan(5000);
  });
  it('output over the cap is refused, not truncated into a wrong answer', async () => {
    const r = await runProbe('head', ['-c', '100000', '/dev/zero'], { maxBytes: 1000 });
    expect(r).toMatchObject({ kind: 'failed', reason: expect.stringMatching(/output over 1000 bytes/) });
  });
  it('an abort (the collection deadline) stops the command', async () => {
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 100);
    const r = await runProbe('sleep', ['30'], { signal: ctl.signal });
    expect(r).toMatchObject({ kind: 'failed', reason: expect.stringMatching(/deadline/) });
  });
  it('no shell: metacharacters are plain arguments', async () => {
    const r = await runProbe('echo', ['$(id)', ';', 'ls']);
    expect(r.kind === 'exited' && r.stdout).toBe('$(id) ; ls\n');
  });
  it("the command sees the fixed PATH and the C locale, not the caller's environment", async () => {
    const r = await runProbe('env', []);
    const env = r.kind === 'exited' ? r.stdout : '';
    expect(env).toContain(`PATH=${PROBE_PATH}\n`);
    expect(env).toContain('LC_ALL=C\n');
    expect(env).not.toMatch(/^HOME=/m);
  });
});
