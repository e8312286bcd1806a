/**
 * Device administration on the API port, for authenticated admins (`adminRoute`):
 * `POST /v1/admin/devices/tokens` (a one-time enrollment token, shown once), `GET /v1/admin/devices[?owner=]`,
 * `GET /v1/admin/devices/<id>` (with its latest reports) and `POST /v1/admin/devices/<id>/revoke`.
 * Every call and refusal is a `device.*` event; the token's secret is never recorded.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  DEVICE_ID_PATTERN,
  type DeviceTokenWire,
  deviceRevokeRequestSchema,
  deviceTokenRequestSchema,
  deviceToWire,
} from '../../api/devices.js';
import { firstIssue } from '../../api/parse.js';
import type { SignalOf } from '../../api/signals.js';
import { parseDuration } from '../../util/duration.js';
import type { AdminPrincipal } from '../admin-auth.js';
import type { CaHandle } from '../plugins/ca.js';
import { HttpError, readJson, sendJson } from '../router.js';
import type { ServerContext } from '../server.js';
import { allowed, refuse } from './events.js';

/** Longest enrollment token lifetime an admin may ask for. */
export const DEVICE_TOKEN_TTL_MAX_S = 30 * 24 * 3600;
/** Reports shown by `GET /v1/admin/devices/<id>` unless `?limit=` says otherwise. */
export const DEVICE_SHOW_REPORTS = 20;
const PREFIX = '/v1/admin/devices/';

/**
 * The pin of a token: SHA-256 (hex) of the DER of the newest root of the bundle in force, which the
 * device compares with `GET /device/v1/bundle` before it trusts anything the server says.
 */
export function bundlePin(ca: CaHandle): string {
  const roots = ca.current().bundle().x509Authorities;
  const newest = roots[roots.length - 1];
  if (!newest) throw new Error('the trust bundle has no X.509 authority');
  return createHash('sha256').update(newest).digest('hex');
}

/** `POST /v1/admin/devices/tokens` `{owner, device_id?, ttl?}`. */
export async function createToken(
  ctx: ServerContext,
  ca: CaHandle,
  req: IncomingMessage,
  res: ServerResponse,
  who: AdminPrincipal,
): Promise<void> {
  const deny = (status: number, error: string, reason: string, device?: string) =>
    refuse(ctx.events, req, 'device.token', status, error, reason, { by: who.id, device });
  const parsed = deviceTokenRequestSchema.safeParse((await readJson(req, 16 * 1024)) ?? {});
  if (!parsed.success) {
    const { field, message } = firstIssue(parsed.error);
    throw deny(400, 'invalid_request', `${field}: ${message}`);
  }
  const { owner, device_id: deviceId, ttl: ttlIn } = parsed.data;
  let ttl: number;
  try {
    ttl = ttlIn === undefined ? ctx.config.devices.token_ttl : parseDuration(ttlIn);
  } catch (e) {
    throw deny(400, 'invalid_request', `ttl: ${(e as Error).message}`);
  }
  if (!(ttl > 0) || ttl > DEVICE_TOKEN_TTL_MAX_S)
    throw deny(400, 'invalid_request', `ttl: must be more than 0 and at most ${DEVICE_TOKEN_TTL_MAX_S} s (30d)`);
  if (deviceId !== undefined && (await ctx.store.devices.get(deviceId)))
    throw deny(
      409,
      'device_exists',
      `device ${deviceId} is already enrolled or was revoked; choose another id`,
      deviceId,
    );
  const secret = randomBytes(16).toString('hex');
  const expiresAt = Date.now() + Math.round(ttl * 1000);
  await ctx.store.devices.createToken({ secret, owner, deviceId: deviceId ?? null, createdBy: who.id, expiresAt });
  const wire: DeviceTokenWire = {
    token: `${secret}.${bundlePin(ca)}`,
    owner,
    device_id: deviceId ?? null,
    expires_at: new Date(expiresAt).toISOString(),
    ttl,
  };
  // The secret is in the answer only.
  allowed(
    ctx.events,
    req,
    'device.token',
    `enrollment token created for ${owner}`,
    { by: who.id, device: deviceId },
    {
      owner,
      device_id: deviceId ?? null,
      expires_at: wire.expires_at,
    },
  );
  sendJson(res, 201, wire);
}

