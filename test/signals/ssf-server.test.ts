/**
 * SSF in a running server: a test transmitter over real HTTP (its own ES256 key, discovery, JWKS,
 * stream creation, RFC 8936 poll) pushes and hands out SETs; our push endpoint answers per RFC 8935
 * and raises signals into the store; our transmitter's SETs reach a real HTTP receiver and verify
 * against the JWKS we publish.
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createRemoteJWKSet, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Signal } from '../../src/api/signals.js';
import { configSchema } from '../../src/config/index.js';
import type { RunningServer } from '../../src/server/index.js';
import { startServer } from '../../src/server/index.js';
import { caPlugin } from '../../src/server/plugins/ca.js';
import { type SignalsHandle, signalsPlugin } from '../../src/server/plugins/signals.js';
import { ssfPlugin } from '../../src/server/plugins/ssf.js';
import { discoverTransmitter } from '../../src/signals/ssf/discovery.js';
import { CAEP, RISC } from '../../src/signals/ssf/events.js';
import { createMemorySeenSet, verifySet } from '../../src/signals/ssf/set.js';
import { SSF_VERIFICATION_EVENT } from '../../src/signals/ssf/transmitter.js';
import { createLogger } from '../../src/util/logger.js';
import { freePort } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { type HttpTransmitter, startHttpTransmitter } from './ssf-http.js';

const AUD = 'https://nevertrust.test/ssf';
const RP_AUD = 'https://rp.test/ssf';
const PUSH_TOKEN = 'push-token-0123456789abcdef';
const RP_TOKEN = 'rp-token-0123456789abcdef';

let pushTx: HttpTransmitter;
let pollTx: HttpTransmitter;
let server: RunningServer;
let dir: string;
let rp: Server;
let rpUrl: string;
/** The test receiver answers 503 to this many pushes first (a receiver that is down for a moment). */
let rpFailures = 0;
const rpGot: Array<{ type: string | undefined; body: string; auth: string | undefined }> = [];

/** Makes the next raise fail, as a store that is down would. */
let failNextRaise = false;
let signals: ReturnType<typeof signalsPlugin>;
/** The signals handle the SSF plugin gets: the server's own, with a way to make one raise fail. */
const handle: SignalsHandle = {
  async raise(signal: Signal): Promise<number> {
    if (failNextRaise) {
      failNextRaise = false;
      throw new Error('store unavailable');
    }
    return signals.handle.raise(signal);
  },
  onKept: (l) => signals.handle.onKept(l),
};
const sink = handle;

const secret = (name: string, value: string): string => {
  const f = join(dir, name);
  writeFileSync(f, value, { mode: 0o600 });
  return f;
};

beforeAll(async () => {
  dir = tempDir();
  pushTx = await startHttpTransmitter(AUD);
  pollTx = await startHttpTransmitter(AUD);
  rp = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (rpFailures > 0) {
        rpFailures--;
        res.writeHead(503).end();
        return;
      }
      rpGot.push({
        type: req.headers['content-type'],
        body: Buffer.concat(chunks).toString('utf8'),
        auth: req.headers.authorization,
      });
      res.writeHead(202).end();
    });
  });
  await new Promise<void>((r) => rp.listen(0, '127.0.0.1', r));
  rpUrl = `http://127.0.0.1:${(rp.address() as AddressInfo).port}/push`;
  const port = await freePort();
  const ca = caPlugin();
  signals = signalsPlugin({ ca: ca.handle });
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const keyFile = secret('ssf-key.pem', privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  server = await startServer({
    config: configSchema.parse({
      data_dir: dir,
      server: { port },
      signals: {
        ssf: {
          receivers: [
            {
              name: 'idp',
              issuer: pushTx.issuer,
              audience: AUD,
              delivery: 'push',
              push_url: `http://127.0.0.1:${port}/v1/ssf/push/idp`,
              push_token_file: secret('push.token', PUSH_TOKEN),
              token_file: secret('idp.token', 'idp-bearer'),
            },
            {
              name: 'risk',
              issuer: pollTx.issuer,
              audience: AUD,
              delivery: 'poll',
              poll_interval: '100ms',
              token_file: secret('risk.token', 'risk-bearer'),
            },
          ],
          transmitter: {
            issuer: `http://127.0.0.1:${port}`,
            key_file: keyFile,
            receivers: [
              { name: 'rp', audience: RP_AUD, token_file: secret('rp.token', RP_TOKEN), endpoint_url: rpUrl },
              {
                name: 'rp-poll',
                audience: RP_AUD,
                token_file: secret('rp-poll.token', `${RP_TOKEN}-poll`),
                delivery: 'poll',
              },
            ],
          },
        },
      },
    }),
    logger: createLogger('silent'),
    plugins: [ca, signals, ssfPlugin({ signals: handle })],
  });
}, 30_000);

