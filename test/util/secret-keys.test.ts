import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { normalizeEvent } from '../../src/audit/index.js';
import { createLogger } from '../../src/util/logger.js';
import { isSecretKey, redactSecretFields } from '../../src/util/secret-keys.js';

// Every spelling of a secret family, including the ones a fixed list missed.
const SECRET = [
  'x-api-key',
  'api-key',
  'X-Api-Key',
  'apiKey',
  'APIKEY',
  'api_key',
  'private-key',
  'privateKey',
  'private_key_pem',
  'secret-key',
  'secretKey',
  'access_key',
  'accessKey',
  'aws_secret_access_key',
  'signing_key',
  'signingKey',
  'sessionid',
  'session_id',
  'sessionId',
  'JSESSIONID',
  'PHPSESSID',
  'token',
  'access_token',
  'refreshToken',
  'x-auth-token',
  'X-Amz-Security-Token',
  'client_secret',
  'clientSecret',
  'password',
  'db_password',
  'passwd',
  'passphrase',
  'pass',
  'cookie',
  'set-cookie',
  'Cookie',
  'authorization',
  'proxy-authorization',
  'Authorization',
  'credentials',
  'aws.credential',
  'bearer',
  'jwt',
  'otp',
  'kek',
  'svid_key',
  'key',
  'token_value',
];
// Identifiers and public halves: the audit log needs them.
const NOT_SECRET = [
  'key_id',
  'keyId',
  'kid',
  'public_key',
  'publicKey',
  'keys',
  'key_type',
  'keyType',
  'token_file',
  'token_id',
  'token_type',
  'password_policy',
  'session',
  'passed',
  'rootpath',
  'monkey',
  'x-request-id',
  'spiffe_id',
  'decision_id',
  'pep',
  'identity',
  'ignored_identity_headers',
  'accept',
  'content-type',
];

describe('isSecretKey: families, not a list', () => {
  it.each(SECRET)('%s is secret', (k) => expect(isSecretKey(k)).toBe(true));
  it.each(NOT_SECRET)('%s is not secret', (k) => expect(isSecretKey(k)).toBe(false));
});

describe('one predicate for the logger and the audit log', () => {
  const VALUE = 's3cr3t-value-0123456789';
  const sample = () => ({
    headers: Object.fromEntries([...SECRET.map((k) => [k, VALUE]), ['x-request-id', 'r1']]),
    key_id: 'k1',
    public_key: 'PUBLIC',
  });

  it('the logger redacts every secret family at any depth, in objects and child bindings', () => {
    let out = '';
    const sink = new Writable({
      write(chunk, _enc, cb) {
        out += chunk;
        cb();
      },
    });
    const log = createLogger('info', sink);
    log.info({ request: sample(), list: [{ 'x-api-key': VALUE }] }, 'decision request');
    log.child({ accessKey: VALUE }).info('child');
    expect(out).not.toContain(VALUE);
    const line = JSON.parse(out.split('\n')[0] as string);
    expect(line.request.headers['x-api-key']).toBe('[redacted]');
    expect(line.request.headers['x-request-id']).toBe('r1');
    expect(line.request).toMatchObject({ key_id: 'k1', public_key: 'PUBLIC' });
    expect(line.list[0]['x-api-key']).toBe('[redacted]');
  });

  it('audit events drop every secret family and list what they dropped', () => {
    const e = normalizeEvent({ kind: 'access.decision', details: sample() });
    expect(JSON.stringify(e)).not.toContain(VALUE);
    expect(e.details).toEqual({ headers: { 'x-request-id': 'r1' }, key_id: 'k1', public_key: 'PUBLIC' });
    expect(e.redacted).toHaveLength(SECRET.length);
    // Flat details (the fast path enforcement points take) too.
    const flat = normalizeEvent({ kind: 'access.decision', details: { 'x-api-key': VALUE, pep: 'nginx' } });
    expect(flat.details).toEqual({ pep: 'nginx' });
    expect(flat.redacted).toEqual(['details.x-api-key']);
  });

  it('redactSecretFields leaves objects without secrets as they are, and survives cycles', () => {
    const clean = { a: { b: [1, { c: 'd' }] } };
    expect(redactSecretFields(clean)).toBe(clean);
    const cyclic: Record<string, unknown> = { token: 't' };
    cyclic.self = cyclic;
    const r = redactSecretFields(cyclic);
    expect(r.token).toBe('[redacted]');
    expect(cyclic.token).toBe('t');
    const err = new Error('boom');
    expect(redactSecretFields({ err }).err).toBe(err);
  });
});
