/**
 * `nevertrust device …` (issue #22): on a device, `enroll`, `report`, `daemon` and `export --p12`
 * (its state directory: `--dir`, NEVERTRUST_DEVICE_DIR, default ~/.config/nevertrust/device); for
 * admins, `token create`, `list`, `show` and `revoke` through the admin API.
 */
import type { Command } from 'commander';
import type { DevicePosture, DeviceWire } from '../../api/devices.js';
import { adminClient } from '../admin-client.js';
import { confirm } from '../confirm.js';
import { CliError } from '../errors.js';
import { readPasswordFile } from '../password-file.js';
import { printJson, table } from '../output.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];
const ADMIN_SERVER_OPT = [
  '--server <url>',
  'server API URL (default: http://<server.host>:<server.port> from the config)',
] as const;
const DIR_OPT = [
  '--dir <dir>',
  'the device state directory (default: $NEVERTRUST_DEVICE_DIR or ~/.config/nevertrust/device)',
] as const;
const EDR_OPT = [
  '--edr <process>',
  'an EDR agent process name to look for (repeatable, e.g. falcon-sensor)',
  collect,
] as const;

const deviceApi = () => import('../../api/devices.js');
const device = () => import('../../access/device/index.js');
const adminPath = (id: string, tail = '') => `/v1/admin/devices/${encodeURIComponent(id)}${tail}`;

/** A duration flag in ms (`5m`, `60s`), checked when the command runs. */
async function durationMs(flag: string, text: string, min: number): Promise<number> {
  const { parseDuration } = await import('../../util/duration.js');
  let s: number;
  try {
    s = parseDuration(text);
  } catch (e) {
    throw new CliError(`${flag}: ${(e as Error).message}`, 2);
  }
  if (s * 1000 < min) throw new CliError(`${flag}: at least ${min / 1000} s`, 2);
  return s * 1000;
}

function postureLine(p: DevicePosture | null): string {
  if (!p) return '(no report yet)';
  const facts = (['managed', 'encrypted', 'os_patched', 'firewall_active', 'edr_active'] as const)
    .map((k) => `${k}=${p[k]}`)
    .join(' ');
  const unknown = p.unknown.length ? ` unknown=${p.unknown.join(',')}` : '';
  return `${p.compliant ? 'compliant' : 'NOT compliant'} (${p.source}, collected ${p.collected_at}) ${facts}${unknown}`;
}

function showDevice(d: DeviceWire): void {
  const rows: [string, string][] = [
    ['id', d.id],
    ['owner', d.owner],
    ['name', d.name ?? ''],
    ['spiffe_id', d.spiffe_id],
    ['enrolled_at', d.enrolled_at],
    ['cert_serial', d.cert_serial],
    ['cert_expires', d.cert_expires_at],
    ['renewed_at', d.renewed_at ?? ''],
    ['revoked_at', d.revoked_at ? `${d.revoked_at}${d.revoked_reason ? ` (${d.revoked_reason})` : ''}` : ''],
    ['posture', postureLine(d.posture)],
  ];
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(12)} ${v}\n`);
}

/** Reads a password from the terminal without echoing it. */
function promptHidden(question: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    if (!stdin.isTTY) {
      reject(
        new CliError('no password: give --password-file or set NEVERTRUST_P12_PASSWORD (stdin is not a terminal)', 2),
      );
      return;
    }
    process.stderr.write(question);
    stdin.setRawMode(true);
    stdin.resume();
    let text = '';
    const onData = (b: Buffer) => {
      for (const ch of b.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done();
        if (ch === '\u0003') return done(new CliError('aborted: nothing written'));
        if (ch === '\u007f') text = text.slice(0, -1);
        else text += ch;
      }
    };
    function done(err?: Error) {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(text);
    }
    stdin.on('data', onData);
  });
}

/** The export password: a file (first line), the environment, or asked twice on the terminal. */
async function p12Password(o: { passwordFile?: string }): Promise<string> {
  if (o.passwordFile) {
    const pw = readPasswordFile(o.passwordFile);
    if (!pw) throw new CliError(`--password-file: ${o.passwordFile} is empty`, 2);
    return pw;
  }
  const env = process.env.NEVERTRUST_P12_PASSWORD;
  if (env) return env;
  const a = await promptHidden('PKCS#12 password: ');
  if (!a) throw new CliError('an empty password is refused: the file holds the device key', 2);
  const b = await promptHidden('again: ');
  if (a !== b) throw new CliError('the passwords differ: nothing written', 2);
  return a;
}

export function registerDeviceCommands(program: Command): void {
  const dev = program
    .command('device')
    .description(
      'device identity and posture: enroll this machine, report its posture; admins issue tokens, list, revoke',
    )
    .addHelpText(
      'after',
      `
