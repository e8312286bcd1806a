/**
 * The CA inside the server and the identity CLI, end to end: real certificates checked by openssl,
 * restarts, two servers on one PostgreSQL.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/index.js';
import { type RunningServer, startServer } from '../../src/server/index.js';
import { caPlugin } from '../../src/server/plugins/ca.js';
import { createLogger } from '../../src/util/logger.js';
import { runCli } from '../support/cli.js';
import { createTestDatabase } from '../support/postgres.js';
import { tempDir } from '../support/tmp.js';

const logger = createLogger('silent');
const servers: RunningServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close();
});

async function start(dataDir: string, url?: string) {
  const s = await startServer({
    config: configSchema.parse({ data_dir: dataDir, server: { port: 0 }, database: { url } }),
    logger,
    plugins: [caPlugin({ tickMs: 200 })],
  });
  servers.push(s);
  return s;
}

// Each case runs several CLI processes (about 1 s each to start); on a loaded machine 30 s is tight.
describe('CA in the server, with the identity CLI', { timeout: 90_000 }, () => {
  const dataDir = tempDir();
  let server: RunningServer;
  const out = join(dataDir, 'out');

  it('x509 mint through the server: files, modes, openssl verify, required extensions', async () => {
    server = await start(dataDir);
    const r = await runCli([
      'x509',
      'mint',
      '--spiffe-id',
      'spiffe://example.org/ns/payments/sa/api-gateway',
      '--dns',
      'api.internal',
      '--ttl',
      '10m',
      '--out',
      out,
      '--data-dir',
      dataDir,
      '--server',
      server.url,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(statSync(join(out, 'svid.key')).mode & 0o777).toBe(0o600);
    expect(
      execFileSync('openssl', ['verify', '-CAfile', join(out, 'bundle.pem'), join(out, 'svid.pem')]).toString(),
    ).toContain(': OK');
    const text = execFileSync('openssl', ['x509', '-in', join(out, 'svid.pem'), '-noout', '-text']).toString();
    expect(text).toContain('URI:spiffe://example.org/ns/payments/sa/api-gateway');
    expect(text).toContain('DNS:api.internal');
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature/);
    expect(text).toMatch(/CA:FALSE/);
    expect(text).toMatch(/TLS Web Server Authentication, TLS Web Client Authentication/);
    // The key on disk matches the certificate: the server never saw it.
    const certKey = execFileSync('openssl', ['x509', '-in', join(out, 'svid.pem'), '-noout', '-pubkey']).toString();
    const fileKey = execFileSync('openssl', ['pkey', '-in', join(out, 'svid.key'), '-pubout']).toString();
    expect(fileKey).toBe(certKey);
  });

  it('x509 validate: the SPIFFE ID and exit 0; a tampered certificate or a foreign bundle: the reason and exit 1', async () => {
    const ok = await runCli(['x509', 'validate', '--bundle', join(out, 'bundle.pem'), join(out, 'svid.pem')]);
    expect(ok.code).toBe(0);
    expect(ok.stdout.trim()).toBe('spiffe://example.org/ns/payments/sa/api-gateway');

    const pem = readFileSync(join(out, 'svid.pem'), 'utf8');
    const der = Buffer.from(pem.split('-----')[2]?.replace(/\s+/g, '') ?? '', 'base64');
    der[der.length - 5] = (der[der.length - 5] ?? 0) ^ 0xff; // inside the signature
    const tampered = join(out, 'tampered.pem');
    writeFileSync(tampered, `-----BEGIN CERTIFICATE-----\n${der.toString('base64')}\n-----END CERTIFICATE-----\n`);
    const bad = await runCli(['x509', 'validate', '--bundle', join(out, 'bundle.pem'), tampered]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/invalid: .*signature/i);

    const otherDir = tempDir();
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-subj',
        '/CN=other',
        '-keyout',
        join(otherDir, 'k.pem'),
        '-out',
        join(otherDir, 'ca.pem'),
        '-days',
        '1',
      ],
      { stdio: 'ignore' },
    );
    const foreign = await runCli(['x509', 'validate', '--bundle', join(otherDir, 'ca.pem'), join(out, 'svid.pem')]);
    expect(foreign.code).toBe(1);
  });

  it('jwt mint and validate, wrong audience refused, bundle show in both formats', async () => {
    const common = ['--data-dir', dataDir, '--server', server.url];
    const minted = await runCli([
      'jwt',
      'mint',
      '--spiffe-id',
      'spiffe://example.org/ns/payments/sa/api-gateway',
      '--audience',
      'payment-service',
      ...common,
    ]);
    expect(minted.code, minted.stderr).toBe(0);
    const token = minted.stdout.trim();
    expect(token.split('.')).toHaveLength(3);
    const ok = await runCli(['jwt', 'validate', '--audience', 'payment-service', token, ...common]);
    expect(ok.stdout.trim()).toBe('spiffe://example.org/ns/payments/sa/api-gateway');
    const wrong = await runCli(['jwt', 'validate', '--audience', 'audit-service', token, ...common]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/aud/);
    const pem = await runCli(['bundle', 'show', ...common]);
    expect(pem.stdout).toBe(readFileSync(join(out, 'bundle.pem'), 'utf8'));
    const jwks = JSON.parse((await runCli(['bundle', 'show', '--format', 'spiffe', ...common])).stdout) as {
      keys: { use: string; kid?: string }[];
      spiffe_sequence: number;
    };
    expect(jwks.keys.some((k) => k.use === 'x509-svid')).toBe(true);
    expect(jwks.keys.some((k) => k.use === 'jwt-svid' && k.kid)).toBe(true);
    expect(jwks.spiffe_sequence).toBeGreaterThan(0);
  });

  it('refuses to sign for another trust domain or from a broken CSR, and records it', async () => {
    const token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
    const post = (body: unknown) =>
      fetch(`${server.url}/v1/admin/x509/sign`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });
    expect((await post({ csr: 'x', spiffe_id: 'spiffe://evil.org/x' })).status).toBe(400);
    const broken = await post({
      csr: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n',
      spiffe_id: 'spiffe://example.org/x',
    });
    expect(broken.status).toBe(400);
    expect((await fetch(`${server.url}/v1/admin/x509/sign`, { method: 'POST', body: '{}' })).status).toBe(401);
  });

  it("refuses to mint reserved identities (the server's, agents', devices'), over the API and in the CLI", async () => {
    const token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
    const call = (path: string, body: unknown) =>
      fetch(`${server.url}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });
    const { createCsr, csrToPem, generatePrivateKey } = await import('../../src/ca/index.js');
    const csr = csrToPem(createCsr(generatePrivateKey('ec-p256')));
    for (const id of [
      'spiffe://example.org/nevertrust/server',
      'spiffe://example.org/spire/agent/join_token/0123456789abcdef0123456789abcdef',
      'spiffe://example.org/device/laptop',
    ]) {
      const x = await call('/v1/admin/x509/sign', { csr, spiffe_id: id });
      expect(x.status, id).toBe(403);
      expect(((await x.json()) as { error: string }).error).toBe('reserved_spiffe_id');
      const j = await call('/v1/admin/jwt/mint', { spiffe_id: id, audience: ['a'] });
      expect(j.status, id).toBe(403);
    }
    const common = ['--data-dir', dataDir, '--server', server.url];
    const x509 = await runCli([
      'x509',
      'mint',
      '--spiffe-id',
      'spiffe://example.org/nevertrust/server',
      '--out',
      join(dataDir, 'reserved'),
      ...common,
    ]);
    expect(x509.code).toBe(2);
    expect(x509.stderr).toMatch(/--spiffe-id: spiffe:\/\/example\.org\/nevertrust\/server is reserved/);
    const jwt = await runCli([
      'jwt',
      'mint',
      '--spiffe-id',
      'spiffe://example.org/spire/agent/x',
      '--audience',
      'a',
      ...common,
    ]);
    expect(jwt.code).toBe(2);
    expect(jwt.stderr).toMatch(/is reserved/);
  });

  it('keeps CA keys sealed in the store, and a restart keeps the same CA', async () => {
    const row = await server.store.kv.get('ca', 'example.org');
    expect(row?.value).toBeDefined();
    expect(row?.value).not.toMatch(/PRIVATE KEY/);
    const before = await (await fetch(`${server.url}/v1/bundle`)).json();
    await server.close();
    servers.splice(servers.indexOf(server), 1);
    server = await start(dataDir);
    expect(await (await fetch(`${server.url}/v1/bundle`)).json()).toEqual(before);
    const ok = await runCli(['x509', 'validate', '--bundle', join(out, 'bundle.pem'), join(out, 'svid.pem')]);
    expect(ok.code).toBe(0);
  });

  it('ca rotate: the next CA is published, then active; SVIDs from before and after both validate', async () => {
    const common = ['--data-dir', dataDir, '--server', server.url];
    const before = (await (await fetch(`${server.url}/v1/bundle`)).json()) as {
      keys: { use: string }[];
      spiffe_sequence: number;
    };
    const first = await runCli(['ca', 'rotate', ...common]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^rotated \(bundle sequence \d+\)/);
    await runCli(['ca', 'rotate', ...common]);
    const after = (await (await fetch(`${server.url}/v1/bundle`)).json()) as {
      keys: { use: string }[];
      spiffe_sequence: number;
    };
    expect(after.spiffe_sequence).toBeGreaterThan(before.spiffe_sequence);
    expect(after.keys.filter((k) => k.use === 'x509-svid').length).toBeGreaterThan(
      before.keys.filter((k) => k.use === 'x509-svid').length,
    );
    const newOut = join(dataDir, 'after-rotate');
    expect(
      (await runCli(['x509', 'mint', '--spiffe-id', 'spiffe://example.org/after', '--out', newOut, ...common])).code,
    ).toBe(0);
    // One bundle validates both the SVID issued before the rotation and the one after.
    for (const cert of [join(out, 'svid.pem'), join(newOut, 'svid.pem')]) {
      expect((await runCli(['x509', 'validate', '--bundle', join(newOut, 'bundle.pem'), cert])).code).toBe(0);
    }
    const show = JSON.parse((await runCli(['ca', 'show', ...common])).stdout) as { authorities: { status: string }[] };
    expect(show.authorities.map((a) => a.status)).toEqual(expect.arrayContaining(['active', 'retired']));
  });

  it('a KEK file readable by others is refused at start', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'kek'), Buffer.alloc(32, 1).toString('base64'), { mode: 0o644 });
    await expect(start(dir)).rejects.toThrow(/kek/i);
  });
});

describe('two servers on one PostgreSQL', () => {
  it("share one CA: an SVID signed by one validates against the other's bundle", async () => {
    const url = await createTestDatabase();
    // Both servers must share the KEK to open the shared CA state.
    process.env.NEVERTRUST_KEK = Buffer.alloc(32, 7).toString('base64');
    try {
      const dirA = tempDir();
      const dirB = tempDir();
      const [a, b] = await Promise.all([start(dirA, url), start(dirB, url)]);
      const bundleA = await (await fetch(`${a.url}/v1/bundle`)).json();
      expect(await (await fetch(`${b.url}/v1/bundle`)).json()).toEqual(bundleA);
      const out = join(dirB, 'certs');
      const r = await runCli([
        'x509',
        'mint',
        '--spiffe-id',
        'spiffe://example.org/shared',
        '--out',
        out,
        '--data-dir',
        dirB,
        '--server',
        b.url,
      ]);
      expect(r.code, r.stderr).toBe(0);
      writeFileSync(join(dirA, 'bundle-a.pem'), await (await fetch(`${a.url}/v1/bundle?format=pem`)).text());
      const ok = await runCli(['x509', 'validate', '--bundle', join(dirA, 'bundle-a.pem'), join(out, 'svid.pem')]);
      expect(ok.stdout.trim()).toBe('spiffe://example.org/shared');
      // Server b's admin token works on server a too: token hashes live in the shared store.
      const tokenB = readFileSync(join(dirB, 'admin.token'), 'utf8').trim();
      expect((await fetch(`${a.url}/v1/admin/ca`, { headers: { authorization: `Bearer ${tokenB}` } })).status).toBe(
        200,
      );
    } finally {
      delete process.env.NEVERTRUST_KEK;
    }
  });
});
