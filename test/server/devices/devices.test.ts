/**
 * Devices on a real server (in process) over real TLS with the real CA: enrollment with one-time
 * tokens, CSR checks, renewal from the current certificate only, signed posture reports and their
 * refusals, revocation, the MDM webhook (HMAC) and the compliance-change event.
 */
import { createHash, createPublicKey, generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  deviceCertificateSchema,
  deviceListSchema,
  deviceShowSchema,
  deviceTokenSchema,
} from '../../../src/api/devices.js';
import {
  CertificateAuthority,
  certificatesToPem,
  createCsrWithSigner,
  csrToPem,
  Kek,
  MemoryCaStateStore,
} from '../../../src/ca/index.js';
import { configSchema } from '../../../src/config/index.js';
import { devicesPlugin } from '../../../src/server/devices/plugin.js';
import { MdmConfigError, mdmSignature } from '../../../src/server/devices/mdm.js';
import { type RunningServer, type ServerEvent, startServer } from '../../../src/server/index.js';
import { agentEndpointPlugin } from '../../../src/server/plugins/agent-endpoint.js';
import { caPlugin } from '../../../src/server/plugins/ca.js';
import { certificatesFromPem } from '../../../src/spiffe/pem.js';
import { createLogger } from '../../../src/util/logger.js';
import { tempDir } from '../../support/tmp.js';
import { call, csrFor, newDevice, report, signReport, type TestDevice } from './client.js';

const TD = 'example.org';
const MDM_SECRET = 'mdm-secret-0123456789abcdef0123456789abcdef';

