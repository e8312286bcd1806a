/**
 * The device client against a real server (in process, real CA, real TLS): pinned enrollment,
 * refusals (pin mismatch, wrong token, token for another id), renewal over mTLS, a signed report
 * accepted, and the files it keeps.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DeviceState,
  defaultDeviceId,
  deviceCertNotAfter,
  parseEnrollToken,
  enrollDevice,
  renewDevice,
  sendDeviceReport,
} from '../../../src/access/device/index.js';
import { DEVICE_ID_PATTERN, type PostureReport } from '../../../src/api/index.js';
import { configSchema } from '../../../src/config/index.js';
import { devicesPlugin } from '../../../src/server/devices/plugin.js';
import { type RunningServer, startServer } from '../../../src/server/index.js';
import { agentEndpointPlugin } from '../../../src/server/plugins/agent-endpoint.js';
import { caPlugin } from '../../../src/server/plugins/ca.js';
import { createLogger } from '../../../src/util/logger.js';
import { tempDir } from '../../support/tmp.js';

const TD = 'example.org';

const report = (id: string, compliant = true): PostureReport => ({
  device_id: id,
  collected_at: new Date().toISOString(),
  os: { name: 'Debian GNU/Linux', version: '12', id: 'debian' },
  kernel: '6.1.0-18-amd64',
  updates: { pending_security: compliant ? 0 : 2, pending_total: 3, source: 'apt' },
  disk: { root_encrypted: true, detail: 'nvme0n1 > nvme0n1p3 (crypt) > /' },
  firewall: { active: true, tool: 'nftables' },
  edr: { active: true, running: ['falcon-sensor'] },
  collector_version: 'nevertrust-linux/1',
});

/** A fresh directory with a self-signed P-256 certificate (c.pem) and its key (k.pem), made by OpenSSL. */
function selfSigned(subject: string, extension: string): string {
  const dir = tempDir();
  execFileSync(
    '/usr/bin/openssl',
    [
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1'],
      ...['-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-subj', subject, '-addext', extension],
    ],
    { stdio: 'ignore' },
  );
  return dir;
}

describe('enrollment input', () => {
  it.each([
    ['My-Laptop.local', 'my-laptop.local'],
    ['__build box #7', 'build-box--7'],
    ['ÄÖÜ', 'device'],
    ['', 'device'],
    ['x'.repeat(100), 'x'.repeat(64)],
  ])('the default device id of host %j is %j', (host, id) => {
    expect(defaultDeviceId(host)).toBe(id);
    expect(DEVICE_ID_PATTERN.test(defaultDeviceId(host))).toBe(true);
  });

  it.each([
    '',
    'abc',
    `${'a'.repeat(32)}`,
    `${'a'.repeat(32)}.${'b'.repeat(63)}`,
    `${'A'.repeat(32)}.${'b'.repeat(64)}`,
  ])('refuses the malformed token %j before any network call', (t) => {
    expect(() => parseEnrollToken(t)).toThrow(/malformed/);
  });
});

