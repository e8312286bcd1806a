/**
 * The device's calls on the agent port (TLS with the server's SVID): `GET /device/v1/bundle` (the
 * trust bundle as PEM, no authentication: the device checks its token's pin against it),
 * `POST /device/v1/enroll` (one-time token + CSR, no client certificate), and over mTLS with the
 * device certificate `POST /device/v1/renew` and `POST /device/v1/posture`. The `/device/`
 * namespace is issued here only: registration and the CA routes refuse it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { compactVerify, errors as joseErrors } from 'jose';
import { deviceIdOf } from '../../access/device/key.js';
import {
  type DeviceCertificateWire,
  type DeviceRecord,
  deviceEnrollRequestSchema,
  deviceRenewRequestSchema,
  POSTURE_JWS_MAX,
  POSTURE_JWS_TYP,
  postureFromReport,
  postureReportSchema,
  postureSubmitSchema,
} from '../../api/devices.js';
import { firstIssue } from '../../api/parse.js';
import { csrRequestedUris, type IssuedX509Svid, verifyCsrAsync } from '../../ca/index.js';
import { isNevertrustError } from '../../errors.js';
import { spiffeIdFromSegments, parseTrustDomain, serialText } from '../../spiffe/index.js';
import { toPem } from '../../spiffe/pem.js';
import { StoreConflictError } from '../../store/index.js';
import { verifyPeerSvid } from '../peer-svid.js';
import type { RateLimiter } from '../rate-limiter.js';
import { HttpError, readJson, sendJson, sendText } from '../router.js';
import type { ServerContext } from '../server.js';
import type { CaHandle } from '../plugins/ca.js';
import { allowed, type DeviceEventKind, noteComplianceChange, refuse } from './events.js';

/** How far in the future a report's `collected_at` may be (clock skew), and how old. */
export const POSTURE_FUTURE_SKEW_MS = 60_000;
export const POSTURE_MAX_AGE_MS = 3600_000;

export interface DevicePort {
  ctx: ServerContext;
  ca: CaHandle;
  enrollLimiter: RateLimiter;
}

/** `GET /device/v1/bundle`: the trust domain's roots, PEM. */
export function bundle(p: DevicePort, _req: IncomingMessage, res: ServerResponse): void {
  sendText(res, 200, p.ca.current().bundle().toPem(), 'application/x-pem-file');
}

/**
 * Checks a CSR before anything is spent on it: its signature (proof of possession of the key) and
 * that it asks for exactly `spiffeId` and nothing else.
 */
async function checkCsr(
  p: DevicePort,
  req: IncomingMessage,
  kind: DeviceEventKind,
  csr: string,
  spiffeId: string,
  by: string | undefined,
): Promise<void> {
  try {
    await verifyCsrAsync(csr);
    const uris = csrRequestedUris(csr);
    if (uris.length !== 1 || uris[0] !== spiffeId)
      throw refuse(
        p.ctx.events,
        req,
        kind,
        400,
        'invalid_csr',
        `the CSR must ask for exactly the URI SAN ${spiffeId} (it asks for ${uris.length === 0 ? 'none' : uris.join(', ')})`,
        { by, device: spiffeId },
      );
  } catch (e) {
    if (e instanceof HttpError) throw e;
    if (isNevertrustError(e) && e.expose)
      throw refuse(p.ctx.events, req, kind, 400, 'invalid_csr', e.message, { by, device: spiffeId });
    throw e;
  }
}

/** Issues the device certificate and shapes the answer. */
async function issueFor(p: DevicePort, csr: string, spiffeId: string): Promise<IssuedX509Svid> {
  return p.ca
    .current()
    .signX509SvidFromCsrAsync({ csr, spiffeId, dnsNames: [], ttlSeconds: p.ctx.config.devices.cert_ttl });
}

function certificateAnswer(
  p: DevicePort,
  d: { id: string; owner: string },
  svid: IssuedX509Svid,
): DeviceCertificateWire {
  const now = Date.now();
  const end = svid.notAfter.getTime();
  return {
    device_id: d.id,
    spiffe_id: svid.spiffeId.toString(),
    owner: d.owner,
    cert_chain: svid.chain.map((c) => toPem(c, 'CERTIFICATE')).join(''),
    bundle: p.ca.current().bundle().toPem(),
    expires_at: svid.notAfter.toISOString(),
    renew_after: new Date(now + Math.max(0, end - now) / 2).toISOString(),
  };
}

