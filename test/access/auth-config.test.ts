/** The authenticator's config: defaults, durations, and hostile or contradictory settings refused by field. */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AccessAuthError, createOidcAuthenticator, oidcAuthConfigSchema } from '../../src/access/auth/index.js';
import { openStore } from '../../src/store/index.js';
import { tempDir } from '../support/tmp.js';

const base = {
  issuer: 'https://login.example.test',
  client_id: 'proxy',
  client_secret: 's',
  session: { key_file: '/k' },
};

describe('oidc auth config', () => {
  it('fills the defaults and reads durations', () => {
    const c = oidcAuthConfigSchema.parse({ ...base, session: { key_file: '/k', idle_lifetime: '30m' } });
    expect(c.scopes).toEqual(['openid', 'email', 'profile', 'offline_access']);
    expect(c.user_claim).toBe('email');
    expect(c.groups_claim).toBe('groups');
    expect(c.session).toMatchObject({
      cookie_name: '__Host-nevertrust_session',
      absolute_lifetime: 43200,
      idle_lifetime: 1800,
    });
    expect(c.bearer).toEqual({ enabled: true });
    expect(c.change_feed_interval_ms).toBe(250);
    expect(c.allow_insecure_issuer).toBe(false);
  });

  it('refuses bad settings, naming the field', () => {
    const bad: [object, string][] = [
      [{ ...base, issuer: 'http://login.example.test' }, 'issuer'],
      [{ ...base, client_secret_file: '/f' }, 'client_secret'],
      [{ ...base, client_secret: undefined }, 'client_secret'],
      [{ ...base, scopes: ['email'] }, 'scopes'],
      [{ ...base, scopes: ['openid', 'a b'] }, 'scopes.1'],
      [{ ...base, session: { key_file: '/k', cookie_name: 'session' } }, 'session.cookie_name'],
      [{ ...base, session: { key_file: '/k', idle_lifetime: 'forever' } }, 'session.idle_lifetime'],
      [{ ...base, session: { key_file: '/k', absolute_lifetime: 0 } }, 'session.absolute_lifetime'],
      [{ ...base, session: {} }, 'session.key_file'],
      [{ ...base, surprise: true }, ''],
    ];
    for (const [input, field] of bad) {
      const r = oidcAuthConfigSchema.safeParse(input);
      expect(r.success, JSON.stringify(input)).toBe(false);
      if (!r.success && field) expect(r.error.issues.map((i) => i.path.join('.'))).toContain(field);
    }
    expect(
      oidcAuthConfigSchema.safeParse({ ...base, issuer: 'http://localhost:9', allow_insecure_issuer: true }).success,
    ).toBe(true);
  });

  it('an unreachable provider is a clear error at start, after the sealing key file is created 0600', async () => {
    const dir = tempDir();
    const store = await openStore({ dataDir: dir });
    try {
      const cfg = oidcAuthConfigSchema.parse({
        ...base,
        issuer: 'https://127.0.0.1:9',
        session: { key_file: join(dir, 'keys', 'session.key') },
      });
      const err = await createOidcAuthenticator(cfg, { sessions: store.accessSessions, record: () => {} }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(AccessAuthError);
      expect((err as AccessAuthError).code).toBe('ERR_ACCESS_AUTH_PROVIDER');
      expect((err as Error).message).toMatch(/discovery at https:\/\/127\.0\.0\.1:9/);
      expect(statSync(join(dir, 'keys', 'session.key')).mode & 0o777).toBe(0o600);
      const missing = oidcAuthConfigSchema.parse({
        ...base,
        client_secret: undefined,
        client_secret_file: join(dir, 'nope'),
      });
      const e2 = await createOidcAuthenticator(missing, { sessions: store.accessSessions, record: () => {} }).catch(
        (e: unknown) => e,
      );
      expect((e2 as AccessAuthError).code).toBe('ERR_ACCESS_AUTH_CONFIG');
      expect((e2 as Error).message).toMatch(/client_secret_file .*nope: ENOENT/);
    } finally {
      await store.close();
    }
  });
});
