/**
 * Each wire contract of src/api/: the model → wire conversion, through JSON, parses back to the same
 * thing; and a message that does not fit is refused with the field named.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  agentListSchema,
  agentSchema,
  agentSvidSchema,
  agentToWire,
  assertionJwksSchema,
  assertionKeyRequestSchema,
  assertionKeyToJwk,
  auditIngestRequestSchema,
  auditIngestResponseSchema,
  entryFromWire,
  entryListSchema,
  entrySchema,
  entryToWire,
  entryViewSchema,
  joinTokenSchema,
  joinTokenToWire,
  jwtSvidSchema,
  jwtSvidToWire,
  parseWire,
  type RegistrationEntry,
  signResponseSchema,
  svidToWire,
  syncLine,
  type SyncMessage,
  syncMessageSchema,
  WireFormatError,
} from '../../src/api/index.js';
import { NevertrustError } from '../../src/errors.js';
import { compile, parsePolicyText } from '../../src/policy/index.js';
import { certificatesFromPem } from '../../src/spiffe/index.js';
import { newCa, TD } from '../agent/fixtures.js';

/** Through the wire: JSON text and back, as the other end receives it. */
const viaJson = (v: unknown): unknown => JSON.parse(JSON.stringify(v));

const entry: RegistrationEntry = {
  id: '0b6f5c1e-8f0a-4c55-9d2e-6a1b2c3d4e5f',
  spiffeId: `spiffe://${TD}/ns/payments/sa/api`,
  parentId: `spiffe://${TD}/spire/agent/join_token/abc`,
  selectors: ['unix:uid:1000', 'unix:path:/usr/bin/node'],
  x509SvidTtl: 3600,
  jwtSvidTtl: 300,
  dnsNames: ['api.internal'],
  hint: 'api',
  admin: false,
  expiresAt: Date.parse('2031-01-02T03:04:05.006Z'),
  revision: 3,
  createdAt: Date.parse('2026-01-01T00:00:00.000Z'),
  updatedAt: Date.parse('2026-02-01T00:00:00.000Z'),
};

function expectRefused(fn: () => unknown, field: string): WireFormatError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(WireFormatError);
    const w = e as WireFormatError;
    expect(w).toBeInstanceOf(NevertrustError);
    expect(w.code).toBe('ERR_API_MALFORMED');
    expect(w.field).toBe(field);
    expect(w.message).toContain(field);
    return w;
  }
  throw new Error(`expected a refusal naming ${field}`);
}

describe('entries', () => {
  it('model → wire → JSON → parse → model is the same entry; the wire form is as before', () => {
    const wire = entryToWire(entry);
    expect(wire).toEqual({
      id: entry.id,
      spiffe_id: entry.spiffeId,
      parent_id: entry.parentId,
      selectors: entry.selectors,
      x509_svid_ttl: 3600,
      jwt_svid_ttl: 300,
      dns_names: ['api.internal'],
      hint: 'api',
      admin: false,
      expires_at: '2031-01-02T03:04:05.006Z',
      revision: 3,
      created_at: '2026-01-01T00:00:00.000Z',
      updated_at: '2026-02-01T00:00:00.000Z',
    });
    expect(entryFromWire(parseWire(entrySchema, viaJson(wire), 'entry'))).toEqual(entry);
    const noExpiry = { ...entry, expiresAt: null };
    expect(entryFromWire(parseWire(entrySchema, viaJson(entryToWire(noExpiry)), 'entry'))).toEqual(noExpiry);
    expect(parseWire(entryListSchema, viaJson({ entries: [wire] }), 'list').entries).toEqual([wire]);
  });

  it('the agent view is the full entry minus what the agent does not use', () => {
    const view = entryViewSchema.parse(viaJson(entryToWire(entry)));
    expect(Object.keys(view).sort()).toEqual(
      ['hint', 'id', 'jwt_svid_ttl', 'revision', 'selectors', 'spiffe_id', 'x509_svid_ttl'].sort(),
    );
  });

  it('hostile entries are refused with the field named', () => {
    const wire = entryToWire(entry);
    expectRefused(() => parseWire(entrySchema, { ...wire, spiffe_id: 'https://evil.example/x' }, 'e'), 'spiffe_id');
    expectRefused(() => parseWire(entrySchema, { ...wire, selectors: 'unix:uid:0' }, 'e'), 'selectors');
    expectRefused(() => parseWire(entrySchema, { ...wire, expires_at: 'tomorrow' }, 'e'), 'expires_at');
    expectRefused(() => parseWire(entrySchema, { ...wire, revision: -1 }, 'e'), 'revision');
    expectRefused(() => parseWire(entryListSchema, { entries: [wire, { ...wire, id: 7 }] }, 'e'), 'entries.1.id');
    expectRefused(() => parseWire(entryListSchema, null, 'e'), '(root)');
  });
});

describe('agents and join tokens', () => {
  it('round trips', () => {
    const rec = {
      spiffeId: `spiffe://${TD}/spire/agent/join_token/abc`,
      attestation: 'join_token',
      serial: '0a1b',
      svidExpiresAt: Date.parse('2026-03-01T00:00:00.000Z'),
      attestedAt: Date.parse('2026-02-01T00:00:00.000Z'),
      renewedAt: Date.parse('2026-02-02T00:00:00.000Z'),
      banned: true,
      remoteAddr: '127.0.0.1',
    };
    const wire = agentToWire(rec);
    expect(wire).toMatchObject({ spiffe_id: rec.spiffeId, expires_at: '2026-03-01T00:00:00.000Z', banned: true });
    expect(parseWire(agentListSchema, viaJson({ agents: [wire] }), 'agents').agents).toEqual([wire]);
    expectRefused(() => parseWire(agentSchema, { ...wire, banned: 'no' }, 'agent'), 'banned');

    const token = joinTokenToWire('0123456789abcdef0123456789abcdef', Date.parse('2026-03-01T00:10:00Z'), 600);
    expect(parseWire(joinTokenSchema, viaJson(token), 'token')).toEqual({
      token: '0123456789abcdef0123456789abcdef',
      expires_at: '2026-03-01T00:10:00.000Z',
      ttl: 600,
    });
    expectRefused(() => parseWire(joinTokenSchema, { ...token, token: 'short' }, 'token'), 'token');
  });
});