describe('device client on a real server', () => {
  let server: RunningServer;
  let agentUrl: string;
  let admin: string;

  beforeAll(async () => {
    const dataDir = tempDir();
    const caP = caPlugin();
    const devices = devicesPlugin({ ca: caP.handle, enrollBurst: 40 });
    const agent = agentEndpointPlugin({ ca: caP.handle, routes: devices.agentRoutes });
    server = await startServer({
      config: configSchema.parse({
        data_dir: dataDir,
        trust_domain: TD,
        server: { port: 0, agent_port: 0 },
        devices: { cert_ttl: '2h' },
      }),
      logger: createLogger('silent'),
      plugins: [caP, devices, agent],
    });
    agentUrl = `https://127.0.0.1:${agent.address()?.port ?? 0}`;
    admin = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
  });
  afterAll(async () => {
    await server?.close();
  });

  async function token(owner: string, extra: Record<string, unknown> = {}): Promise<string> {
    const res = await fetch(`${server.url}/v1/admin/devices/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` },
      body: JSON.stringify({ owner, ...extra }),
    });
    const body = (await res.json()) as { token: string };
    expect(res.status).toBe(201);
    return body.token;
  }

  it('enrolls: pinned bundle, key 0600, certificate for spiffe://<td>/device/<id>, device.json', async () => {
    const state = new DeviceState(join(tempDir(), 'dev'));
    const info = await enrollDevice(state, { server: agentUrl, token: await token('alice'), deviceId: 'laptop-alice' });
    expect(info).toEqual({
      server: agentUrl,
      device_id: 'laptop-alice',
      spiffe_id: `spiffe://${TD}/device/laptop-alice`,
      owner: 'alice',
      trust_domain: TD,
    });
    expect(await state.readInfo()).toEqual(info);
    const leaf = new X509Certificate(await state.readCertChain());
    expect(leaf.subjectAltName).toBe(`URI:spiffe://${TD}/device/laptop-alice`);
    expect(statSync(state.dir).mode & 0o777).toBe(0o700);
    for (const f of [state.keyPath, state.certPath, state.bundlePath, state.infoPath])
      expect(statSync(f).mode & 0o777).toBe(0o600);
    // A second enrollment into the same directory is refused before any network call.
    await expect(enrollDevice(state, { server: agentUrl, token: await token('alice') })).rejects.toThrow(
      /already holds an enrollment/,
    );
  });

  it("refuses a server whose CA does not match the token's pin, sending nothing", async () => {
    const state = new DeviceState(join(tempDir(), 'dev'));
    const [secret] = (await token('bob')).split('.');
    const wrongPin = randomBytes(32).toString('hex');
    await expect(
      enrollDevice(state, { server: agentUrl, token: `${secret}.${wrongPin}`, deviceId: 'laptop-bob' }),
    ).rejects.toMatchObject({
      code: 'ERR_DEVICE_SERVER_MISMATCH',
      message: expect.stringContaining("the server's CA does not match the token"),
    });
    expect(await state.enrolled()).toBe(false);
    // The token was not spent: the right pin still enrolls with it.
    const good = `${secret}.${(await token('x')).split('.')[1]}`;
    await enrollDevice(state, { server: agentUrl, token: good, deviceId: 'laptop-bob' });
  });

  it('a wrong token, a malformed one, or a token fixed to another id is refused', async () => {
    const pin = (await token('carol')).split('.')[1];
    const state = new DeviceState(join(tempDir(), 'dev'));
    await expect(
      enrollDevice(state, { server: agentUrl, token: `${randomBytes(16).toString('hex')}.${pin}`, deviceId: 'c1' }),
    ).rejects.toMatchObject({ code: 'ERR_DEVICE_SERVER_REFUSED', message: expect.stringMatching(/403 token_unknown/) });
    await expect(enrollDevice(state, { server: agentUrl, token: 'nope', deviceId: 'c1' })).rejects.toThrow(/malformed/);
    const fixed = await token('carol', { device_id: 'carol-laptop' });
    await expect(enrollDevice(state, { server: agentUrl, token: fixed, deviceId: 'other' })).rejects.toThrow(
      /token_other_device/,
    );
    await enrollDevice(state, { server: agentUrl, token: fixed, deviceId: 'carol-laptop' });
    // A used token cannot enroll again.
    const state2 = new DeviceState(join(tempDir(), 'dev'));
    await expect(enrollDevice(state2, { server: agentUrl, token: fixed, deviceId: 'carol-laptop' })).rejects.toThrow(
      /403 token_used|409/,
    );
  });

  it('a man in the middle serving the real bundle cannot pass: TLS to it fails against the pinned root, the token never reaches it', async () => {
    // A fake server with its own certificate relays the genuine bundle (public) so the pin matches.
    const dir = selfSigned('/CN=mitm', `subjectAltName=URI:spiffe://${TD}/nevertrust/server`);
    const realBundle = await new Promise<string>((resolve, reject) => {
      const req = httpsRequest(`${agentUrl}/device/v1/bundle`, { rejectUnauthorized: false }, (res) => {
        let t = '';
        res.on('data', (c: Buffer) => (t += c.toString()));
        res.on('end', () => resolve(t));
      });
      req.on('error', reject);
      req.end();
    });
    const seen: string[] = [];
    const mitm = createHttpsServer(
      { key: readFileSync(join(dir, 'k.pem')), cert: readFileSync(join(dir, 'c.pem')) },
      (req, res) => {
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', () => {
          seen.push(`${req.method} ${req.url} ${body}`);
          if (req.url === '/device/v1/bundle') res.end(realBundle);
          else res.writeHead(500).end('{}');
        });
      },
    );
    await new Promise<void>((r) => mitm.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (mitm.address() as AddressInfo).port;
      const t = await token('mallory-target');
      const state = new DeviceState(join(tempDir(), 'dev'));
      await expect(
        enrollDevice(state, { server: `https://127.0.0.1:${port}`, token: t, deviceId: 'victim' }),
      ).rejects.toMatchObject({
        code: 'ERR_DEVICE_SERVER_REFUSED',
        message: expect.stringMatching(/self.signed certificate/),
      });
      expect(seen).toEqual(['GET /device/v1/bundle ']);
      expect(await state.enrolled()).toBe(false);
    } finally {
      mitm.close();
    }
  });

  it('refuses a pinned certificate that is not a CA, and an oversized bundle', async () => {
    const dir = selfSigned('/CN=leaf', 'basicConstraints=critical,CA:FALSE');
    const leafPem = readFileSync(join(dir, 'c.pem'), 'utf8');
    const leafPin = createHash('sha256').update(new X509Certificate(leafPem).raw).digest('hex');
    let answer = leafPem;
    const fake = createHttpsServer({ key: readFileSync(join(dir, 'k.pem')), cert: leafPem }, (_req, res) =>
      res.end(answer),
    );
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', () => r()));
    try {
      const url = `https://127.0.0.1:${(fake.address() as AddressInfo).port}`;
      const state = new DeviceState(join(tempDir(), 'dev'));
      const secret = randomBytes(16).toString('hex');
      await expect(enrollDevice(state, { server: url, token: `${secret}.${leafPin}`, deviceId: 'x' })).rejects.toThrow(
        /does not match the token/,
      );
      answer = leafPem.repeat(1000);
      await expect(enrollDevice(state, { server: url, token: `${secret}.${leafPin}`, deviceId: 'x' })).rejects.toThrow(
        /larger than/,
      );
    } finally {
      fake.close();
    }
  });

  it('refuses an http server and an unreachable one with a clear message', async () => {
    const state = new DeviceState(join(tempDir(), 'dev'));
    const t = await token('dave');
    await expect(enrollDevice(state, { server: agentUrl.replace('https', 'http'), token: t })).rejects.toThrow(
      /https only/,
    );
    await expect(enrollDevice(state, { server: 'https://127.0.0.1:1', token: t })).rejects.toThrow(/cannot reach/);
  });

  it('renews over mTLS (new serial, same key) and sends a signed report the server keeps', async () => {
    const state = new DeviceState(join(tempDir(), 'dev'));
    await enrollDevice(state, { server: agentUrl, token: await token('erin'), deviceId: 'erin-laptop' });
    const before = new X509Certificate(await state.readCertChain());
    const ans = await renewDevice(state);
    const after = new X509Certificate(await state.readCertChain());
    expect(after.serialNumber).not.toBe(before.serialNumber);
    expect(after.publicKey.export({ format: 'der', type: 'spki' })).toEqual(
      before.publicKey.export({ format: 'der', type: 'spki' }),
    );
    expect(new Date(ans.renew_after).getTime()).toBeLessThan(await deviceCertNotAfter(state));

    const accepted = await sendDeviceReport(state, report('erin-laptop'));
    expect(accepted.device_id).toBe('erin-laptop');
    expect(accepted.posture).toMatchObject({ source: 'collector', managed: true, os_patched: true, compliant: true });
    const bad = await sendDeviceReport(state, report('erin-laptop', false));
    expect(bad.posture.compliant).toBe(false);
    // A report for another device is refused here, before signing.
    await expect(sendDeviceReport(state, report('someone-else'))).rejects.toThrow(/is for someone-else/);
  });

  it('a revoked device can neither renew nor report', async () => {
    const state = new DeviceState(join(tempDir(), 'dev'));
    await enrollDevice(state, { server: agentUrl, token: await token('frank'), deviceId: 'frank-laptop' });
    const res = await fetch(`${server.url}/v1/admin/devices/frank-laptop/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` },
      body: JSON.stringify({ reason: 'lost' }),
    });
    expect(res.status).toBe(200);
    await expect(renewDevice(state)).rejects.toMatchObject({ code: 'ERR_DEVICE_SERVER_REFUSED' });
    await expect(sendDeviceReport(state, report('frank-laptop'))).rejects.toMatchObject({
      code: 'ERR_DEVICE_SERVER_REFUSED',
    });
  });
});
