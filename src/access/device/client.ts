/**
 * The device's calls to the server's agent port (issue #22): enroll with a one-time token, renew its
 * certificate and send signed posture reports over mTLS. The first contact trusts nothing: the
 * bundle is fetched unverified and only the root whose SHA-256 the token pins is trusted from then
 * on; every later call verifies the server's SVID against the stored bundle and its SPIFFE ID
 * (`spiffe://<td>/nevertrust/server`), never a host name. Answers are parsed by their contracts.
 */
import { createHash, createPublicKey, X509Certificate } from 'node:crypto';
import { hostname } from 'node:os';
import { Agent, request } from 'undici';
import type { z } from 'zod';
import { ServerCallError, ServerClient } from '../../api/server-client.js';
import {
  type DeviceCertificateWire,
  deviceCertificateSchema,
  deviceTokenSecret,
  type PostureAccepted,
  type PostureReport,
  postureAcceptedSchema,
  postureSubmitSchema,
} from '../../api/index.js';
import { csrToPem } from '../../ca/index.js';
import { certificatesFromPem, parseSpiffeId, parseTrustDomain, serverSpiffeId, toPem } from '../../spiffe/index.js';
import { DeviceError } from './errors.js';
import { createDeviceCsr, type DeviceKey, deviceSpiffeId } from './key.js';
import { collectPosture } from './posture/index.js';
import { signPostureReport } from './report-jws.js';
import type { DeviceInfo, DeviceState } from './state.js';

/** Largest bundle read on first contact (before anything is trusted). */
const MAX_BUNDLE_BYTES = 256 * 1024;

/** An enrollment token split: the one-time secret and the pinned root's SHA-256 (hex). */
export interface EnrollToken {
  secret: string;
  pin: string;
}

/** `<32 hex>.<64 hex>` → its parts; anything else is refused before any network call. */
export function parseEnrollToken(token: string): EnrollToken {
  const m = /^([0-9a-f]{32})\.([0-9a-f]{64})$/.exec(token.trim());
  if (!m || !deviceTokenSecret.safeParse(m[1]).success)
    throw new DeviceError(
      'ERR_DEVICE_SERVER_REFUSED',
      'the enrollment token is malformed (expected <32 hex>.<64 hex>, as printed by `nevertrust device token create`)',
    );
  return { secret: m[1] as string, pin: m[2] as string };
}

/** This machine's host name as a device id: lower-cased, other characters → `-`, at most 64. */
export function defaultDeviceId(host = hostname()): string {
  const id = host
    .toLowerCase()
    .replace(/[^a-z0-9._-]/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 64);
  return id || 'device';
}

/** The server's base URL: https only, no path. */
function serverBase(server: string): string {
  let u: URL;
  try {
    u = new URL(server);
  } catch {
    throw new DeviceError(
      'ERR_DEVICE_SERVER_REFUSED',
      `--server ${JSON.stringify(server)}: not a URL (https://host:8081)`,
    );
  }
  if (u.protocol !== 'https:')
    throw new DeviceError('ERR_DEVICE_SERVER_REFUSED', `--server ${server}: the agent port speaks https only`);
  return u.origin;
}

/**
 * First contact: the server's bundle, read WITHOUT verifying TLS, then checked against the token's
 * pin. Returns only the pinned root: the other certificates of an unverified answer prove nothing.
 */