/** `GET /v1/admin/devices[?owner=]`. */
export async function listDevices(ctx: ServerContext, res: ServerResponse, url: URL): Promise<void> {
  const owner = url.searchParams.get('owner') ?? undefined;
  const devices = await ctx.store.devices.list(owner === undefined ? {} : { owner });
  sendJson(res, 200, { devices: devices.map(deviceToWire) });
}

/** The device id of `/v1/admin/devices/<id>[/revoke]`, checked. */
function pathDevice(url: URL): { id: string; action: string | undefined } {
  const rest = url.pathname.slice(PREFIX.length).split('/');
  const id = rest[0] ?? '';
  if (!DEVICE_ID_PATTERN.test(id) || rest.length > 2)
    throw new HttpError(404, 'not_found', `no route for ${url.pathname.slice(0, 200)}`);
  return { id, action: rest[1] };
}

/** `GET /v1/admin/devices/<id>[?limit=N]`: the device and its latest reports, newest first. */
export async function showDevice(ctx: ServerContext, res: ServerResponse, url: URL): Promise<void> {
  const { id, action } = pathDevice(url);
  if (action !== undefined) throw new HttpError(404, 'not_found', `no route for GET ${url.pathname.slice(0, 200)}`);
  const device = await ctx.store.devices.get(id);
  if (!device) throw new HttpError(404, 'device_unknown', `no device ${id}`);
  const limitText = url.searchParams.get('limit');
  const limit = limitText === null ? DEVICE_SHOW_REPORTS : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100)
    throw new HttpError(400, 'invalid_request', 'limit: an integer from 1 to 100');
  const reports = await ctx.store.devices.history(id, limit);
  sendJson(res, 200, {
    device: deviceToWire(device),
    reports: reports.map((r) => ({ seq: r.seq, posture: r.posture })),
  });
}

/** `POST /v1/admin/devices/<id>/revoke` `{reason?}`: final; emits the `device.revoked` signal. */
export async function revokeDevice(
  ctx: ServerContext,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  who: AdminPrincipal,
): Promise<void> {
  const { id, action } = pathDevice(url);
  if (action !== 'revoke') throw new HttpError(404, 'not_found', `no route for POST ${url.pathname.slice(0, 200)}`);
  const deny = (status: number, error: string, reason: string) =>
    refuse(ctx.events, req, 'device.revoke', status, error, reason, { by: who.id, device: id });
  const parsed = deviceRevokeRequestSchema.safeParse((await readJson(req, 16 * 1024)) ?? {});
  if (!parsed.success) {
    const { field, message } = firstIssue(parsed.error);
    throw deny(400, 'invalid_request', `${field}: ${message}`);
  }
  const reason = parsed.data.reason ?? null;
  const now = Date.now();
  if (!(await ctx.store.devices.revoke(id, reason, now))) {
    const d = await ctx.store.devices.get(id);
    if (!d) throw deny(404, 'device_unknown', `no device ${id}`);
    throw deny(409, 'already_revoked', `device ${id} is already revoked`);
  }
  const device = await ctx.store.devices.get(id);
  if (!device) throw new Error(`device ${id} vanished after revocation`);
  const signal: SignalOf<'device.revoked'> = {
    kind: 'device.revoked',
    deviceId: id,
    reason: reason ?? 'revoked by an admin',
    source: 'admin',
    at: new Date(now).toISOString(),
    origin: `admin:${who.id}`,
  };
  allowed(ctx.events, req, 'device.revoke', signal.reason, { by: who.id, device: device.spiffeId }, { signal });
  sendJson(res, 200, deviceToWire(device));
}