describe('devices on a real server', () => {
  let server: RunningServer;
  let agentPort: number;
  let admin: string;
  let ca: string;
  let caHandle: ReturnType<typeof caPlugin>['handle'];
  const events: ServerEvent[] = [];
  const secrets: string[] = [];

  beforeAll(async () => {
    const dataDir = tempDir();
    const secretFile = join(dataDir, 'mdm.secret');
    writeFileSync(secretFile, `${MDM_SECRET}\n`, { mode: 0o600 });
    const caP = caPlugin();
    const devices = devicesPlugin({ ca: caP.handle, enrollBurst: 40 });
    const agent = agentEndpointPlugin({ ca: caP.handle, routes: devices.agentRoutes });
    server = await startServer({
      config: configSchema.parse({
        data_dir: dataDir,
        trust_domain: TD,
        server: { port: 0, agent_port: 0 },
        devices: { cert_ttl: '2h', mdm: { secret_file: secretFile } },
      }),
      logger: createLogger('silent'),
      plugins: [caP, devices, agent],
    });
    server.events.on('event', (e) => events.push(e));
    agentPort = agent.address()?.port ?? 0;
    admin = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
    ca = caP.handle.current().bundle().toPem();
    caHandle = caP.handle;
  });
  afterAll(async () => {
    await server?.close();
    // No event ever carries a token's secret.
    const all = JSON.stringify(events);
    for (const s of secrets) expect(all).not.toContain(s);
  });

  const api = async (method: string, path: string, body?: unknown, auth = true) => {
    const res = await fetch(`${server.url}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...(auth ? { authorization: `Bearer ${admin}` } : {}) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const device = (path: string, body: unknown, d?: TestDevice) =>
    call(agentPort, path, {
      ca,
      body,
      ...(d?.certPem ? { cert: { certPem: d.certPem, keyPem: d.keyPem } } : {}),
    });

  async function token(owner: string, extra: Record<string, unknown> = {}): Promise<string> {
    const r = await api('POST', '/v1/admin/devices/tokens', { owner, ...extra });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const t = r.body.token as string;
    secrets.push(t.split('.')[0] as string);
    return t.split('.')[0] as string;
  }

  async function enrolled(id: string, owner = 'alice'): Promise<TestDevice> {
    const d = await newDevice();
    const r = await device('/device/v1/enroll', {
      token: await token(owner),
      device_id: id,
      csr: await csrFor(d, TD, id),
    });
    expect(r.status, r.text).toBe(200);
    d.certPem = r.body.cert_chain as string;
    return d;
  }

  const lastEvent = (kind: string) => [...events].reverse().find((e) => e.kind === kind);

  it('serves the bundle without a client certificate; the token pins one of its roots', async () => {
    const r = await call(agentPort, '/device/v1/bundle', { ca });
    expect(r.status).toBe(200);
    expect(r.text).toContain('-----BEGIN CERTIFICATE-----');
    const t = await api('POST', '/v1/admin/devices/tokens', { owner: 'alice', ttl: '1h' });
    expect(t.status).toBe(201);
    secrets.push((t.body.token as string).split('.')[0] as string);
    const pin = (t.body.token as string).split('.')[1];
    const pins = certificatesFromPem(r.text).map((der) => createHash('sha256').update(der).digest('hex'));
    expect(pins).toContain(pin);
    deviceTokenSchema.parse(t.body);
    expect(t.body).toMatchObject({ owner: 'alice', device_id: null, ttl: 3600 });
    expect(lastEvent('device.token')).toMatchObject({ outcome: 'allow', details: { owner: 'alice' } });
    expect((await api('POST', '/v1/admin/devices/tokens', { owner: 'alice' }, false)).status).toBe(401);
  });

  it('enrolls with a token once: a device certificate for spiffe://<td>/device/<id>; the token cannot be used twice', async () => {
    const d = await newDevice();
    const secret = await token('alice');
    const r = await device('/device/v1/enroll', {
      token: secret,
      device_id: 'laptop-1',
      csr: await csrFor(d, TD, 'laptop-1'),
      name: 'Laptop',
    });
    expect(r.status, r.text).toBe(200);
    deviceCertificateSchema.parse(r.body);
    expect(r.body).toMatchObject({
      device_id: 'laptop-1',
      spiffe_id: `spiffe://${TD}/device/laptop-1`,
      owner: 'alice',
    });
    const leaf = new X509Certificate(r.body.cert_chain as string);
    expect(leaf.subjectAltName).toBe(`URI:spiffe://${TD}/device/laptop-1`);
    expect(leaf.publicKey.export({ format: 'pem', type: 'spki' })).toBe(d.key.publicKeyPem());
    const life = Date.parse(leaf.validTo) - Date.now();
    expect(life).toBeGreaterThan(1.9 * 3600_000);
    expect(life).toBeLessThanOrEqual(2 * 3600_000);
    expect(Date.parse(r.body.renew_after as string)).toBeLessThan(Date.parse(r.body.expires_at as string));
    expect(lastEvent('device.enroll')).toMatchObject({
      outcome: 'allow',
      target: { id: `spiffe://${TD}/device/laptop-1` },
    });

    const again = await device('/device/v1/enroll', {
      token: secret,
      device_id: 'laptop-2',
      csr: await csrFor(d, TD, 'laptop-2'),
    });
    expect(again.status).toBe(403);
    expect(again.body.error).toBe('token_used');
    expect(lastEvent('device.enroll')).toMatchObject({ outcome: 'deny', reason: 'enrollment token already used' });
    // The same id with a fresh token: already enrolled.
    const dup = await device('/device/v1/enroll', {
      token: await token('bob'),
      device_id: 'laptop-1',
      csr: await csrFor(d, TD, 'laptop-1'),
    });
    expect(dup.status).toBe(409);
  });

  it('refuses an expired token, an unknown one, and a token bound to another device id', async () => {
    const d = await newDevice();
    const short = await token('alice', { ttl: 1 });
    await new Promise((r) => setTimeout(r, 1100));
    const expired = await device('/device/v1/enroll', {
      token: short,
      device_id: 'exp-1',
      csr: await csrFor(d, TD, 'exp-1'),
    });
    expect([expired.status, expired.body.error]).toEqual([403, 'token_expired']);
    const unknown = await device('/device/v1/enroll', {
      token: 'f'.repeat(32),
      device_id: 'exp-1',
      csr: await csrFor(d, TD, 'exp-1'),
    });
    expect([unknown.status, unknown.body.error]).toEqual([403, 'token_unknown']);

    const bound = await token('carol', { device_id: 'fixed-1' });
    const other = await device('/device/v1/enroll', {
      token: bound,
      device_id: 'other-1',
      csr: await csrFor(d, TD, 'other-1'),
    });
    expect([other.status, other.body.error]).toEqual([403, 'token_other_device']);
    // Not spent by the refusal: the right id still enrolls with it.
    const ok = await device('/device/v1/enroll', {
      token: bound,
      device_id: 'fixed-1',
      csr: await csrFor(d, TD, 'fixed-1'),
    });
    expect(ok.status, ok.text).toBe(200);
    expect(ok.body.owner).toBe('carol');
  });

  it('never echoes a token from a body that is not JSON (into the answer or the audit log)', async () => {
    // An unquoted token: V8's parse error would quote the body around it.
    const secret = 'abcdef0123456789abcdef0123456789';
    const r = await call(agentPort, '/device/v1/enroll', { ca, raw: `{"device_id":"j-1","token":${secret}}` });
    expect([r.status, r.body.error]).toEqual([400, 'invalid_request']);
    const reason = (lastEvent('device.enroll') as { reason: string }).reason;
    expect(reason).toMatch(/not valid JSON/);
    for (const seen of [r.text, reason]) expect(seen).not.toContain(secret.slice(0, 6));
  });

  it('refuses a CSR asking for another identity or without proof of possession, without spending the token', async () => {
    const d = await newDevice();
    const secret = await token('alice');
    for (const uri of [
      `spiffe://${TD}/device/someone-else`,
      `spiffe://${TD}/nevertrust/server`,
      `spiffe://other.org/device/csr-1`,
    ]) {
      const r = await device('/device/v1/enroll', {
        token: secret,
        device_id: 'csr-1',
        csr: await csrFor(d, TD, 'csr-1', uri),
      });
      expect(r.status, uri).toBe(400);
      expect(r.body.error).toBe('invalid_csr');
    }
    // A CSR carrying the device's public key but signed by another key: no proof of possession.
    const { privateKey: other } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const { sign } = await import('node:crypto');
    const forged = csrToPem(
      await createCsrWithSigner(
        createPublicKey(d.key.publicKeyPem()),
        async (cri) => sign('sha256', cri, { key: other, dsaEncoding: 'der' }),
        {
          uriSan: `spiffe://${TD}/device/csr-1`,
        },
      ),
    );
    const pop = await device('/device/v1/enroll', { token: secret, device_id: 'csr-1', csr: forged });
    expect([pop.status, pop.body.error]).toEqual([400, 'invalid_csr']);
    const ok = await device('/device/v1/enroll', {
      token: secret,
      device_id: 'csr-1',
      csr: await csrFor(d, TD, 'csr-1'),
    });
    expect(ok.status, ok.text).toBe(200);
  });

  it('renews with the current certificate; the replaced one can no longer renew or report', async () => {
    const d = await enrolled('renew-1');
    const old = d.certPem as string;
    const r = await device('/device/v1/renew', { csr: await csrFor(d, TD, 'renew-1') }, d);
    expect(r.status, r.text).toBe(200);
    const next = r.body.cert_chain as string;
    expect(new X509Certificate(next).serialNumber).not.toBe(new X509Certificate(old).serialNumber);
    expect(lastEvent('device.renew')).toMatchObject({ outcome: 'allow' });

    const stale = await device('/device/v1/renew', { csr: await csrFor(d, TD, 'renew-1') }, { ...d, certPem: old });
    expect([stale.status, stale.body.error]).toEqual([403, 'stale_device_certificate']);
    const staleReport = await device(
      '/device/v1/posture',
      { jws: await signReport(d.privateKey, report('renew-1', true)) },
      { ...d, certPem: old },
    );
    expect(staleReport.status).toBe(403);
    // A renewal CSR must name the device itself.
    const wrong = await device('/device/v1/renew', { csr: await csrFor(d, TD, 'renew-2') }, { ...d, certPem: next });
    expect([wrong.status, wrong.body.error]).toEqual([400, 'invalid_csr']);
    // No certificate at all.
    const none = await device('/device/v1/renew', { csr: await csrFor(d, TD, 'renew-1') });
    expect(none.status).toBe(401);
    d.certPem = next;
    const broken = await call(agentPort, '/device/v1/renew', {
      ca,
      raw: '{"csr":',
      cert: { certPem: next, keyPem: d.keyPem },
    });
    expect([broken.status, broken.body.error]).toEqual([400, 'invalid_request']);
    expect(lastEvent('device.renew')).toMatchObject({
      outcome: 'deny',
      reason: expect.stringMatching(/not valid JSON/),
    });
    expect((await device('/device/v1/renew', { csr: await csrFor(d, TD, 'renew-1') }, d)).status).toBe(200);
  });

  it('keeps a signed report and refuses forged, mis-signed, foreign, badly timed and oversized ones', async () => {
    const d = await enrolled('rep-1');
    const ok = await device('/device/v1/posture', { jws: await signReport(d.privateKey, report('rep-1', true)) }, d);
    expect(ok.status, ok.text).toBe(200);
    expect(ok.body.posture).toMatchObject({ source: 'collector', compliant: true, managed: true });
    expect(lastEvent('device.report')).toMatchObject({ outcome: 'allow', reason: 'compliant' });

    const refusedWith = async (jws: string, status: number, error: string) => {
      const r = await device('/device/v1/posture', { jws }, d);
      expect([r.status, r.body.error], r.text).toEqual([status, error]);
      expect(lastEvent('device.report')).toMatchObject({ outcome: 'deny' });
    };
    const { privateKey: otherKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    await refusedWith(await signReport(otherKey, report('rep-1', true)), 400, 'invalid_signature');
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    await refusedWith(
      `${b64({ alg: 'none', typ: 'nevertrust-posture+jws' })}.${b64(report('rep-1', true))}.`,
      400,
      'invalid_signature',
    );
    await refusedWith(
      await signReport(new TextEncoder().encode('x'.repeat(32)), report('rep-1', true), {
        alg: 'HS256',
        typ: 'nevertrust-posture+jws',
      }),
      400,
      'invalid_signature',
    );
    await refusedWith(
      await signReport(d.privateKey, report('rep-1', true), { alg: 'ES256', typ: 'JWT' }),
      400,
      'invalid_report',
    );
    await refusedWith(await signReport(d.privateKey, report('renew-1', true)), 403, 'device_mismatch');
    await refusedWith(
      await signReport(d.privateKey, report('rep-1', true, new Date(Date.now() + 5 * 60_000))),
      400,
      'report_in_future',
    );
    await refusedWith(
      await signReport(d.privateKey, report('rep-1', true, new Date(Date.now() - 2 * 3600_000))),
      400,
      'report_stale',
    );
    await refusedWith(await signReport(d.privateKey, { ...report('rep-1', true), extra: 1 }), 400, 'invalid_report');
    const big = await device('/device/v1/posture', { jws: 'a'.repeat(70 * 1024) }, d);
    expect(big.status).toBe(413);
    expect(lastEvent('device.report')).toMatchObject({ outcome: 'deny' });
    // A device certificate's holder cannot report for another device with its own key either.
    const shown = await api('GET', '/v1/admin/devices/rep-1');
    expect(shown.status).toBe(200);
    expect((shown.body.reports as unknown[]).length).toBe(1);
  });

  it('emits device.non_compliant when a posture turns non-compliant, once per change', async () => {
    const d = await enrolled('comp-1', 'dave');
    const send = async (compliant: boolean) => {
      const r = await device(
        '/device/v1/posture',
        { jws: await signReport(d.privateKey, report('comp-1', compliant)) },
        d,
      );
      expect(r.status, r.text).toBe(200);
    };
    const count = () =>
      events.filter((e) => e.kind === 'device.non_compliant' && e.target.id?.endsWith('/comp-1')).length;
    await send(false); // none → non-compliant
    expect(count()).toBe(1);
    const e = lastEvent('device.non_compliant');
    expect(e?.details?.signal).toMatchObject({ kind: 'device.non-compliant', deviceId: 'comp-1', source: 'posture' });
    await send(false); // still non-compliant: no new event
    expect(count()).toBe(1);
    await send(true);
    await send(false);
    expect(count()).toBe(2);
    const shown = await api('GET', '/v1/admin/devices/comp-1?limit=2');
    deviceShowSchema.parse(shown.body);
    expect((shown.body.reports as { posture: { compliant: boolean } }[]).map((r) => r.posture.compliant)).toEqual([
      false,
      true,
    ]);
    const list = await api('GET', '/v1/admin/devices?owner=dave');
    deviceListSchema.parse(list.body);
    expect((await api('GET', '/v1/admin/devices', undefined, false)).status).toBe(401);
    expect((await api('GET', '/v1/admin/devices/nobody')).status).toBe(404);
    expect((list.body.devices as { id: string }[]).map((x) => x.id)).toEqual(['comp-1']);
  });

  it('revokes: the device can neither report nor renew, its id cannot be enrolled again, the signal is emitted', async () => {
    const d = await enrolled('rev-1');
    const r = await api('POST', '/v1/admin/devices/rev-1/revoke', { reason: 'laptop stolen' });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.revoked_reason).toBe('laptop stolen');
    expect(lastEvent('device.revoke')?.details?.signal).toMatchObject({
      kind: 'device.revoked',
      deviceId: 'rev-1',
      source: 'admin',
    });
    const rep = await device('/device/v1/posture', { jws: await signReport(d.privateKey, report('rev-1', true)) }, d);
    expect([rep.status, rep.body.error]).toEqual([403, 'device_revoked']);
    const ren = await device('/device/v1/renew', { csr: await csrFor(d, TD, 'rev-1') }, d);
    expect([ren.status, ren.body.error]).toEqual([403, 'device_revoked']);
    expect((await api('POST', '/v1/admin/devices/rev-1/revoke', {})).status).toBe(409);
    expect((await api('POST', '/v1/admin/devices/nope/revoke', {})).status).toBe(404);
    const again = await device('/device/v1/enroll', {
      token: await token('alice'),
      device_id: 'rev-1',
      csr: await csrFor(d, TD, 'rev-1'),
    });
    expect([again.status, again.body.error]).toEqual([409, 'device_exists']);
  });

  it('takes MDM posture with a good HMAC only: bad signature, old timestamp, changed body, replay and unknown device refused', async () => {
    await enrolled('mdm-1', 'erin');
    const body = (over: Record<string, unknown> = {}) =>
      JSON.stringify({
        device_id: 'mdm-1',
        collected_at: new Date().toISOString(),
        managed: true,
        encrypted: true,
        os_patched: false,
        firewall_active: true,
        edr_active: true,
        vendor: 'intune',
        ...over,
      });
    const post = async (raw: string, ts: string, sig: string) => {
      const res = await fetch(`${server.url}/v1/devices/mdm`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-nevertrust-timestamp': ts, 'x-nevertrust-signature': sig },
        body: raw,
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const now = String(Math.floor(Date.now() / 1000));
    const good = body();
    const ok = await post(good, now, mdmSignature(MDM_SECRET, now, good));
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(ok.body.posture).toMatchObject({ source: 'mdm', compliant: false, os_patched: false });
    expect(lastEvent('device.mdm')).toMatchObject({ outcome: 'allow' });
    expect(lastEvent('device.non_compliant')?.target.id).toBe(`spiffe://${TD}/device/mdm-1`);

    expect((await post(good, now, mdmSignature(MDM_SECRET, now, good))).body.error).toBe('replayed');
    expect((await post(good, now, mdmSignature('wrong-secret', now, good))).body.error).toBe('bad_signature');
    const changed = body({ os_patched: true });
    expect((await post(changed, now, mdmSignature(MDM_SECRET, now, good))).body.error).toBe('bad_signature');
    const old = String(Math.floor(Date.now() / 1000) - 600);
    const oldBody = body({ vendor: 'jamf' });
    expect((await post(oldBody, old, mdmSignature(MDM_SECRET, old, oldBody))).body.error).toBe('stale_timestamp');
    const unknown = body({ device_id: 'nobody' });
    const u = await post(unknown, now, mdmSignature(MDM_SECRET, now, unknown));
    expect([u.status, u.body.error]).toEqual([404, 'device_unknown']);
    expect((await post(good, now, 'v1=zz')).status).toBe(401);
    expect(lastEvent('device.mdm')).toMatchObject({ outcome: 'deny' });
  });

  it("refuses certificates that are not the device's current one: expired, another CA, a workload SVID", async () => {
    const d = await enrolled('cert-1');
    const jws = await signReport(d.privateKey, report('cert-1', true));
    const present = (chain: Buffer[], key: { export: (o: { format: 'pem'; type: 'pkcs8' }) => string | Buffer }) =>
      call(agentPort, '/device/v1/posture', {
        ca,
        body: { jws },
        cert: { certPem: certificatesToPem(chain), keyPem: key.export({ format: 'pem', type: 'pkcs8' }).toString() },
      });
    const own = caHandle.current();
    const expired = own.mintX509Svid(
      { spiffeId: `spiffe://${TD}/device/cert-1`, ttlSeconds: 60 },
      new Date(Date.now() - 3600_000),
    );
    const e = await present(expired.chain, expired.privateKey);
    expect([e.status, e.body.error], e.text).toEqual([401, 'device_certificate_invalid']);
    const other = await CertificateAuthority.open({
      trustDomain: TD,
      store: new MemoryCaStateStore(),
      kek: Kek.fromBytes(randomBytes(32)),
    });
    const foreign = other.mintX509Svid({ spiffeId: `spiffe://${TD}/device/cert-1`, ttlSeconds: 600 });
    expect((await present(foreign.chain, foreign.privateKey)).status).toBe(401);
    const workload = own.mintX509Svid({ spiffeId: `spiffe://${TD}/ns/prod/sa/api`, ttlSeconds: 600 });
    const w = await present(workload.chain, workload.privateKey);
    expect([w.status, w.body.error]).toEqual([403, 'not_a_device']);
    // A valid certificate for the device from this CA, but not the serial enrollment issued.
    const twin = own.mintX509Svid({ spiffeId: `spiffe://${TD}/device/cert-1`, ttlSeconds: 600 });
    const t = await present(twin.chain, twin.privateKey);
    expect([t.status, t.body.error]).toEqual([403, 'stale_device_certificate']);
    expect(lastEvent('device.report')).toMatchObject({ outcome: 'deny' });
  });

  it('rate-limits enrollment attempts per address', async () => {
    const d = await newDevice();
    const csr = await csrFor(d, TD, 'rl-1');
    let limited = 0;
    for (let i = 0; i < 45; i++) {
      const r = await device('/device/v1/enroll', { token: 'e'.repeat(32), device_id: 'rl-1', csr });
      if (r.status === 429) limited++;
    }
    expect(limited).toBeGreaterThan(0);
  });
});

