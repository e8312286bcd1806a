/**
 * `nevertrust user …`: the built-in OpenID provider's people, through the admin API. Passwords never
 * go on the command line: `--password-stdin`, `--password-file`, or a generated one printed once.
 */
import type { Command } from 'commander';
import type { UserWire } from '../../api/users.js';
import { adminClient } from '../admin-client.js';
import { confirm } from '../confirm.js';
import { CliError } from '../errors.js';
import { readPasswordFile } from '../password-file.js';
import { printJson, table } from '../output.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];
const SERVER_OPT = [
  '--server <url>',
  'server API URL (default: http://<server.host>:<server.port> from the config)',
] as const;

const userApi = () => import('../../api/users.js');
const path = (name: string) => `/v1/admin/users/${encodeURIComponent(name)}`;
const mfaPath = (name: string, tail = '') => `${path(name)}/mfa${tail}`;

function showUser(u: UserWire, json?: boolean): void {
  if (json) {
    printJson(u);
    return;
  }
  for (const k of ['username', 'email', 'name', 'groups', 'disabled', 'created_at', 'updated_at'] as const) {
    const v = u[k];
    process.stdout.write(`${k.padEnd(11)} ${Array.isArray(v) ? v.join(', ') : String(v ?? '')}\n`);
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

/** The password from stdin or a file (one trailing newline dropped), or undefined for "generate one". */
async function passwordFrom(o: { passwordStdin?: boolean; passwordFile?: string }): Promise<string | undefined> {
  if (o.passwordStdin && o.passwordFile) throw new CliError('give --password-stdin or --password-file, not both', 2);
  if (o.passwordStdin) return (await readStdin()).replace(/\r?\n$/, '');
  return o.passwordFile === undefined ? undefined : readPasswordFile(o.passwordFile);
}

const PASSWORD_HELP =
  'With neither --password-stdin nor --password-file, a strong password is generated and printed once.';

export function registerUserCommands(program: Command): void {
  const user = program.command('user').description("manage the built-in OpenID provider's people");

  user
    .command('add <username>')
    .description('add a person (username: lower-case letters, digits, . _ -)')
    .option('--email <address>', 'email address (in ID tokens as `email`)')
    .option('--name <text>', 'display name')
    .option('--group <name>', 'group (repeatable; in ID tokens as `groups`)', collect)
    .option('--password-stdin', 'read the password from standard input')
    .option('--password-file <file>', 'read the password from a file')
    .option('--disabled', 'add the person disabled (cannot log in until enabled)')
    .option('--json', 'print the user as JSON')
    .option(...SERVER_OPT)
    .addHelpText(
      'after',
      `
${PASSWORD_HELP}

Examples:
  $ nevertrust user add alice --email alice@example.com --name "Alice" --group admins --group staff
  $ printf '%s' "$PASSWORD" | nevertrust user add bob --email bob@example.com --password-stdin`,
    )
    .action(async (username: string, o: Record<string, unknown>, cmd: Command) => {
      const given = await passwordFrom(o as { passwordStdin?: boolean; passwordFile?: string });
      const password = given ?? (await import('../../access/idp/password.js')).generatePassword();
      const body = {
        username,
        password,
        ...(o.email !== undefined && { email: o.email }),
        ...(o.name !== undefined && { name: o.name }),
        ...(o.group !== undefined && { groups: o.group }),
        ...(o.disabled === true && { disabled: true }),
      };
      const out = await (await adminClient(cmd)).call('POST', '/v1/admin/users', body, (await userApi()).userSchema);
      showUser(out, o.json === true);
      if (given === undefined) process.stderr.write(`generated password (shown once): ${password}\n`);
    });

  user
    .command('list')
    .description('list people')
    .option('--json', 'print JSON')
    .option(...SERVER_OPT)
    .addHelpText('after', '\nExamples:\n  $ nevertrust user list\n  $ nevertrust user list --json')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const { users } = await (await adminClient(cmd)).call(
        'GET',
        '/v1/admin/users',
        undefined,
        (await userApi()).userListSchema,
      );
      if (o.json) printJson(users);
      else process.stdout.write(table(users, ['username', 'email', 'name', 'groups', 'disabled']));
    });

  user
    .command('show <username>')
    .description('show one person')
    .option('--json', 'print JSON')
    .option(...SERVER_OPT)
    .addHelpText('after', '\nExamples:\n  $ nevertrust user show alice')
    .action(async (username: string, o: { json?: boolean }, cmd: Command) => {
      showUser(
        await (await adminClient(cmd)).call('GET', path(username), undefined, (await userApi()).userSchema),
        o.json,
      );
    });

  user
    .command('update <username>')
    .description('change email, name or groups (only the flags given change)')
    .option('--email <address>', 'new email address')
    .option('--name <text>', 'new display name')
    .option('--group <name>', 'replace the groups (repeatable)', collect)
    .option('--no-groups', 'remove every group')
    .option('--json', 'print JSON')
    .option(...SERVER_OPT)
    .addHelpText(
      'after',
      '\nExamples:\n  $ nevertrust user update alice --group admins --group oncall\n  $ nevertrust user update bob --email bob@new.example.com',
    )
    .action(async (username: string, o: Record<string, unknown>, cmd: Command) => {
      const body = {
        ...(o.email !== undefined && { email: o.email }),
        ...(o.name !== undefined && { name: o.name }),
        ...(o.group !== undefined && { groups: o.group }),
        ...(o.groups === false && { groups: [] }),
      };
      showUser(
        await (await adminClient(cmd)).call('PATCH', path(username), body, (await userApi()).userSchema),
        o.json === true,
      );
    });

  for (const [verb, disabled] of [
    ['disable', true],
    ['enable', false],
  ] as const) {
    user
      .command(`${verb} <username>`)
      .description(
        disabled
          ? 'stop a person from logging in (their refresh tokens stop working too)'
          : 'let a disabled person log in again',
      )
      .option(...SERVER_OPT)
      .addHelpText('after', `\nExamples:\n  $ nevertrust user ${verb} alice`)
      .action(async (username: string, _o: unknown, cmd: Command) => {
        await (await adminClient(cmd)).call('PATCH', path(username), { disabled }, (await userApi()).userSchema);
        process.stdout.write(`${verb}d ${username}\n`);
      });
  }

  user
    .command('passwd <username>')
    .description("set a person's password")
    .option('--password-stdin', 'read the password from standard input')
    .option('--password-file <file>', 'read the password from a file')
    .option(...SERVER_OPT)
    .addHelpText(
      'after',
      `\n${PASSWORD_HELP}\n\nExamples:\n  $ nevertrust user passwd alice --password-file alice.pw\n  $ nevertrust user passwd alice`,
    )
    .action(async (username: string, o: { passwordStdin?: boolean; passwordFile?: string }, cmd: Command) => {
      const given = await passwordFrom(o);
      const password = given ?? (await import('../../access/idp/password.js')).generatePassword();
      await (await adminClient(cmd)).call('PATCH', path(username), { password }, (await userApi()).userSchema);
      process.stdout.write(`password set for ${username}\n`);
      if (given === undefined) process.stderr.write(`generated password (shown once): ${password}\n`);
    });

  user
    .command('remove <username>')
    .description('remove a person (their refresh tokens stop working)')
    .option(...SERVER_OPT)
    .addHelpText('after', '\nExamples:\n  $ nevertrust user remove alice')
    .action(async (username: string, _o: unknown, cmd: Command) => {
      await (await adminClient(cmd)).call('DELETE', path(username), undefined, (await userApi()).userDeletedSchema);
      process.stdout.write(`removed ${username}\n`);
    });

  registerMfaCommands(user);
}

