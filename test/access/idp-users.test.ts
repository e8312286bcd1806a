/**
 * The users admin API (a real server, in-process) and CLI (the built binary), and `nevertrust idp`
 * as a process: add, list, show, update, remove; bad input refused naming the field; every change an
 * audit event without the password; the provider's config errors name file, line and field.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyPassword } from '../../src/access/idp/index.js';
import { configSchema } from '../../src/config/index.js';
import { type RunningServer, type ServerEvent, startServer } from '../../src/server/index.js';
import { usersPlugin } from '../../src/server/plugins/users.js';
import { createLogger } from '../../src/util/logger.js';
import { freePort, runCli, startCli } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { tlsKit } from './idp-harness.js';

let server: RunningServer;
let dataDir: string;
let token: string;
const events: ServerEvent[] = [];

async function api(method: string, path: string, body?: unknown) {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

beforeAll(async () => {
  dataDir = tempDir();
  server = await startServer({
    config: configSchema.parse({ data_dir: dataDir, server: { port: 0 } }),
    logger: createLogger('silent'),
    plugins: [
      usersPlugin(),
      { name: 'capture', register: (ctx) => void ctx.events.on('event', (e) => events.push(e)) },
    ],
  });
  token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
});
afterAll(() => server.close());

describe('users admin API', () => {
  const secret = 'a long enough password';

  it('adds, lists, shows, updates and removes a user; the hash is stored, never answered', async () => {
    const add = await api('POST', '/v1/admin/users', {
      username: 'alice',
      email: 'alice@example.com',
      name: 'Alice',
      groups: ['staff', 'admins'],
      password: secret,
    });
    expect(add.status).toBe(201);
    expect(add.body).toMatchObject({ username: 'alice', groups: ['admins', 'staff'], disabled: false });
    expect(JSON.stringify(add.body)).not.toMatch(/scrypt|password/);
    expect(await verifyPassword(secret, (await server.store.users.get('alice'))?.passwordHash)).toBe(true);

    expect((await api('POST', '/v1/admin/users', { username: 'alice', password: secret })).status).toBe(409);
    expect(((await api('GET', '/v1/admin/users')).body.users as unknown[]).length).toBe(1);
    expect((await api('GET', '/v1/admin/users/alice')).body.email).toBe('alice@example.com');

    const upd = await api('PATCH', '/v1/admin/users/alice', {
      disabled: true,
      name: null,
      password: 'another password 2',
    });
    expect(upd.status).toBe(200);
    expect(upd.body).toMatchObject({ disabled: true, name: null });
    expect(await verifyPassword('another password 2', (await server.store.users.get('alice'))?.passwordHash)).toBe(
      true,
    );

    expect((await api('DELETE', '/v1/admin/users/alice')).status).toBe(200);
    expect((await api('GET', '/v1/admin/users/alice')).status).toBe(404);
    expect((await api('DELETE', '/v1/admin/users/alice')).status).toBe(404);

    const actions = events.filter((e) => e.kind === 'admin.action' && e.target.resource?.startsWith('user.'));
    expect(actions.map((e) => `${e.target.resource}:${e.outcome}`)).toEqual(
      expect.arrayContaining(['user.add:allow', 'user.add:deny', 'user.update:allow', 'user.remove:allow']),
    );
    expect(actions.find((e) => e.target.resource === 'user.update')?.details).toMatchObject({
      changed: ['disabled', 'name', 'password'],
    });
    const recorded = JSON.stringify(events);
    expect(recorded).not.toContain(secret);
    expect(recorded).not.toContain('another password 2');
    expect(recorded).not.toContain('scrypt$');
  });

  it('refuses bad input naming the field, and changes nothing', async () => {
    const cases: [unknown, RegExp][] = [
      [{ username: 'Alice!', password: secret }, /^username: /],
      [{ username: 'bob', password: 'short' }, /^password: at least 10/],
      [{ username: 'bob', password: secret, email: 'not-an-email' }, /^email: /],
      [{ username: 'bob', password: secret, groups: ['ok', 'bad group'] }, /^groups\.1: /],
      [{ username: 'bob', password: secret, role: 'admin' }, /unknown field\(s\): role/],
      [{ username: 'bob', password: secret, name: 'evil\u0000name' }, /^name: no control/],
    ];
    for (const [body, message] of cases) {
      const r = await api('POST', '/v1/admin/users', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.message).toMatch(message);
    }
    expect(await server.store.users.get('bob')).toBeUndefined();
    await api('POST', '/v1/admin/users', { username: 'bob', password: secret });
    const none = await api('PATCH', '/v1/admin/users/bob', {});
    expect(none.status).toBe(400);
    expect(none.body.message).toMatch(/nothing to change/);
    expect((await api('PATCH', '/v1/admin/users/bob', { disabled: 'yes' })).body.message).toMatch(/^disabled: /);
    expect((await api('GET', '/v1/admin/users/..%2Fetc')).status).toBe(400);
    expect((await server.store.users.get('bob'))?.disabled).toBe(false);
  });
});

describe('nevertrust user (CLI)', () => {
  const cli = (args: string[]) =>
    runCli([...args, '--server', server.url], { env: { NEVERTRUST_ADMIN_TOKEN: token }, cwd: dataDir });

  it('adds with a generated password printed once, lists, disables, sets a password from a file, removes', async () => {
    const add = await cli([
      'user',
      'add',
      'carol',
      '--email',
      'carol@example.com',
      '--name',
      'Carol',
      '--group',
      'admins',
      '--group',
      'staff',
    ]);
    expect(add.code, add.stderr).toBe(0);
    expect(add.stdout).toMatch(/username\s+carol/);
    const generated = /generated password \(shown once\): (\S+)/.exec(add.stderr)?.[1] ?? '';
    expect(generated.length).toBeGreaterThanOrEqual(20);
    expect(await verifyPassword(generated, (await server.store.users.get('carol'))?.passwordHash)).toBe(true);

    const list = await cli(['user', 'list', '--json']);
    expect(JSON.parse(list.stdout)).toEqual(
      expect.arrayContaining([expect.objectContaining({ username: 'carol', groups: ['admins', 'staff'] })]),
    );
    expect((await cli(['user', 'disable', 'carol'])).code).toBe(0);
    expect((await server.store.users.get('carol'))?.disabled).toBe(true);
    expect((await cli(['user', 'enable', 'carol'])).code).toBe(0);

    const pwFile = join(dataDir, 'carol.pw');
    writeFileSync(pwFile, 'carol new password\n', { mode: 0o600 });
    const passwd = await cli(['user', 'passwd', 'carol', '--password-file', pwFile]);
    expect(passwd.code, passwd.stderr).toBe(0);
    expect(passwd.stderr).not.toMatch(/generated/);
    expect(await verifyPassword('carol new password', (await server.store.users.get('carol'))?.passwordHash)).toBe(
      true,
    );

    const upd = await cli(['user', 'update', 'carol', '--group', 'oncall', '--json']);
    expect(JSON.parse(upd.stdout).groups).toEqual(['oncall']);

    const bad = await cli(['user', 'add', 'Bad Name', '--password-file', pwFile]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/username: /);

    expect((await cli(['user', 'remove', 'carol'])).code).toBe(0);
    expect(await server.store.users.get('carol')).toBeUndefined();
    // Eight CLI processes: on a loaded 2-core machine each start can take seconds.
  }, 120_000);
});

describe('nevertrust idp (CLI)', () => {
  it('starts from a config file without warnings and serves discovery over HTTPS', async () => {
    const dir = tempDir();
    const kit = await tlsKit(dir);
    writeFileSync(join(dir, 'idp.crt'), kit.tls.cert);
    writeFileSync(join(dir, 'idp.key'), kit.tls.key, { mode: 0o600 });
    writeFileSync(join(dir, 'rp.secret'), 'rp-secret-0123456789abcdef\n', { mode: 0o600 });
    const port = await freePort();
    const config = join(dir, 'idp.yaml');
    writeFileSync(
      config,
      `issuer: https://localhost:${port}
listen: { host: 127.0.0.1, port: ${port} }
tls: { cert: idp.crt, key: idp.key }
data_dir: data
clients:
  - client_id: access-proxy
    client_secret_file: rp.secret
    redirect_uris: [https://app.example.test/.nevertrust/callback]
`,
    );
    const p = await startCli(['idp', '--config', config], /listening on/, { timeoutMs: 60_000 });
    try {
      const meta = (await (
        await kit.fetchTls(`https://localhost:${port}/.well-known/openid-configuration`)
      ).json()) as Record<string, unknown>;
      expect(meta).toMatchObject({
        issuer: `https://localhost:${port}`,
        code_challenge_methods_supported: ['S256'],
        response_types_supported: ['code'],
      });
      expect(meta.id_token_signing_alg_values_supported).toEqual(expect.arrayContaining(['ES256', 'RS256']));
    } finally {
      p.child.kill('SIGTERM');
      await p.exited;
      await kit.close();
    }
    expect(p.output()).not.toMatch(/WARNING|NOTICE|oidc-provider/i);
  }, 90_000);

  it('refuses a bad config naming the file, line and field', async () => {
    const dir = tempDir();
    const config = join(dir, 'idp.yaml');
    writeFileSync(
      config,
      'issuer: https://localhost:9443\nlisten: { port: 9443 }\ninsecure_http: true\nclients:\n  - client_id: a\n    redirect_uris: [not a url]\n',
    );
    const r = await runCli(['idp', '--config', config]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${config}:6: clients.0.redirect_uris.0: `);
  });
});