describe('the MDM webhook configuration', () => {
  const start = (devices: Record<string, unknown>) =>
    startServer({
      config: configSchema.parse({ data_dir: tempDir(), trust_domain: TD, server: { port: 0 }, devices }),
      logger: createLogger('silent'),
      plugins: (() => {
        const c = caPlugin();
        return [c, devicesPlugin({ ca: c.handle })];
      })(),
    });

  it('without a secret file the route does not exist (404)', async () => {
    const s = await start({});
    try {
      const res = await fetch(`${s.url}/v1/devices/mdm`, { method: 'POST', body: '{}' });
      expect(res.status).toBe(404);
    } finally {
      await s.close();
    }
  });

  it('refuses to start with a secret file others can read, or a short secret', async () => {
    const dir = tempDir();
    const open = join(dir, 'open.secret');
    writeFileSync(open, 'x'.repeat(40));
    chmodSync(open, 0o644);
    await expect(start({ mdm: { secret_file: open } })).rejects.toThrow(/chmod 600/);
    const short = join(dir, 'short.secret');
    writeFileSync(short, 'too-short', { mode: 0o600 });
    await expect(start({ mdm: { secret_file: short } })).rejects.toThrow(/at least 32 bytes/);
    expect(new MdmConfigError('x').status).toBe(500);
  });
});