export async function fetchPinnedRoot(server: string, pin: string): Promise<X509Certificate> {
  const base = serverBase(server);
  const dispatcher = new Agent({ connect: { rejectUnauthorized: false } });
  let text: string;
  try {
    const res = await request(`${base}/device/v1/bundle`, {
      dispatcher,
      headersTimeout: 15_000,
      bodyTimeout: 15_000,
    });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of res.body as AsyncIterable<Buffer>) {
      size += c.length;
      if (size > MAX_BUNDLE_BYTES) {
        res.body.destroy();
        throw new DeviceError(
          'ERR_DEVICE_SERVER_MISMATCH',
          `${base}: the bundle is larger than ${MAX_BUNDLE_BYTES} bytes`,
        );
      }
      chunks.push(c);
    }
    if (res.statusCode !== 200)
      throw new DeviceError('ERR_DEVICE_SERVER_REFUSED', `${base}/device/v1/bundle answered ${res.statusCode}`);
    text = Buffer.concat(chunks).toString('utf8');
  } catch (e) {
    if (e instanceof DeviceError) throw e;
    throw new DeviceError(
      'ERR_DEVICE_SERVER_REFUSED',
      `cannot reach ${base} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      { cause: e },
    );
  } finally {
    await dispatcher.close();
  }
  for (const der of certificatesFromPem(text)) {
    if (createHash('sha256').update(der).digest('hex') !== pin) continue;
    const root = new X509Certificate(der);
    if (!root.ca) break;
    return root;
  }
  throw new DeviceError(
    'ERR_DEVICE_SERVER_MISMATCH',
    `the server's CA does not match the token: no root of ${base}/device/v1/bundle has the token's SHA-256 ${pin.slice(0, 16)}…`,
  );
}

/** The trust domain a root names (its `spiffe://<td>` URI SAN, X509-SVID §3.2). */
function rootTrustDomain(root: X509Certificate): string {
  const uris = (root.subjectAltName ?? '')
    .split(', ')
    .filter((s) => s.startsWith('URI:spiffe://'))
    .map((s) => s.slice(4));
  const td = uris.length === 1 ? uris[0]?.slice('spiffe://'.length) : undefined;
  if (!td || td.includes('/'))
    throw new DeviceError(
      'ERR_DEVICE_SERVER_MISMATCH',
      'the pinned root names no trust domain (expected one URI SAN spiffe://<trust domain>)',
    );
  return parseTrustDomain(td).name;
}

/**
 * Checks a certificate answer before it is stored: it is for this device and this key, its
 * identity is the device's SPIFFE ID, and it chains to the bundle it came with.
 */
function checkCertificate(ans: DeviceCertificateWire, key: DeviceKey, spiffeId: string): void {
  const bad = (why: string) => new DeviceError('ERR_DEVICE_SERVER_MISMATCH', `the server's certificate answer: ${why}`);
  if (ans.spiffe_id !== spiffeId) throw bad(`spiffe_id ${ans.spiffe_id}, expected ${spiffeId}`);
  const chain = certificatesFromPem(ans.cert_chain).map((d) => new X509Certificate(d));
  const leaf = chain[0];
  if (!leaf) throw bad('cert_chain holds no certificate');
  if (leaf.subjectAltName !== `URI:${spiffeId}`) throw bad(`the certificate names ${leaf.subjectAltName ?? 'nothing'}`);
  const ours = createPublicKey(key.publicKeyPem()).export({ format: 'der', type: 'spki' });
  if (!leaf.publicKey.export({ format: 'der', type: 'spki' }).equals(ours))
    throw bad('the certificate is not for this device key');
  const roots = certificatesFromPem(ans.bundle).map((d) => new X509Certificate(d));
  let cur = leaf;
  for (const next of chain.slice(1)) {
    if (!cur.verify(next.publicKey)) throw bad('cert_chain does not chain');
    cur = next;
  }
  if (!roots.some((r) => cur.checkIssued(r) && cur.verify(r.publicKey)))
    throw bad('the certificate does not chain to the bundle');
}

/** A client of the agent port that trusts `caPem` and accepts only the server's SPIFFE ID. */
function serverClient(
  info: Pick<DeviceInfo, 'server' | 'trust_domain'>,
  caPem: string,
  tls?: { cert: string; key: string },
): ServerClient {
  return new ServerClient({
    url: serverBase(info.server),
    caPem,
    serverId: serverSpiffeId(info.trust_domain),
    ...(tls && { cert: tls.cert, key: tls.key }),
  });
}

/** A server refusal or an unreachable server, as a DeviceError that says which call. */
async function call<S extends z.ZodType>(
  client: ServerClient,
  path: string,
  body: unknown,
  schema: S,
): Promise<z.output<S>> {
  try {
    return await client.call('POST', path, body, schema);
  } catch (e) {
    if (e instanceof ServerCallError)
      throw new DeviceError('ERR_DEVICE_SERVER_REFUSED', `${path}: refused (${e.status} ${e.error}): ${e.message}`, {
        cause: e,
      });
    if (e instanceof DeviceError || (e as { code?: string }).code === 'ERR_API_MALFORMED') throw e;
    const cause = (e as { cause?: Error }).cause;
    throw new DeviceError('ERR_DEVICE_SERVER_REFUSED', `${path}: ${cause?.message ?? (e as Error).message}`, {
      cause: e,
    });
  } finally {
    await client.close();
  }
}

export interface EnrollOptions {
  /** The server's agent port, `https://host:8081`. */
  server: string;
  /** `<secret>.<pin>` from `nevertrust device token create`. */
  token: string;
  /** The device id to ask for (default: this host name, see {@link defaultDeviceId}). */
  deviceId?: string;
  /** A name for people (default: the host name). */
  name?: string;
}

/**
 * Enrolls this device into `state`'s directory: pinned first contact, a new key, a CSR, and the
 * certificate, chain and bundle stored. Refuses a directory that already holds an enrollment.
 *
 * @example
 * ```ts
 * const info = await enrollDevice(new DeviceState(dir), { server: 'https://ca.example:8081', token });
 * ```
 */
export async function enrollDevice(state: DeviceState, opts: EnrollOptions): Promise<DeviceInfo> {
  const token = parseEnrollToken(opts.token);
  if (await state.enrolled())
    throw new DeviceError(
      'ERR_DEVICE_STATE_INVALID',
      `${state.dir} already holds an enrollment (${state.infoPath}); use another --dir for another one`,
    );
  const base = serverBase(opts.server);
  const root = await fetchPinnedRoot(base, token.pin);
  const td = rootTrustDomain(root);
  const deviceId = opts.deviceId ?? defaultDeviceId();
  const spiffeId = deviceSpiffeId(parseTrustDomain(td), deviceId).toString();
  await state.ensureDir();
  // A key left by an enrollment that failed later is reused: it never left this directory.
  const key = await state.loadKey().catch(async (e: unknown) => {
    if (e instanceof DeviceError && e.code === 'ERR_DEVICE_KEY_MISSING') return state.createKey();
    throw e;
  });
  const csr = csrToPem(await createDeviceCsr(key, parseSpiffeId(spiffeId)));
  const info = { server: base, trust_domain: td };
  const ans = await call(
    serverClient(info, toPem(Buffer.from(root.raw), 'CERTIFICATE')),
    '/device/v1/enroll',
    { token: token.secret, device_id: deviceId, csr, name: opts.name ?? hostname().slice(0, 256) },
    deviceCertificateSchema,
  );
  checkCertificate(ans, key, deviceSpiffeId(parseTrustDomain(td), ans.device_id).toString());
  if (ans.device_id !== deviceId && opts.deviceId !== undefined)
    throw new DeviceError('ERR_DEVICE_SERVER_MISMATCH', `the server enrolled ${ans.device_id}, not ${deviceId}`);
  const stored: DeviceInfo = {
    server: base,
    device_id: ans.device_id,
    spiffe_id: ans.spiffe_id,
    owner: ans.owner,
    trust_domain: td,
  };
  await state.save({ certChain: ans.cert_chain, bundle: ans.bundle, info: stored });
  return stored;
}

/** The enrolled device's identity and TLS credentials, read from its state directory. */
async function loadEnrolled(state: DeviceState) {
  const info = await state.readInfo();
  const key = await state.loadKey(); // checks the key file's mode and owner first
  const [certChain, bundle, keyPem] = await Promise.all([
    state.readCertChain(),
    state.readBundle(),
    state.readKeyPem(),
  ]);
  return { info, key, certChain, bundle, tls: { cert: certChain, key: keyPem } };
}

/**
 * Renews the device certificate over mTLS with the current one (same key, new CSR) and stores the
 * answer. Returns it (its `renew_after` tells the daemon when next).
 */
export async function renewDevice(state: DeviceState): Promise<DeviceCertificateWire> {
  const d = await loadEnrolled(state);
  const csr = csrToPem(await createDeviceCsr(d.key, parseSpiffeId(d.info.spiffe_id)));
  const ans = await call(serverClient(d.info, d.bundle, d.tls), '/device/v1/renew', { csr }, deviceCertificateSchema);
  if (ans.device_id !== d.info.device_id)
    throw new DeviceError('ERR_DEVICE_SERVER_MISMATCH', `the server renewed ${ans.device_id}, not ${d.info.device_id}`);
  checkCertificate(ans, d.key, d.info.spiffe_id);
  await state.save({ certChain: ans.cert_chain, bundle: ans.bundle });
  return ans;
}

/** This device's posture now (the collector, with the device's id). */
export async function collectDeviceReport(
  state: DeviceState,
  opts: { edrProcessNames?: readonly string[] } = {},
): Promise<PostureReport> {
  const info = await state.readInfo();
  return collectPosture({ deviceId: info.device_id, edrProcessNames: opts.edrProcessNames });
}

/** Signs `report` with the device key and posts it over mTLS; returns the posture the server kept. */
export async function sendDeviceReport(state: DeviceState, report: PostureReport): Promise<PostureAccepted> {
  const d = await loadEnrolled(state);
  if (report.device_id !== d.info.device_id)
    throw new DeviceError(
      'ERR_DEVICE_ID_INVALID',
      `the report is for ${report.device_id}, this device is ${d.info.device_id}`,
    );
  const body = postureSubmitSchema.parse({ jws: await signPostureReport(report, d.key) });
  return call(serverClient(d.info, d.bundle, d.tls), '/device/v1/posture', body, postureAcceptedSchema);
}

/** notAfter of the device certificate in `state`, ms (for the daemon and `device show`). */
export async function deviceCertNotAfter(state: DeviceState): Promise<number> {
  return new Date(new X509Certificate(await state.readCertChain()).validTo).getTime();
}