/** `POST /device/v1/enroll` `{token, device_id, csr, name?}`. */
export async function enroll(p: DevicePort, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { store, events, config } = p.ctx;
  const ip = req.socket.remoteAddress ?? 'unknown';
  const deny = (status: number, error: string, reason: string, device?: string) =>
    refuse(events, req, 'device.enroll', status, error, reason, { device });
  if (!p.enrollLimiter.take(ip))
    throw deny(429, 'rate_limited', `too many enrollment attempts from ${ip}; wait a minute`);
  let body: unknown;
  try {
    body = await readJson(req, 64 * 1024);
  } catch (e) {
    if (isNevertrustError(e) && e.expose) throw deny(e.status, 'invalid_request', e.message);
    throw e;
  }
  const parsed = deviceEnrollRequestSchema.safeParse(body ?? {});
  if (!parsed.success) {
    const { field, message } = firstIssue(parsed.error);
    // Never echo the token: a field message names the field only.
    throw deny(
      400,
      'invalid_request',
      `${field}: ${field === 'token' ? 'expected the 32-hex-digit secret of the enrollment token' : message}`,
    );
  }
  const { token, device_id: deviceId, csr, name } = parsed.data;
  const spiffeId = spiffeIdFromSegments(parseTrustDomain(config.trust_domain), 'device', deviceId).toString();
  // Nothing is spent before the request is known to be good: the CSR, the token (checked, so that an
  // unknown token learns nothing about which ids exist), the id; then the token is used, once.
  await checkCsr(p, req, 'device.enroll', csr, spiffeId, undefined);
  const tokenRefusal = (problem: 'unknown' | 'used' | 'expired' | 'other_device') =>
    deny(
      403,
      `token_${problem}`,
      {
        unknown: 'unknown enrollment token',
        used: 'enrollment token already used',
        expired: 'enrollment token expired',
        other_device: `the enrollment token is for another device id, not ${deviceId}`,
      }[problem],
      spiffeId,
    );
  const problem = await store.devices.tokenProblem(token, deviceId);
  if (problem) throw tokenRefusal(problem);
  const existing = await store.devices.get(deviceId);
  if (existing)
    throw deny(
      409,
      'device_exists',
      existing.revokedAt === null
        ? `device ${deviceId} is already enrolled`
        : `device ${deviceId} was revoked; revocation is final: enroll with a new device id`,
      spiffeId,
    );
  const grant = await store.devices.consumeToken(token, deviceId);
  if (!grant) throw tokenRefusal((await store.devices.tokenProblem(token, deviceId)) ?? 'used');
  let svid: IssuedX509Svid;
  try {
    svid = await issueFor(p, csr, spiffeId);
  } catch (e) {
    if (isNevertrustError(e) && e.expose) throw deny(400, 'invalid_csr', e.message, spiffeId);
    throw e;
  }
  const now = Date.now();
  try {
    await store.devices.create({
      id: deviceId,
      owner: grant.owner,
      name: name ?? null,
      spiffeId,
      enrolledAt: now,
      certSerial: svid.serialHex,
      certNotAfter: svid.notAfter.getTime(),
    });
  } catch (e) {
    if (e instanceof StoreConflictError)
      throw deny(409, 'device_exists', `device ${deviceId} was enrolled concurrently`, spiffeId);
    throw e;
  }
  allowed(
    events,
    req,
    'device.enroll',
    `enrolled for ${grant.owner} with a one-time token`,
    { by: spiffeId, device: spiffeId },
    {
      owner: grant.owner,
      serial: svid.serialHex,
      not_after: svid.notAfter.toISOString(),
    },
  );
  sendJson(res, 200, certificateAnswer(p, { id: deviceId, owner: grant.owner }, svid));
}

/**
 * The device behind an mTLS request: the client certificate verifies against the bundle in force,
 * names a device of this trust domain, which is enrolled, not revoked, and whose current serial it is.
 */
async function authenticateDevice(
  p: DevicePort,
  req: IncomingMessage,
  kind: DeviceEventKind,
): Promise<{ device: DeviceRecord; leaf: X509Certificate }> {
  const { events, store } = p.ctx;
  const socket = req.socket as TLSSocket;
  let spiffeId: string;
  let id: string;
  try {
    const verified = verifyPeerSvid(socket, p.ca.current().bundle());
    spiffeId = verified.spiffeId.toString();
    const named = deviceIdOf(verified.spiffeId);
    if (named === undefined) throw new HttpError(403, 'not_a_device', `${spiffeId} is not a device identity`);
    id = named;
  } catch (e) {
    const reason = (e as Error).message;
    throw refuse(
      events,
      req,
      kind,
      e instanceof HttpError ? e.status : 401,
      e instanceof HttpError ? e.error : 'device_certificate_invalid',
      reason,
    );
  }
  const device = await store.devices.get(id);
  const who = { by: spiffeId, device: spiffeId };
  if (!device) throw refuse(events, req, kind, 403, 'device_unknown', `device ${id} is not enrolled`, who);
  if (device.revokedAt !== null) throw refuse(events, req, kind, 403, 'device_revoked', `device ${id} is revoked`, who);
  const leaf = socket.getPeerX509Certificate();
  if (!leaf || serialText(leaf.serialNumber) !== serialText(device.certSerial))
    throw refuse(
      events,
      req,
      kind,
      403,
      'stale_device_certificate',
      `device ${id} presented a certificate that is no longer its current one`,
      who,
    );
  return { device, leaf };
}