describe('attest, renew, sign, jwt', () => {
  it('an issued SVID of a real CA goes to the wire and back to the same chain', async () => {
    const ca = await newCa();
    const svid = ca.mintX509Svid({ spiffeId: `spiffe://${TD}/spire/agent/join_token/abc` });
    const answer = { ...svidToWire(svid), bundle: ca.bundle().toJwks() };
    const parsed = parseWire(agentSvidSchema, viaJson(answer), 'attest');
    expect(certificatesFromPem(parsed.chain_pem)).toEqual(svid.chain);
    expect(parsed.serial).toBe(svid.serialHex);
    expect(parsed.bundle).toEqual(ca.bundle().toJwks());

    const sign = {
      results: [
        { entry_id: 'e1', ...svidToWire(svid) },
        { entry_id: 'e2', error: 'not authorized' },
      ],
    };
    expect(parseWire(signResponseSchema, viaJson(sign), 'sign')).toEqual(sign);
    expectRefused(() => parseWire(signResponseSchema, { results: [{ entry_id: 'e1' }] }, 'sign'), 'results.0');
    expectRefused(() => parseWire(agentSvidSchema, { ...answer, chain_pem: 'not pem' }, 'attest'), 'chain_pem');

    const jwt = await ca.mintJwtSvid({ spiffeId: `spiffe://${TD}/api`, audience: ['db'] });
    expect(parseWire(jwtSvidSchema, viaJson(jwtSvidToWire(jwt)), 'jwt')).toEqual({
      token: jwt.token,
      expires_at: jwt.expiresAt.toISOString(),
    });
  });
});

describe('the sync stream', () => {
  it('every message type round trips through its NDJSON line', async () => {
    const ca = await newCa();
    const file = new URL('../../examples/policies/payments/payment-service.yaml', import.meta.url);
    const snap = compile(parsePolicyText(readFileSync(file, 'utf8'), file.pathname));
    expect(snap.policies.length).toBeGreaterThan(0);
    const messages: SyncMessage[] = [
      { type: 'state', entries: [entryToWire(entry)], bundle: ca.bundle().toJwks() },
      { type: 'policy', policy: { version: snap.version, policies: snap.policies, options: snap.options } },
      { type: 'policy', policy: null },
      { type: 'revoked', reason: 'agent banned' },
      { type: 'ping' },
    ];
    for (const m of messages) {
      const line = syncLine(m);
      expect(line.endsWith('\n')).toBe(true);
      expect(parseWire(syncMessageSchema, JSON.parse(line), 'sync')).toEqual(viaJson(m));
    }
  });

  it('malformed messages are refused with the field named', async () => {
    const ca = await newCa();
    const bundle = ca.bundle().toJwks();
    const ok = entryToWire(entry);
    expectRefused(
      () => parseWire(syncMessageSchema, { type: 'state', entries: [{ ...ok, spiffe_id: 42 }], bundle }, 's'),
      'entries.0.spiffe_id',
    );
    expectRefused(() => parseWire(syncMessageSchema, { type: 'state', bundle }, 's'), 'entries');
    expectRefused(() => parseWire(syncMessageSchema, { type: 'state', entries: [], bundle: {} }, 's'), 'bundle.keys');
    expectRefused(
      () => parseWire(syncMessageSchema, { type: 'policy', policy: { version: 'v', policies: 'all' } }, 's'),
      'policy.policies',
    );
    expectRefused(() => parseWire(syncMessageSchema, { type: 'revoked' }, 's'), 'reason');
    expectRefused(() => parseWire(syncMessageSchema, { type: 'future' }, 's'), 'type');
  });
});

describe('assertion keys and audit ingestion', () => {
  it('a stored key is published as a JWK the schema accepts; private members are refused', () => {
    const x = 'A'.repeat(43);
    const owner = `spiffe://${TD}/api`;
    const jwks = { keys: [assertionKeyToJwk(owner, { kid: 'k1', x, y: x, expires_at: 1, registered_at: 0 })] };
    expect(parseWire(assertionJwksSchema, viaJson(jwks), 'jwks')).toEqual(jwks);
    expect(jwks.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig', spiffe_id: owner });
    const req = { jwk: { kty: 'EC', crv: 'P-256', x, y: x }, expires_at: '2026-01-01T00:00:00Z' };
    expect(parseWire(assertionKeyRequestSchema, viaJson(req), 'register')).toEqual(req);
    const w = expectRefused(
      () => parseWire(assertionKeyRequestSchema, { ...req, jwk: { ...req.jwk, d: x } }, 'register'),
      'jwk',
    );
    expect(w.message).not.toContain(x);
  });

  it('the ingestion envelope and its answer', () => {
    const body = { events: [{ kind: 'decision', outcome: 'allow' }] };
    expect(parseWire(auditIngestRequestSchema, viaJson(body), 'ingest')).toEqual(body);
    expectRefused(() => parseWire(auditIngestRequestSchema, { events: {} }, 'ingest'), 'events');
    const answer = { stored: 1, duplicates: 0, tree_size: 10 };
    expect(parseWire(auditIngestResponseSchema, viaJson(answer), 'ingest')).toEqual(answer);
  });
});
