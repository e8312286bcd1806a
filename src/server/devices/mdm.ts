/**
 * `POST /v1/devices/mdm` (API port): an MDM or EDR's view of an enrolled device, for platforms the
 * collector does not cover. Authenticated by `X-Nevertrust-Signature: v1=<hex HMAC-SHA256(secret,
 * "<timestamp>.<raw body>")>` with `X-Nevertrust-Timestamp` (unix seconds) within 5 minutes; an exact
 * replay within that window is refused too (per server). Each request is audited (`device.mdm`).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { mdmPostureSchema, postureFromMdm } from '../../api/devices.js';
import { firstIssue } from '../../api/parse.js';
import { NevertrustError, isNevertrustError } from '../../errors.js';
import { readBody, sendJson } from '../router.js';
import type { ServerContext } from '../server.js';
import { allowed, noteComplianceChange, refuse } from './events.js';
import { POSTURE_FUTURE_SKEW_MS } from './device-port.js';

export const MDM_BODY_MAX = 64 * 1024;
export const MDM_WINDOW_S = 300;
/** Shortest HMAC secret accepted, in bytes. */
export const MDM_SECRET_MIN = 32;

export class MdmConfigError extends NevertrustError<'ERR_MDM_CONFIG'> {
  override readonly name = 'MdmConfigError';
  readonly code = 'ERR_MDM_CONFIG';
  constructor(message: string) {
    super(message, { status: 500 });
  }
}

/** Reads the webhook's secret file: mode 0600 (no group or other access), at least 32 bytes. */
export function readMdmSecret(file: string): Buffer {
  let mode: number;
  try {
    mode = statSync(file).mode;
  } catch (e) {
    throw new MdmConfigError(`devices.mdm.secret_file ${file}: ${(e as Error).message}`);
  }
  if ((mode & 0o077) !== 0)
    throw new MdmConfigError(
      `devices.mdm.secret_file ${file}: mode ${(mode & 0o777).toString(8)} lets group or others read it; run chmod 600 ${file}`,
    );
  const secret = Buffer.from(readFileSync(file, 'utf8').trim(), 'utf8');
  if (secret.length < MDM_SECRET_MIN)
    throw new MdmConfigError(`devices.mdm.secret_file ${file}: the secret must be at least ${MDM_SECRET_MIN} bytes`);
  return secret;
}

/** The signature header's value for a body: what an MDM sends (and what tests sign with). */
export function mdmSignature(secret: Buffer | string, timestamp: string, body: Buffer | string): string {
  return `v1=${createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex')}`;
}

/** The webhook's handler for `secret`. */
export function mdmHandler(ctx: ServerContext, secret: Buffer) {
  // Signatures seen within the window, with when they stop mattering: an exact replay is refused.
  const seen = new Map<string, number>();
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const deny = (status: number, error: string, reason: string, device?: string) =>
      refuse(ctx.events, req, 'device.mdm', status, error, reason, { by: 'mdm', device });
    let raw: Buffer;
    try {
      raw = await readBody(req, MDM_BODY_MAX);
    } catch (e) {
      if (isNevertrustError(e) && e.expose) throw deny(e.status, 'too_large', e.message);
      throw e;
    }
    const ts = req.headers['x-nevertrust-timestamp'];
    const sig = req.headers['x-nevertrust-signature'];
    if (typeof ts !== 'string' || !/^\d{1,12}$/.test(ts))
      throw deny(401, 'unauthenticated', 'X-Nevertrust-Timestamp (unix seconds) is required');
    if (typeof sig !== 'string' || !/^v1=[0-9a-f]{64}$/.test(sig))
      throw deny(401, 'unauthenticated', 'X-Nevertrust-Signature: v1=<hex HMAC-SHA256> is required');
    const expected = Buffer.from(mdmSignature(secret, ts, raw));
    if (!timingSafeEqual(expected, Buffer.from(sig)))
      throw deny(401, 'bad_signature', 'the HMAC signature does not match');
    const nowMs = Date.now();
    if (Math.abs(nowMs / 1000 - Number(ts)) > MDM_WINDOW_S)
      throw deny(401, 'stale_timestamp', `the timestamp is more than ${MDM_WINDOW_S} s from the server's clock`);
    for (const [k, until] of seen) if (until < nowMs) seen.delete(k);
    if (seen.has(sig)) throw deny(409, 'replayed', 'this signed request was already received');
    seen.set(sig, (Number(ts) + MDM_WINDOW_S) * 1000);
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      throw deny(400, 'malformed_json', 'the body is not JSON');
    }
    const parsed = mdmPostureSchema.safeParse(body);
    if (!parsed.success) {
      const { field, message } = firstIssue(parsed.error);
      throw deny(400, 'invalid_request', `${field}: ${message}`);
    }
    const m = parsed.data;
    if (Date.parse(m.collected_at) > nowMs + POSTURE_FUTURE_SKEW_MS)
      throw deny(400, 'report_in_future', `collected_at ${m.collected_at} is in the future`, m.device_id);
    const device = await ctx.store.devices.get(m.device_id);
    if (!device) throw deny(404, 'device_unknown', `device ${m.device_id} is not enrolled`, m.device_id);
    if (device.revokedAt !== null)
      throw deny(403, 'device_revoked', `device ${m.device_id} is revoked`, device.spiffeId);
    const kept = postureFromMdm(m, nowMs);
    const r = await ctx.store.devices.addReport(device.id, { posture: kept, report: raw.toString('utf8') }, nowMs);
    if (!r) throw deny(403, 'device_revoked', `device ${m.device_id} was revoked`, device.spiffeId);
    allowed(
      ctx.events,
      req,
      'device.mdm',
      `${m.vendor}: ${kept.compliant ? 'compliant' : 'not compliant'}`,
      {
        by: 'mdm',
        device: device.spiffeId,
      },
      { vendor: m.vendor, compliant: kept.compliant, unknown: kept.unknown },
    );
    noteComplianceChange(ctx.events, device.id, device.spiffeId, r.previous, kept);
    sendJson(res, 200, { device_id: device.id, posture: kept });
  };
}