afterAll(async () => {
  await server?.close();
  await pushTx?.close();
  await pollTx?.close();
  await new Promise<void>((r) => rp?.close(() => r()));
});

const push = (jwt: string, headers: Record<string, string> = {}) =>
  fetch(`${server.url}/v1/ssf/push/idp`, {
    method: 'POST',
    headers: { 'content-type': 'application/secevent+jwt', authorization: `Bearer ${PUSH_TOKEN}`, ...headers },
    body: jwt,
  });

async function until<T>(f: () => T | undefined | Promise<T | undefined>, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Waits for the push receiver's discovery (its keys) to be done. */
async function keysKnown(): Promise<void> {
  await until(() => pushTx.streamRequests.length > 0);
}

describe('SSF receiver (push, RFC 8935)', () => {
  it('creates the stream at the transmitter with our push endpoint and its bearer', async () => {
    await keysKnown();
    expect(pushTx.streamRequests[0]).toMatchObject({
      delivery: {
        method: 'urn:ietf:rfc:8935',
        endpoint_url: `${server.url}/v1/ssf/push/idp`,
        authorization_header: `Bearer ${PUSH_TOKEN}`,
      },
      events_requested: expect.arrayContaining([CAEP.sessionRevoked, RISC.accountDisabled]),
    });
    expect(pushTx.authorizations).toContain('Bearer idp-bearer');
  });

  it('a CAEP session-revoked raises session.revoked (202) and ends the session', async () => {
    await keysKnown();
    const now = Date.now();
    await server.store.accessSessions.create('tok-sess-42', {
      id: 'sess-42',
      host: 'app.example.org',
      issuer: 'https://accounts.example',
      sub: 'u-42',
      providerSid: null,
      person: '{}',
      tokens: 'sealed',
      tokenExpiresAt: null,
      createdAt: now,
      expiresAt: now + 3_600_000,
      lastSeenAt: now,
      userName: 'u42',
    });
    const before = await server.store.signals.head();
    const jwt = await pushTx.mint({
      sub_id: { format: 'opaque', id: 'sess-42' },
      events: { [CAEP.sessionRevoked]: { event_timestamp: Math.floor(Date.now() / 1000) } },
    });
    const res = await push(jwt);
    expect(res.status).toBe(202);
    const got = await server.store.signals.after(before, 10);
    expect(got.map((s) => s.signal)).toMatchObject([{ kind: 'session.revoked', sessionId: 'sess-42', source: 'ssf' }]);
    expect((await server.store.accessSessions.findById('sess-42'))?.endedAt).toBeTypeOf('number');
  });

  it('a RISC account-disabled with iss_sub raises user.disabled naming issuer and sub, ending their sessions', async () => {
    await keysKnown();
    const now = Date.now();
    await server.store.accessSessions.create('tok-u7', {
      id: 's-u7',
      host: 'app.example.org',
      issuer: 'https://accounts.example',
      sub: 'u-7',
      providerSid: null,
      person: '{}',
      tokens: 'sealed',
      tokenExpiresAt: null,
      createdAt: now,
      expiresAt: now + 3_600_000,
      lastSeenAt: now,
      userName: 'someone-else-by-name',
    });
    const before = await server.store.signals.head();
    const jwt = await pushTx.mint({
      sub_id: { format: 'iss_sub', iss: 'https://accounts.example', sub: 'u-7' },
      events: { [RISC.accountDisabled]: { reason_admin: { en: 'left the company' } } },
    });
    expect((await push(jwt)).status).toBe(202);
    const got = await server.store.signals.after(before, 10);
    expect(got.map((s) => s.signal)).toMatchObject([
      {
        kind: 'user.disabled',
        user: { user: 'u-7', issuer: 'https://accounts.example', sub: 'u-7' },
        reason: 'left the company',
      },
    ]);
    expect((await server.store.accessSessions.findById('s-u7'))?.endedAt).toBeTypeOf('number');
  });

  it('refuses forged and broken SETs with the RFC 8935 error and raises nothing', async () => {
    await keysKnown();
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const revoke = { sub_id: { format: 'opaque', id: 'sess-forged' }, events: { [CAEP.sessionRevoked]: {} } };
    const replayed = await pushTx.mint(revoke);
    expect((await push(replayed)).status).toBe(202);
    const before = await server.store.signals.head();
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const claims = {
      iss: pushTx.issuer,
      aud: AUD,
      iat: Math.floor(Date.now() / 1000),
      jti: randomUUID(),
      ...revoke,
    };
    const cases: Array<[string, string, string]> = [
      ['wrong key', await pushTx.mint(revoke, {}, other), 'invalid_key'],
      ['wrong aud', await pushTx.mint({ ...revoke, aud: 'https://someone-else' }), 'invalid_audience'],
      ['replayed jti', replayed, 'invalid_request'],
      ['stale iat', await pushTx.mint({ ...revoke, iat: Math.floor(Date.now() / 1000) - 3600 }), 'invalid_request'],
      [
        'unknown subject format',
        await pushTx.mint({ ...revoke, sub_id: { format: 'phone_number', phone_number: '+15551234567' } }),
        'invalid_request',
      ],
      ['alg none', `${b64({ alg: 'none', typ: 'secevent+jwt' })}.${b64(claims)}.`, 'invalid_key'],
      [
        'HS256',
        await new SignJWT(claims)
          .setProtectedHeader({ alg: 'HS256', typ: 'secevent+jwt', kid: 'http-tx-1' })
          .sign(new TextEncoder().encode('a-shared-secret-of-32-bytes-long!')),
        'invalid_key',
      ],
      ['wrong issuer', await pushTx.mint({ ...revoke, iss: 'https://evil.example' }), 'invalid_issuer'],
    ];
    for (const [what, jwt, err] of cases) {
      const res = await push(jwt);
      const body = (await res.json()) as { err: string; description: string };
      expect({ what, status: res.status, err: body.err }).toEqual({ what, status: 400, err });
      expect(body.description.length).toBeGreaterThan(0);
    }
    expect(await server.store.signals.head()).toBe(before);
  });

  it('refuses a push without the bearer token (401) or with another content type (400)', async () => {
    await keysKnown();
    const before = await server.store.signals.head();
    const jwt = await pushTx.mint({ sub_id: { format: 'opaque', id: 's-x' }, events: { [CAEP.sessionRevoked]: {} } });
    const noAuth = await push(jwt, { authorization: 'Bearer wrong' });
    expect(noAuth.status).toBe(401);
    expect(await noAuth.json()).toMatchObject({ err: 'authentication_failed' });
    const json = await push(jwt, { 'content-type': 'application/json' });
    expect(json.status).toBe(400);
    expect(await json.json()).toMatchObject({ err: 'invalid_request' });
    expect(await server.store.signals.head()).toBe(before);
    // The same SET, delivered properly, is still accepted: a refused delivery spent no jti.
    expect((await push(jwt)).status).toBe(202);
  });

  it('answers 503 when a signal cannot be kept, and accepts the same SET when it is sent again', async () => {
    await keysKnown();
    const before = await server.store.signals.head();
    const jwt = await pushTx.mint({
      sub_id: { format: 'opaque', id: 's-retry' },
      events: { [CAEP.sessionRevoked]: {} },
    });
    failNextRaise = true;
    const first = await push(jwt);
    expect(first.status).toBe(503);
    expect(await server.store.signals.head()).toBe(before);
    // Its jti was not spent: the transmitter's retry is not refused as a replay.
    expect((await push(jwt)).status).toBe(202);
    const got = await server.store.signals.after(before, 10);
    expect(got.map((s) => s.signal)).toMatchObject([{ kind: 'session.revoked', sessionId: 's-retry' }]);
  });
});

describe('SSF receiver (poll, RFC 8936)', () => {
  it('polls, raises, acknowledges accepted SETs and reports refused ones in setErrs', async () => {
    await until(() => pollTx.streamRequests.length > 0);
    expect(pollTx.streamRequests[0]).toMatchObject({ delivery: { method: 'urn:ietf:rfc:8936' } });
    const before = await server.store.signals.head();
    const good = await pollTx.mint({
      sub_id: { format: 'email', email: 'ann@example.com' },
      events: { [CAEP.credentialChange]: { credential_type: 'password', change_type: 'update' } },
    });
    const forged = await pollTx.mint(
      { sub_id: { format: 'email', email: 'bob@example.com' }, events: { [RISC.accountDisabled]: {} } },
      {},
      generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
    );
    pollTx.queue('j-good', good);
    pollTx.queue('j-forged', forged);
    await until(() => pollTx.pending().length === 0);
    const acked = pollTx.polls.flatMap((p) => p.ack ?? []);
    const errs = Object.assign({}, ...pollTx.polls.map((p) => p.setErrs ?? {}));
    expect(acked).toContain('j-good');
    expect(acked).not.toContain('j-forged');
    expect(errs['j-forged']).toMatchObject({ err: 'invalid_key' });
    const got = await server.store.signals.after(before, 10);
    expect(got.map((s) => s.signal)).toMatchObject([
      { kind: 'user.credentials-changed', user: { user: 'ann@example.com' } },
    ]);
    expect(pollTx.authorizations).toContain('Bearer risk-bearer');
  });
});

describe('SSF transmitter', () => {
  it('publishes its metadata and JWKS, and our revocation reaches a push receiver as a SET that verifies', async () => {
    const meta = await discoverTransmitter(`${server.url}`);
    expect(meta.jwks_uri).toBe(`${server.url}/ssf/jwks.json`);
    const n = rpGot.length;
    await sink.raise({
      kind: 'session.revoked',
      sessionId: 'ours-1',
      reason: 'admin revoked it',
      source: 'admin',
      at: new Date().toISOString(),
    });
    await until(() => rpGot.length > n);
    const got = rpGot[n];
    expect(got?.type).toBe('application/secevent+jwt');
    const set = await verifySet(got?.body, {
      issuer: server.url,
      audience: RP_AUD,
      jwks: createRemoteJWKSet(new URL(meta.jwks_uri ?? '')),
      maxAgeSeconds: 60,
      seen: createMemorySeenSet(),
    });
    expect(set.events).toMatchObject([{ type: CAEP.sessionRevoked, subject: { format: 'opaque', id: 'ours-1' } }]);
  });

  it('retries pushes the receiver could not take, keeping seq order; SSF-received signals are not sent on', async () => {
    const n = rpGot.length;
    rpFailures = 2;
    const at = new Date().toISOString();
    await sink.raise({ kind: 'session.revoked', sessionId: 'ord-1', reason: 'r', source: 'admin', at });
    await sink.raise({ kind: 'session.revoked', sessionId: 'relayed', reason: 'r', source: 'ssf', at });
    await sink.raise({ kind: 'session.revoked', sessionId: 'ord-2', reason: 'r', source: 'admin', at });
    await until(() => rpGot.length >= n + 2);
    await new Promise((r) => setTimeout(r, 200));
    const ids = rpGot.slice(n).map((g) => {
      const p = JSON.parse(Buffer.from(g.body.split('.')[1] ?? '', 'base64url').toString()) as {
        sub_id: { id: string };
        jti: string;
      };
      return [p.sub_id.id, p.jti];
    });
    expect(ids.map(([id]) => id)).toEqual(['ord-1', 'ord-2']);
    expect(ids[0]?.[1]).toMatch(/^rp-\d+$/);
    expect(rpFailures).toBe(0);
  });

  it('serves stream management to a receiver with its bearer token only, and a verification event', async () => {
    const auth = { authorization: `Bearer ${RP_TOKEN}` };
    expect((await fetch(`${server.url}/ssf/stream`, { headers: { authorization: 'Bearer nope' } })).status).toBe(401);
    const list = (await (await fetch(`${server.url}/ssf/stream`, { headers: auth })).json()) as Array<{
      stream_id: string;
    }>;
    expect(list).toHaveLength(1);
    const id = list[0]?.stream_id ?? '';
    // A configured stream exists: creating another is a conflict.
    const again = await fetch(`${server.url}/ssf/stream`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: rpUrl } }),
    });
    expect(again.status).toBe(409);
    const status = await fetch(`${server.url}/ssf/status?stream_id=${id}`, { headers: auth });
    expect(await status.json()).toEqual({ stream_id: id, status: 'enabled' });
    const n = rpGot.length;
    const verify = await fetch(`${server.url}/ssf/verify`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ stream_id: id, state: 'st-1' }),
    });
    expect(verify.status).toBe(204);
    await until(() => rpGot.length > n);
    const payload = JSON.parse(Buffer.from(rpGot[n]?.body.split('.')[1] ?? '', 'base64url').toString()) as {
      events: Record<string, unknown>;
      sub_id: unknown;
    };
    expect(payload.events[SSF_VERIFICATION_EVENT]).toEqual({ state: 'st-1' });
    expect(payload.sub_id).toEqual({ format: 'opaque', id });
    // Another receiver's token does not reach this stream.
    const foreign = await fetch(`${server.url}/ssf/status?stream_id=${id}`, {
      headers: { authorization: `Bearer ${RP_TOKEN}-poll` },
    });
    expect(foreign.status).toBe(404);
    expect((await fetch(`${server.url}/ssf/subjects:add`, { method: 'POST', headers: auth })).status).toBe(501);
  });

  it('serves SETs to a poll receiver until it acknowledges them', async () => {
    const auth = { authorization: `Bearer ${RP_TOKEN}-poll`, 'content-type': 'application/json' };
    const poll = async (body: unknown) =>
      (await (
        await fetch(`${server.url}/ssf/poll`, { method: 'POST', headers: auth, body: JSON.stringify(body) })
      ).json()) as {
        sets: Record<string, string>;
        moreAvailable: boolean;
      };
    await poll({ ack: Object.keys((await poll({ maxEvents: 1000 })).sets) });
    await sink.raise({
      kind: 'user.disabled',
      user: { user: 'u-9', issuer: 'https://accounts.example', sub: 'u-9' },
      reason: 'disabled',
      source: 'admin',
      at: new Date().toISOString(),
    });
    const first = await until(async () => {
      const r = await poll({ maxEvents: 10, returnImmediately: true });
      return Object.keys(r.sets).length > 0 ? r : undefined;
    });
    const [jti, jwt] = Object.entries(first.sets)[0] ?? [];
    const set = await verifySet(jwt, {
      issuer: server.url,
      audience: RP_AUD,
      jwks: createRemoteJWKSet(new URL(`${server.url}/ssf/jwks.json`)),
      maxAgeSeconds: 60,
      seen: createMemorySeenSet(),
    });
    expect(set.events).toMatchObject([
      { type: RISC.accountDisabled, subject: { format: 'iss_sub', iss: 'https://accounts.example', sub: 'u-9' } },
    ]);
    // Not acknowledged: handed out again; acknowledged: gone.
    expect(Object.keys((await poll({})).sets)).toContain(jti);
    expect(Object.keys((await poll({ ack: [jti] })).sets)).not.toContain(jti);
  });
});