/** `POST /device/v1/renew` `{csr}` (mTLS, current device certificate): the next certificate. */
export async function renew(p: DevicePort, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { store, events } = p.ctx;
  const { device } = await authenticateDevice(p, req, 'device.renew');
  const who = { by: device.spiffeId, device: device.spiffeId };
  let body: unknown;
  try {
    body = await readJson(req, 64 * 1024);
  } catch (e) {
    if (isNevertrustError(e) && e.expose)
      throw refuse(events, req, 'device.renew', e.status, 'invalid_request', e.message, who);
    throw e;
  }
  const parsed = deviceRenewRequestSchema.safeParse(body ?? {});
  if (!parsed.success) throw refuse(events, req, 'device.renew', 400, 'invalid_request', 'csr (PEM) is required', who);
  await checkCsr(p, req, 'device.renew', parsed.data.csr, device.spiffeId, device.spiffeId);
  const svid = await issueFor(p, parsed.data.csr, device.spiffeId);
  if (
    !(await store.devices.renewCertificate(device.id, device.certSerial, {
      serial: svid.serialHex,
      notAfter: svid.notAfter.getTime(),
    }))
  )
    throw refuse(
      events,
      req,
      'device.renew',
      409,
      'conflict',
      `device ${device.id} was renewed or revoked concurrently`,
      who,
    );
  allowed(events, req, 'device.renew', 'device certificate renewed', who, {
    previous_serial: device.certSerial,
    serial: svid.serialHex,
    not_after: svid.notAfter.toISOString(),
  });
  sendJson(res, 200, certificateAnswer(p, device, svid));
}

/** `POST /device/v1/posture` `{jws}` (mTLS): a posture report signed with the device key. */
export async function posture(p: DevicePort, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { store, events } = p.ctx;
  const { device, leaf } = await authenticateDevice(p, req, 'device.report');
  const who = { by: device.spiffeId, device: device.spiffeId };
  const deny = (status: number, error: string, reason: string) =>
    refuse(events, req, 'device.report', status, error, reason, who);
  let body: unknown;
  try {
    // The JWS plus its JSON wrapping.
    body = await readJson(req, POSTURE_JWS_MAX + 1024);
  } catch (e) {
    if (isNevertrustError(e) && e.expose)
      throw deny(e.status, e.status === 413 ? 'too_large' : 'invalid_request', e.message);
    throw e;
  }
  const parsed = postureSubmitSchema.safeParse(body ?? {});
  if (!parsed.success) {
    const { field, message } = firstIssue(parsed.error);
    throw deny(
      400,
      'invalid_request',
      `${field}: ${message} (expected {jws}: a compact JWS of at most ${POSTURE_JWS_MAX} bytes)`,
    );
  }
  let payloadText: string;
  try {
    // Only ES256, only with the key of the certificate this device presented.
    const v = await compactVerify(parsed.data.jws, leaf.publicKey, { algorithms: ['ES256'] });
    if (v.protectedHeader.typ !== POSTURE_JWS_TYP)
      throw deny(400, 'invalid_report', `the JWS typ must be ${POSTURE_JWS_TYP}`);
    payloadText = new TextDecoder('utf-8', { fatal: true }).decode(v.payload);
  } catch (e) {
    if (e instanceof HttpError) throw e;
    const why =
      e instanceof joseErrors.JOSEAlgNotAllowed
        ? 'the report must be signed with ES256'
        : e instanceof joseErrors.JWSSignatureVerificationFailed
          ? 'the report signature does not verify with the device certificate key'
          : `the report is not a valid compact JWS (${(e as Error).message})`;
    throw deny(400, 'invalid_signature', why);
  }
  let report: ReturnType<typeof postureReportSchema.parse>;
  try {
    const r = postureReportSchema.safeParse(JSON.parse(payloadText));
    if (!r.success) {
      const { field, message } = firstIssue(r.error);
      throw deny(400, 'invalid_report', `${field}: ${message}`);
    }
    report = r.data;
  } catch (e) {
    if (e instanceof HttpError) throw e;
    throw deny(400, 'invalid_report', 'the report payload is not JSON');
  }
  if (report.device_id !== device.id)
    throw deny(
      403,
      'device_mismatch',
      `the report is for device ${report.device_id}, the certificate is ${device.id}'s`,
    );
  const now = Date.now();
  const collected = Date.parse(report.collected_at);
  if (collected > now + POSTURE_FUTURE_SKEW_MS)
    throw deny(400, 'report_in_future', `collected_at ${report.collected_at} is in the future`);
  if (collected < now - POSTURE_MAX_AGE_MS)
    throw deny(400, 'report_stale', `collected_at ${report.collected_at} is more than 1 h old`);
  const kept = postureFromReport(report, now);
  const r = await store.devices.addReport(device.id, { posture: kept, report: payloadText }, now);
  if (!r) throw deny(403, 'device_revoked', `device ${device.id} was revoked`);
  allowed(events, req, 'device.report', kept.compliant ? 'compliant' : 'not compliant', who, {
    compliant: kept.compliant,
    unknown: kept.unknown,
    collected_at: kept.collected_at,
  });
  noteComplianceChange(events, device.id, device.spiffeId, r.previous, kept);
  sendJson(res, 200, { device_id: device.id, posture: kept });
}
