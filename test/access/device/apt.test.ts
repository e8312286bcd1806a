/**
 * The updates collector's apt-get command against a real apt, on a package state built for the case:
 * a kernel security update that needs a new package (a new ABI), which `apt-get upgrade` keeps back.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAptGetSimulation, runProbe } from '../../../src/access/device/index.js';
import { APT_GET_ARGS } from '../../../src/access/device/posture/updates.js';
import { tempDir } from '../../support/tmp.js';

const pkg = (name: string, version: string, extra: string) =>
  `Package: ${name}\nPriority: optional\nSection: kernel\nMaintainer: t <t@example.org>\nArchitecture: all\nVersion: ${version}\n${extra}Description: ${name}\n\n`;

/** apt options that point apt at a private state: installed packages and one local security suite. */
function aptState(): string[] {
  const d = tempDir();
  for (const sub of ['repo', 'lists/partial', 'cache/archives/partial', 'parts'])
    mkdirSync(join(d, sub), { recursive: true });
  const installed = 'Status: install ok installed\n';
  writeFileSync(
    join(d, 'status'),
    pkg('kernel-meta', '1.0', `${installed}Depends: kernel-abi-1\n`) + pkg('kernel-abi-1', '1.0', installed),
  );
  writeFileSync(
    join(d, 'repo', 'Packages'),
    pkg('kernel-meta', '2.0', 'Depends: kernel-abi-2\nFilename: kernel-meta_2.0_all.deb\nSize: 100\n') +
      pkg('kernel-abi-2', '2.0', 'Filename: kernel-abi-2_2.0_all.deb\nSize: 100\n'),
  );
  writeFileSync(
    join(d, 'repo', 'Release'),
    'Origin: Debian\nLabel: Debian-Security\nSuite: stable-security\nVersion: 12\nCodename: bookworm-security\nArchitectures: all amd64\nComponents: main\n',
  );
  writeFileSync(join(d, 'sources.list'), `deb [trusted=yes] file:${join(d, 'repo')} ./\n`);
  const o = (k: string, v: string) => ['-o', `${k}=${v}`];
  return [
    ...o('Dir::State::status', join(d, 'status')),
    ...o('Dir::State::Lists', join(d, 'lists')),
    ...o('Dir::Cache', join(d, 'cache')),
    ...o('Dir::Etc::SourceList', join(d, 'sources.list')),
    ...o('Dir::Etc::SourceParts', join(d, 'parts')),
    ...o('Dir::Etc::Preferences', join(d, 'none')),
    ...o('Dir::Etc::PreferencesParts', join(d, 'parts')),
    ...o('Debug::NoLocking', '1'),
    ...o('APT::Sandbox::User', 'root'),
  ];
}

describe.skipIf(!existsSync('/usr/bin/apt-get'))('apt-get simulation (real apt)', () => {
  it('a kernel security update that needs a new package counts as pending (upgrade would keep it back)', async () => {
    const state = aptState();
    const update = await runProbe('apt-get', [...state, 'update'], { timeoutMs: 60_000 });
    expect(update.kind === 'exited' && update.code, JSON.stringify(update)).toBe(0);
    const r = await runProbe('apt-get', [...state, ...APT_GET_ARGS], { timeoutMs: 60_000 });
    if (r.kind !== 'exited') throw new Error(r.reason);
    expect(r.code, r.stderr).toBe(0);
    expect(parseAptGetSimulation(r.stdout)).toEqual({ pending_total: 2, pending_security: 2 });
  }, 120_000);
});
