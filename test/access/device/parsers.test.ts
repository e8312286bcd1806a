/**
 * Each posture parser on recorded outputs: this machine's own (`*-this-machine*`, captured with the
 * real commands), hand-written realistic ones for setups this machine lacks, and hostile ones.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  combineFirewall,
  parseAptCheck,
  parseAptGetSimulation,
  parseFirewalldState,
  parseIptablesRules,
  parseLsblk,
  parseNftRuleset,
  parseOsRelease,
  parseUfwStatus,
} from '../../../src/access/device/index.js';
import { verdictOf } from '../../../src/access/device/posture/firewall.js';
import { postureDiskSchema, postureOsSchema, postureUpdatesSchema } from '../../../src/api/index.js';

const fixture = (name: string): string => readFileSync(resolve(import.meta.dirname, 'fixtures', name), 'utf8');

describe('os-release', () => {
  it("reads this machine's /etc/os-release (recorded)", () => {
    const os = parseOsRelease(fixture('os-release-this-machine'));
    expect(os).toEqual({ name: 'Debian GNU/Linux', version: '12', id: 'debian' });
    expect(postureOsSchema.safeParse(os).success).toBe(true);
  });
  it('unquotes single quotes and escapes, ignores comments and junk lines', () => {
    const os = parseOsRelease(
      `# comment\nNAME='Fedora Linux'\nVERSION_ID=40\nID=fedora\nPRETTY_NAME="Fedora \\"Forty\\""\nnot a line\n`,
    );
    expect(os).toEqual({ name: 'Fedora Linux', version: '40', id: 'fedora' });
  });
  it('a rolling release without VERSION_ID still has a name, and says why the version is missing', () => {
    const os = parseOsRelease('NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n');
    expect(os).toMatchObject({ name: 'Arch Linux', id: 'arch', version: 'rolling' });
    const noVersion = parseOsRelease('NAME="Arch Linux"\nID=arch\n');
    expect(noVersion.version).toBeNull();
    expect(noVersion.reason).toMatch(/VERSION_ID/);
  });
  it.each([
    ['empty', ''],
    ['garbage', '\u0000\u0001binary\nnothing=here\n'],
    ['unterminated quote', 'NAME="Debian\nID="debian\n'],
  ])('%s text is unknown with a reason', (_, text) => {
    const os = parseOsRelease(text);
    expect(os.name).toBeNull();
    expect(os.reason).toBeTruthy();
    expect(postureOsSchema.safeParse(os).success).toBe(true);
  });
  it('control characters and overlong values are clipped to the wire bounds', () => {
    const os = parseOsRelease(`NAME="evil\u001b[31m${'x'.repeat(5000)}"\nID=x\n`);
    expect(postureOsSchema.safeParse(os).success).toBe(true);
    expect(os.name?.length).toBeLessThanOrEqual(256);
  });
});

describe('updates (apt)', () => {
  it("counts this machine's recorded `apt-get -s upgrade`: Inst lines, security by a -security origin", () => {
    const text = fixture('apt-get-upgrade-this-machine.txt');
    const inst = text.split('\n').filter((l) => l.startsWith('Inst '));
    const sec = inst.filter((l) => /\(.*-security.*\)/.test(l));
    const c = parseAptGetSimulation(text);
    expect(c).toEqual({ pending_total: inst.length, pending_security: sec.length });
    expect(inst.length).toBeGreaterThan(0);
  });
  it('Ubuntu output: -security in the package name does not count, in the origin it does', () => {
    expect(parseAptGetSimulation(fixture('apt-get-upgrade-ubuntu.txt'))).toEqual({
      pending_total: 4,
      pending_security: 2,
    });
  });
  it('an up-to-date system has zero pending', () => {
    expect(parseAptGetSimulation(fixture('apt-get-upgrade-none.txt'))).toEqual({
      pending_total: 0,
      pending_security: 0,
    });
  });
  it('a newly installed package counts, kept-back ones are not listed and so not counted', () => {
    // A kernel security update with a new ABI package, and two packages kept back.
    expect(parseAptGetSimulation(fixture('apt-get-upgrade-new-kernel-held-back.txt'))).toEqual({
      pending_total: 2,
      pending_security: 2,
    });
    // Only kept-back packages: apt-get upgrade lists no Inst line for them (their origin is unknown here).
    expect(parseAptGetSimulation(fixture('apt-get-upgrade-only-held.txt'))).toEqual({
      pending_total: 0,
      pending_security: 0,
    });
  });
  it('a translated summary (a locale other than C leaking in) is unknown, not "0 pending"', () => {
    const c = parseAptGetSimulation(fixture('apt-get-upgrade-de.txt'));
    expect(c.pending_security).toBeNull();
    expect(c.reason).toMatch(/no summary line/);
  });
  it.each([
    ['CRLF line ends', fixture('apt-get-upgrade-ubuntu.txt').replace(/\n/g, '\r\n'), 4, 2],
    ['no trailing newline', fixture('apt-get-upgrade-ubuntu.txt').trimEnd(), 4, 2],
  ])('%s still parse', (_, text, total, security) => {
    expect(parseAptGetSimulation(text)).toEqual({ pending_total: total, pending_security: security });
  });
  it.each([
    ['empty', ''],
    [
      'only the NOTE banner (apt-get killed early)',
      fixture('apt-get-upgrade-ubuntu.txt').split('Reading')[0] as string,
    ],
    ['binary garbage', '\u0000\u00ff\u0001Inst\u0000 (\n\u0007'],
    [
      'an Inst line without an origin',
      'Inst foo [1] 2\n1 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n',
    ],
    ['garbage', 'E: Could not open lock file\nsomething else\n'],
    ['truncated (summary but fewer Inst lines)', fixture('apt-get-upgrade-this-machine.txt').slice(0, 4000)],
    ['Inst lines cut before the summary', fixture('apt-get-upgrade-ubuntu.txt').replace(/^\d+ upgraded.*$/m, '')],
  ])('%s output is unknown, never "0 pending"', (_, text) => {
    const c = parseAptGetSimulation(text);
    expect(c.pending_security).toBeNull();
    expect(c.pending_total).toBeNull();
    expect(c.reason).toBeTruthy();
  });
  it('apt-check prints <total>;<security> on stderr', () => {
    expect(parseAptCheck(fixture('apt-check-pending.txt'))).toEqual({ pending_total: 14, pending_security: 3 });
    expect(parseAptCheck('0;0\n')).toEqual({ pending_total: 0, pending_security: 0 });
  });
  it.each(['', 'E: Error', '3;', '2;5', '99999999999;1'])('apt-check %j is unknown', (s) => {
    expect(parseAptCheck(s).pending_security).toBeNull();
  });
  it('the wire refuses counts from an unknown source and unknown counts without a reason', () => {
    expect(postureUpdatesSchema.safeParse({ pending_security: 0, pending_total: 0, source: 'unknown' }).success).toBe(
      false,
    );
    expect(postureUpdatesSchema.safeParse({ pending_security: null, pending_total: null, source: 'apt' }).success).toBe(
      false,
    );
  });
});

describe('root encryption (lsblk)', () => {
  it("this machine's recorded lsblk: / on vda, not encrypted", () => {
    const d = parseLsblk(fixture('lsblk-this-machine.json'));
    expect(d.root_encrypted).toBe(false);
    expect(d.detail).toMatch(/vda/);
  });
  it('LUKS root: nvme0n1p3 crypto_LUKS → luks-… crypt → /', () => {
    const d = parseLsblk(fixture('lsblk-luks-root.json'));
    expect(d.root_encrypted).toBe(true);
    expect(d.detail).toContain('nvme0n1p3 (part crypto_LUKS) > luks-6f1d2c3a-9a55-4c0e-8a3e-1f9b7e2d4c11 (crypt ext4)');
  });
  it('LVM on LUKS: the crypt device is a parent of the logical volume mounted at /', () => {
    const d = parseLsblk(fixture('lsblk-lvm-on-luks.json'));
    expect(d.root_encrypted).toBe(true);
    expect(d.detail).toMatch(/sda3_crypt \(crypt LVM2_member\) > debian--vg-root \(lvm ext4\)/);
  });
  it('unencrypted root, even with an encrypted /home beside it', () => {
    const d = parseLsblk(fixture('lsblk-unencrypted.json'));
    expect(d.root_encrypted).toBe(false);
    expect(d.detail).toMatch(/sda1/);
  });
  it('btrfs root among several mountpoints ("/" not first)', () => {
    const d = parseLsblk(fixture('lsblk-btrfs-subvolumes.json'));
    expect(d.root_encrypted).toBe(false);
    expect(d.detail).toMatch(/nvme0n1p2 \(part btrfs\)/);
  });
  it('old util-linux (only `mountpoint`): LVM on LUKS still found', () => {
    expect(parseLsblk(fixture('lsblk-old-util-linux.json')).root_encrypted).toBe(true);
  });
  it('LUKS inside LVM: the logical volume holds the LUKS header, the crypt device on it is mounted at /', () => {
    const d = parseLsblk(fixture('lsblk-luks-in-lvm.json'));
    expect(d.root_encrypted).toBe(true);
    expect(d.detail).toContain('sda2 (part LVM2_member) > vg0-root (lvm crypto_LUKS) > root_crypt (crypt xfs)');
  });
  it('btrfs on LUKS, / the last of several subvolume mounts', () => {
    const d = parseLsblk(fixture('lsblk-btrfs-on-luks.json'));
    expect(d.root_encrypted).toBe(true);
    expect(d.detail).toMatch(/nvme0n1p2 \(part crypto_LUKS\) > luks-0b8e9c1d-\S+ \(crypt btrfs\)/);
  });
  it('btrfs with old util-linux (one mountpoint per device, not /) is unknown, never "not encrypted"', () => {
    expect(parseLsblk(fixture('lsblk-btrfs-old-util-linux.json')).root_encrypted).toBeNull();
  });
  it("an overlay root in a container on an encrypted host is unknown: lsblk shows the host's disks, not /", () => {
    const d = parseLsblk(fixture('lsblk-overlay-container-encrypted-host.json'));
    expect(d.root_encrypted).toBeNull();
    expect(d.detail).toMatch(/container, overlay/);
  });
  it('a dm-verity root is not encrypted although lsblk calls it "crypt" (CRYPT-VERITY- device-mapper UUID)', () => {
    const d = parseLsblk(fixture('lsblk-dm-verity-root.json'));
    expect(d.root_encrypted).toBe(false);
    expect(d.detail).toMatch(/sda2 \(part erofs\) > root \(crypt erofs\)/);
  });
  it('a dm-integrity root is not encrypted either (CRYPT-INTEGRITY-)', () => {
    const d = parseLsblk(fixture('lsblk-dm-integrity-root.json'));
    expect(d.root_encrypted).toBe(false);
    expect(d.detail).toContain('vda2 (part DM_integrity) > root-integrity (crypt ext4)');
  });
  it('plain dm-crypt (no signature under the crypt device) and BitLocker count as encrypted', () => {
    const stack = (sig: string | null) =>
      JSON.stringify({
        blockdevices: [
          {
            name: 'sda',
            type: 'disk',
            children: [
              { name: 'sda1', type: 'part', fstype: sig, children: [{ name: 'c', type: 'crypt', mountpoints: ['/'] }] },
            ],
          },
        ],
      });
    expect(parseLsblk(stack(null)).root_encrypted).toBe(true);
    expect(parseLsblk(stack('BitLocker')).root_encrypted).toBe(true);
    expect(parseLsblk(stack('ext4')).root_encrypted).toBe(false);
  });
  it('a container (/ not listed) is unknown with a reason', () => {
    const d = parseLsblk(fixture('lsblk-container.json'));
    expect(d.root_encrypted).toBeNull();
    expect(d.detail).toMatch(/container/);
  });
  it('a root on two legs is encrypted only when both are', () => {
    const leg = (name: string, crypt: boolean) => ({
      name,
      type: 'disk',
      children: [
        crypt
          ? {
              name: `${name}1`,
              type: 'part',
              children: [
                { name: `${name}c`, type: 'crypt', children: [{ name: 'md0', type: 'raid1', mountpoints: ['/'] }] },
              ],
            }
          : { name: `${name}1`, type: 'part', children: [{ name: 'md0', type: 'raid1', mountpoints: ['/'] }] },
      ],
    });
    expect(parseLsblk(JSON.stringify({ blockdevices: [leg('sda', true), leg('sdb', true)] })).root_encrypted).toBe(
      true,
    );
    expect(parseLsblk(JSON.stringify({ blockdevices: [leg('sda', true), leg('sdb', false)] })).root_encrypted).toBe(
      false,
    );
  });
  it.each([
    ['empty', ''],
    ['garbage', 'lsblk: unknown column: MOUNTPOINTS'],
    ['truncated JSON', fixture('lsblk-luks-root.json').slice(0, 700)],
    ['wrong shape', '{"blockdevices": [{"name": 3}]}'],
    ['a byte-order mark before the JSON', `\ufeff${fixture('lsblk-luks-root.json')}`],
    ['no blockdevices', '{}'],
    ['lsblk text output, not JSON', 'NAME   TYPE FSTYPE MOUNTPOINT\nsda    disk\n└─sda1 part ext4   /\n'],
    ['null', 'null'],
  ])('%s is unknown with a reason, never "encrypted"', (_, text) => {
    const d = parseLsblk(text);
    expect(d.root_encrypted).toBeNull();
    expect(d.detail.length).toBeGreaterThan(0);
    expect(postureDiskSchema.safeParse(d).success).toBe(true);
  });
  it('a hostile deep nesting does not blow the stack', () => {
    const n = 20_000;
    const open = '{"name":"d","type":"part","children":['.repeat(n);
    const json = `{"blockdevices":[${open}{"name":"x","type":"crypt","mountpoints":["/"]}${']}'.repeat(n)}]}`;
    const d = parseLsblk(json);
    expect(d.root_encrypted).toBeNull();
  });
});

describe('firewall', () => {
  it('nftables with a drop policy on a hooked input chain is active', () => {
    const v = parseNftRuleset(fixture('nft-drop-policy.txt'));
    expect(v).toEqual({ active: true, reason: 'nftables inet filter/input: policy drop' });
  });
  it('nftables with accept policies (a "drop" in a comment, a drop in an unhooked chain, a nat chain) is inactive', () => {
    expect(parseNftRuleset(fixture('nft-accept-only.txt')).active).toBe(false);
  });
  it('a dormant table filters nothing, even with a drop policy', () => {
    const text = fixture('nft-drop-policy.txt').replace(
      'table inet filter {\n',
      'table inet filter {\n\tflags dormant\n',
    );
    expect(text).toContain('flags dormant');
    expect(parseNftRuleset(text).active).toBe(false);
  });
  it('a reject rule in a hooked chain counts', () => {
    const text =
      'table ip filter {\n\tchain INPUT {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 23 reject\n\t}\n}\n';
    expect(parseNftRuleset(text).active).toBe(true);
  });
  it('an empty ruleset is inactive; truncated or garbage output is unknown', () => {
    expect(parseNftRuleset('').active).toBe(false);
    expect(parseNftRuleset(fixture('nft-truncated.txt')).active).toBeNull();
    expect(parseNftRuleset('Error: syntax error\n}}}').active).toBeNull();
    expect(parseNftRuleset('}\n').active).toBeNull();
  });
  it('iptables: ACCEPT-only is inactive, a REJECT rule or INPUT DROP policy is active', () => {
    expect(parseIptablesRules(fixture('iptables-accept-only.txt')).active).toBe(false);
    expect(parseIptablesRules(fixture('iptables-reject-rule.txt')).active).toBe(true);
    expect(parseIptablesRules('-P INPUT DROP\n-P FORWARD DROP\n-P OUTPUT ACCEPT\n')).toEqual({
      active: true,
      reason: 'iptables: -P INPUT DROP',
    });
  });
  it('iptables: empty, garbage and policy-less output is unknown', () => {
    expect(parseIptablesRules('').active).toBeNull();
    expect(parseIptablesRules('<html>oops</html>').active).toBeNull();
    expect(parseIptablesRules('-N DOCKER\n').active).toBeNull();
  });
  it('not root: "Permission denied" is unknown with "needs root", not inactive', () => {
    const v = verdictOf(
      { file: 'iptables', parse: parseIptablesRules, okCodes: [0] },
      { kind: 'exited', code: 4, stdout: '', stderr: fixture('iptables-not-root.stderr.txt') },
    );
    expect(v?.active).toBeNull();
    expect(v?.reason).toMatch(/iptables: needs root/);
    const ufw = verdictOf(
      { file: 'ufw', parse: parseUfwStatus, okCodes: [0] },
      { kind: 'exited', code: 1, stdout: '', stderr: 'ERROR: You need to be root to run this script\n' },
    );
    expect(ufw).toEqual({ active: null, reason: 'ufw: needs root (ERROR: You need to be root to run this script)' });
  });
  it('a tool that is not installed gives no verdict at all', () => {
    expect(
      verdictOf({ file: 'nft', parse: parseNftRuleset, okCodes: [0] }, { kind: 'absent', reason: 'x' }),
    ).toBeUndefined();
  });
  it('ufw and firewalld states', () => {
    expect(parseUfwStatus(fixture('ufw-inactive.txt')).active).toBe(false);
    expect(parseUfwStatus(fixture('ufw-active.txt')).active).toBe(true);
    expect(parseUfwStatus('').active).toBeNull();
    expect(parseUfwStatus('Status: activated maybe').active).toBeNull();
    expect(parseFirewalldState('running\n').active).toBe(true);
    expect(parseFirewalldState('not running\n').active).toBe(false);
    expect(parseFirewalldState('FirewallD is not running').active).toBeNull();
  });
  it('combined: any active wins; inactive only when every installed tool said so; else unknown', () => {
    const on = { active: true, reason: 'ufw: Status: active' };
    const off = { active: false, reason: 'nftables: the ruleset is empty' };
    const unk = { active: null, reason: 'iptables: needs root' };
    expect(
      combineFirewall([
        { tool: 'nftables', verdict: off },
        { tool: 'ufw', verdict: on },
      ]),
    ).toMatchObject({
      active: true,
      tool: 'ufw',
    });
    expect(combineFirewall([{ tool: 'nftables', verdict: off }])).toMatchObject({ active: false, tool: null });
    expect(
      combineFirewall([
        { tool: 'nftables', verdict: off },
        { tool: 'iptables', verdict: unk },
      ]),
    ).toMatchObject({
      active: null,
      reason: expect.stringContaining('needs root'),
    });
    expect(combineFirewall([])).toMatchObject({ active: null, reason: expect.stringMatching(/no firewall tool/) });
  });
});