Examples (admin, on the server):
  $ nevertrust device token create --owner alice
Examples (on the device):
  $ nevertrust device enroll --server https://nevertrust.example:8081 --token <token>
  $ nevertrust device daemon                 # renews the certificate, reports posture every 5 min and on change
  $ nevertrust device export --p12 device.p12  # for a browser or the OS certificate store`,
    );

  dev
    .command('enroll')
    .description("enroll this device: a new P-256 key, a certificate from the trust domain's CA")
    .requiredOption('--server <url>', "the server's agent port, https://HOST:8081")
    .requiredOption('--token <token>', 'the enrollment token from `nevertrust device token create`')
    .option(
      '--device <id>',
      'the device id to ask for (default: this host name); must match a token made with --device',
    )
    .option('--name <text>', 'a name for people (default: the host name)')
    .option(...DIR_OPT)
    .option('--json', 'print device.json as JSON')
    .addHelpText(
      'after',
      `
The server's CA is checked against the token's pin before anything is sent; the token is used once.
The key never leaves the state directory (mode 0700, files 0600).

Examples:
  $ nevertrust device enroll --server https://nevertrust.example:8081 --token 3f2a…e1.9b41…07
  $ nevertrust device enroll --server https://10.0.0.5:8081 --token "$TOKEN" --device build-box-7 --dir /etc/nevertrust/device`,
    )
    .action(
      async (o: { server: string; token: string; device?: string; name?: string; dir?: string; json?: boolean }) => {
        const d = await device();
        const state = new d.DeviceState(d.resolveDeviceDir(o.dir));
        const info = await d.enrollDevice(state, {
          server: o.server,
          token: o.token,
          ...(o.device !== undefined && { deviceId: o.device }),
          ...(o.name !== undefined && { name: o.name }),
        });
        if (o.json) printJson(info);
        else
          process.stdout.write(
            `enrolled ${info.spiffe_id} for ${info.owner}; state in ${state.dir}\n` +
              `certificate expires ${new Date(await d.deviceCertNotAfter(state)).toISOString()}: run \`nevertrust device daemon\` to renew it and report posture\n`,
          );
      },
    );

  const token = dev.command('token').description('enrollment tokens (admin)');
  token
    .command('create')
    .description('create a one-time enrollment token for an owner')
    .requiredOption('--owner <user>', 'who the device belongs to (compared with the session user by policy)')
    .option('--device <id>', 'fix the device id the token may enroll')
    .option('--ttl <duration>', 'how long the token is valid (default: the server’s devices.token_ttl, 24h)')
    .option('--json', 'print JSON')
    .option(...ADMIN_SERVER_OPT)
    .addHelpText(
      'after',
      `
The token is shown once; it is <secret>.<sha256 of a CA root>, so the device can check the server.

Examples:
  $ nevertrust device token create --owner alice
  $ nevertrust device token create --owner bob --device bob-laptop --ttl 2h`,
    )
    .action(async (o: { owner: string; device?: string; ttl?: string; json?: boolean }, cmd: Command) => {
      const client = await adminClient(cmd);
      const t = await client.call(
        'POST',
        '/v1/admin/devices/tokens',
        {
          owner: o.owner,
          ...(o.device !== undefined && { device_id: o.device }),
          ...(o.ttl !== undefined && { ttl: o.ttl }),
        },
        (await deviceApi()).deviceTokenSchema,
      );
      if (o.json) {
        printJson(t);
        return;
      }
      const { resolveConfig } = await import('../context.js');
      const config = await resolveConfig(cmd);
      const host = new URL(client.baseUrl).host.replace(/:\d+$/, '');
      const devFlag = t.device_id ? ` --device ${t.device_id}` : '';
      process.stdout.write(
        `token for ${t.owner}${t.device_id ? ` (device ${t.device_id})` : ''}, valid until ${t.expires_at}, usable once:\n` +
          `${t.token}\n\nOn the device:\n` +
          `  nevertrust device enroll --server https://${host}:${config.server.agent_port} --token ${t.token}${devFlag}\n`,
      );
    });

  dev
    .command('list')
    .description('list enrolled devices (admin)')
    .option('--owner <user>', 'only this owner’s devices')
    .option('--json', 'print JSON')
    .option(...ADMIN_SERVER_OPT)
    .addHelpText('after', '\nExamples:\n  $ nevertrust device list\n  $ nevertrust device list --owner alice --json')
    .action(async (o: { owner?: string; json?: boolean }, cmd: Command) => {
      const q = o.owner === undefined ? '' : `?owner=${encodeURIComponent(o.owner)}`;
      const { devices } = await (await adminClient(cmd)).call(
        'GET',
        `/v1/admin/devices${q}`,
        undefined,
        (await deviceApi()).deviceListSchema,
      );
      if (o.json) {
        printJson(devices);
        return;
      }
      const rows = devices.map((d) => ({
        id: d.id,
        owner: d.owner,
        state: d.revoked_at ? 'revoked' : 'active',
        posture: d.posture ? (d.posture.compliant ? 'compliant' : 'not compliant') : 'none',
        reported: d.posture?.collected_at ?? '',
        cert_expires: d.cert_expires_at,
      }));
      process.stdout.write(table(rows, ['id', 'owner', 'state', 'posture', 'reported', 'cert_expires']));
    });

  dev
    .command('show <id>')
    .description('show a device, its posture and its latest reports (admin)')
    .option('--json', 'print JSON')
    .option(...ADMIN_SERVER_OPT)
    .addHelpText(
      'after',
      '\nExamples:\n  $ nevertrust device show laptop-alice\n  $ nevertrust device show laptop-alice --json',
    )
    .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
      const r = await (await adminClient(cmd)).call(
        'GET',
        adminPath(id),
        undefined,
        (await deviceApi()).deviceShowSchema,
      );
      if (o.json) {
        printJson(r);
        return;
      }
      showDevice(r.device);
      process.stdout.write(`\nhistory (newest first, ${r.reports.length}):\n`);
      for (const h of r.reports) process.stdout.write(`  #${h.seq} ${postureLine(h.posture)}\n`);
    });

  dev
    .command('revoke <id>')
    .description('revoke a device: final; its certificate is refused from then on (admin)')
    .option('--reason <text>', 'why (kept with the device and audited)')
    .option('--yes', 'do not ask for confirmation')
    .option('--json', 'print JSON')
    .option(...ADMIN_SERVER_OPT)
    .addHelpText(
      'after',
      `
The proxy refuses the device's certificate and the server its renewals and reports. A revoked id
cannot be enrolled again: enroll the machine anew under another id.

Examples:
  $ nevertrust device revoke laptop-alice --reason "lost on a train"
  $ nevertrust device revoke build-box-7 --yes`,
    )
    .action(async (id: string, o: { reason?: string; yes?: boolean; json?: boolean }, cmd: Command) => {
      if (
        !o.yes &&
        !(await confirm(`Revoke device ${JSON.stringify(id)}? This is final: its certificate is refused from now on.`))
      )
        throw new CliError('aborted: nothing changed (give --yes to revoke without asking)');
      const d = await (await adminClient(cmd)).call(
        'POST',
        adminPath(id, '/revoke'),
        o.reason === undefined ? {} : { reason: o.reason },
        (await deviceApi()).deviceSchema,
      );
      if (o.json) printJson(d);
      else process.stdout.write(`revoked ${d.id} (owner ${d.owner}) at ${d.revoked_at}\n`);
    });

  dev
    .command('export')
    .description('export the device key and certificate as PKCS#12, for a browser or the OS certificate store')
    .requiredOption('--p12 <file>', 'the file to write (mode 0600; refuses to overwrite)')
    .option('--password-file <file>', 'read the password from a file (else $NEVERTRUST_P12_PASSWORD, else asked)')
    .option(...DIR_OPT)
    .addHelpText(
      'after',
      `
The file holds the private key, encrypted with the password (PBES2: PBKDF2-SHA256, AES-256-CBC).
The certificate is short-lived: export again after the daemon renews it (see docs/people.md).

Examples:
  $ nevertrust device export --p12 ~/device.p12
  $ NEVERTRUST_P12_PASSWORD=… nevertrust device export --p12 /tmp/device.p12
  $ pk12util -d sql:$HOME/.pki/nssdb -i ~/device.p12     # Chromium/Chrome on Linux`,
    )
    .action(async (o: { p12: string; passwordFile?: string; dir?: string }) => {
      const d = await device();
      const state = new d.DeviceState(d.resolveDeviceDir(o.dir));
      const info = await state.readInfo();
      await state.loadKey(); // checks the key file's mode and owner
      const [keyPem, chain] = await Promise.all([state.readKeyPem(), state.readCertChain()]);
      const password = await p12Password(o);
      const { exportPkcs12 } = await import('../../access/device/p12.js');
      const der = await exportPkcs12(keyPem, chain, { password, friendlyName: `nevertrust device ${info.device_id}` });
      const { open } = await import('node:fs/promises');
      let fh: Awaited<ReturnType<typeof open>>;
      try {
        fh = await open(o.p12, 'wx', 0o600);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST')
          throw new CliError(`${o.p12} exists; remove it or choose another file`, 2);
        throw e;
      }
      try {
        await fh.writeFile(der);
      } finally {
        await fh.close();
      }
      process.stdout.write(
        `wrote ${o.p12}: ${info.spiffe_id}, certificate expires ${new Date(await d.deviceCertNotAfter(state)).toISOString()}\n`,
      );
    });

  dev
    .command('report')
    .description("collect this device's posture and send it, signed with the device key")
    .option('--dry-run', 'print the report instead of sending it')
    .option(...EDR_OPT)
    .option(...DIR_OPT)
    .option('--json', 'print the kept posture as JSON')
    .addHelpText(
      'after',
      `
Signals: OS and kernel, pending security updates (apt), root filesystem encryption (lsblk),
firewall, EDR processes. A signal that cannot be read is sent as unknown, which never counts as compliant.

Examples:
  $ nevertrust device report --dry-run
  $ nevertrust device report --edr falcon-sensor`,
    )
    .action(async (o: { dryRun?: boolean; edr?: string[]; dir?: string; json?: boolean }) => {
      const d = await device();
      const state = new d.DeviceState(d.resolveDeviceDir(o.dir));
      const report = await d.collectDeviceReport(state, { edrProcessNames: o.edr ?? [] });
      if (o.dryRun) {
        printJson(report);
        return;
      }
      const r = await d.sendDeviceReport(state, report);
      if (o.json) printJson(r);
      else process.stdout.write(`sent; the server keeps: ${postureLine(r.posture)}\n`);
    });

  dev
    .command('daemon')
    .description('keep the device certificate renewed and its posture reported (every --interval and on change)')
    .option('--interval <duration>', 'longest time between reports', '5m')
    .option('--check <duration>', 'how often the posture is collected to spot a change', '60s')
    .option(...EDR_OPT)
    .option(...DIR_OPT)
    .addHelpText(
      'after',
      `
Renews the certificate at half its life. Errors are retried with back-off. Stops on SIGINT/SIGTERM.

Examples:
  $ nevertrust device daemon
  $ nevertrust device daemon --interval 10m --check 2m --edr falcon-sensor`,
    )
    .action(async (o: { interval: string; check: string; edr?: string[]; dir?: string }) => {
      const intervalMs = await durationMs('--interval', o.interval, 10_000);
      const checkMs = await durationMs('--check', o.check, 1_000);
      const d = await device();
      const state = new d.DeviceState(d.resolveDeviceDir(o.dir));
      const info = await state.readInfo(); // not enrolled: say so now, not in a retry loop
      await state.loadKey();
      const ctl = new AbortController();
      const stop = () => ctl.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      const log = (line: string) =>
        process.stderr.write(`${new Date().toISOString()} device ${info.device_id}: ${line}\n`);
      log(`daemon started (server ${info.server}, report every ${o.interval}, check every ${o.check})`);
      await d.runDeviceDaemon({ state, signal: ctl.signal, intervalMs, checkMs, edrProcessNames: o.edr ?? [], log });
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    });
}