const PERSON_HELP =
  'USER is the name the access proxy knows the person by (its user claim, e.g. an email): the person\n' +
  'need not be a user of the built-in provider.';

/** `user mfa list|reset USER` and `user enroll-link USER`: people's second factors at the access proxy. */
function registerMfaCommands(user: Command): void {
  const mfa = user.command('mfa').description("people's second factors at the access proxy (TOTP, WebAuthn)");

  mfa
    .command('list <user>')
    .description("list a person's second factors (confirmed and pending; never a secret)")
    .option('--json', 'print JSON')
    .option(...SERVER_OPT)
    .addHelpText(
      'after',
      `\n${PERSON_HELP}\n\nExamples:\n  $ nevertrust user mfa list alice\n  $ nevertrust user mfa list alice@example.com --json`,
    )
    .action(async (name: string, o: { json?: boolean }, cmd: Command) => {
      const out = await (await adminClient(cmd)).call(
        'GET',
        mfaPath(name),
        undefined,
        (await userApi()).mfaFactorListSchema,
      );
      if (o.json) {
        printJson(out.factors);
        return;
      }
      const rows = out.factors.map((f) => ({
        ...f,
        status: f.confirmed ? 'confirmed' : 'pending',
        last_used_at: f.last_used_at ?? 'never',
      }));
      process.stdout.write(table(rows, ['id', 'kind', 'name', 'status', 'created_at', 'last_used_at', 'issuer']));
    });

  mfa
    .command('reset <user>')
    .description(
      "delete a person's second factors and recovery codes and end their access-proxy sessions (audited as mfa.reset)",
    )
    .option('-y, --yes', 'do not ask for confirmation')
    .option(...SERVER_OPT)
    .addHelpText(
      'after',
      `\n${PERSON_HELP}\nAfterwards the person logs in again and, to pass a step-up, enrolls anew: with a link from\n` +
        '`nevertrust user enroll-link`, or on first login where the access proxy allows it.\n\n' +
        'Examples:\n  $ nevertrust user mfa reset alice\n  $ nevertrust user mfa reset alice --yes && nevertrust user enroll-link alice',
    )
    .action(async (name: string, o: { yes?: boolean }, cmd: Command) => {
      if (
        !o.yes &&
        !(await confirm(
          `Reset MFA for ${JSON.stringify(name)}: delete every second factor and recovery code and end their sessions?`,
        ))
      ) {
        throw new CliError('aborted: nothing changed (give --yes to reset without asking)');
      }
      const r = await (await adminClient(cmd)).call(
        'POST',
        mfaPath(name, '/reset'),
        {},
        (await userApi()).mfaResetSchema,
      );
      process.stdout.write(`reset MFA for ${r.user}: ${r.factors} factor(s) removed, ${r.sessions} session(s) ended\n`);
    });

  user
    .command('enroll-link <user>')
    .description('create a one-time link with which a person without a second factor enrolls one')
    .option('--ttl <duration>', 'how long the link is valid (1m to 30d)', '24h')
    .option('--url <url>', "the access proxy's address, to print the whole link (e.g. https://app.example:8443)")
    .option('--json', 'print JSON')
    .option(...SERVER_OPT)
    .addHelpText(
      'after',
      `\n${PERSON_HELP}\nThe link works once, for that person only (after they log in), until it expires. Send it to\n` +
        'them through a channel you trust: whoever holds it and can log in as them enrolls a factor.\n\n' +
        'Examples:\n  $ nevertrust user enroll-link alice\n  $ nevertrust user enroll-link alice@example.com --ttl 2h --url https://app.example:8443',
    )
    .action(async (name: string, o: { ttl: string; url?: string; json?: boolean }, cmd: Command) => {
      let base: URL | undefined;
      if (o.url !== undefined) {
        try {
          base = new URL(o.url);
        } catch {
          throw new CliError(`--url: ${JSON.stringify(o.url)} is not a URL (e.g. https://app.example:8443)`, 2);
        }
        if (base.protocol !== 'https:' && base.protocol !== 'http:')
          throw new CliError(`--url: ${JSON.stringify(o.url)} is not an http(s) URL`, 2);
      }
      const link = await (await adminClient(cmd)).call(
        'POST',
        mfaPath(name, '/enroll-link'),
        { ttl: o.ttl },
        (await userApi()).enrollLinkSchema,
      );
      const url = base ? new URL(link.path, base.origin).toString() : undefined;
      if (o.json) {
        printJson({ ...link, ...(url && { url }) });
        return;
      }
      process.stdout.write(`${url ?? link.path}\n`);
      process.stderr.write(
        `enrollment link for ${link.user}, valid once until ${link.expires_at}${url ? '' : " (append it to the access proxy's address, or give --url)"}\n`,
      );
    });
}
