/**
 * Devices at the access proxy: the client certificate of the TLS connection as a device (none, an
 * invalid certificate with why, or a verified device ID with its serial and expiry), the device's
 * record (a lookup cached for at most a second, so a revocation takes effect within one), the
 * refusal of an unknown or revoked device, and what policy sees of it (`source.device`).
 */
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { DeviceRecord } from '../../api/devices.js';
import type { AccessRequest } from '../../policy/request.js';
import { peerChain } from '../../pep/mtls/index.js';
import { type BundleSource, serialText, verifyX509Svid, X509SvidError } from '../../spiffe/index.js';
import { deviceIdOf } from '../device/key.js';

/** Where the proxy reads devices (`store.devices`, wrapped by {@link cachedDeviceLookup}). */
export interface DeviceLookup {
  get(id: string): Promise<DeviceRecord | undefined>;
}

/** The certificate a connection presented, as a device. */
export type PeerDevice =
  | { kind: 'none' }
  | { kind: 'invalid'; reason: string }
  /** `serial`: lower-case hex without leading zeros; `notAfter`: ms since the epoch. */
  | { kind: 'device'; id: string; serial: string; notAfter: number };

// A connection's certificate does not change: verified once per TLS connection (keep-alive),
// its expiry checked again on every request.
const verified = new WeakMap<TLSSocket, PeerDevice>();

/**
 * The device of a TLS connection: its certificate verified as an X.509-SVID against `bundles`, in
 * `trustDomain`, with a device ID (`/device/<id>`), within its validity.
 *
 * @example
 * ```ts
 * const d = peerDevice(req.socket as TLSSocket, source, 'example.org');
 * if (d.kind === 'invalid') refuse(401, 'device_certificate_invalid', d.reason);
 * ```
 */
export function peerDevice(
  socket: TLSSocket,
  bundles: BundleSource,
  trustDomain: string,
  now = Date.now(),
): PeerDevice {
  let d = verified.get(socket);
  if (!d) {
    d = verifyDevice(peerChain(socket), bundles, trustDomain);
    verified.set(socket, d);
  }
  if (d.kind === 'device' && now > d.notAfter) {
    return { kind: 'invalid', reason: `the device certificate expired at ${new Date(d.notAfter).toISOString()}` };
  }
  return d;
}

/** {@link peerDevice} for a chain (leaf first, DER). */
export function verifyDevice(
  chain: Buffer[],
  bundles: BundleSource,
  trustDomain: string,
  now = new Date(),
): PeerDevice {
  if (chain.length === 0) return { kind: 'none' };
  let r: ReturnType<typeof verifyX509Svid>;
  try {
    r = verifyX509Svid(chain, bundles, { now });
  } catch (e) {
    const why = e instanceof X509SvidError ? `${e.code}: ${e.message}` : 'the certificate could not be parsed';
    return { kind: 'invalid', reason: `the device certificate does not verify (${why})` };
  }
  const id = r.spiffeId;
  if (id.trustDomain.name !== trustDomain) {
    return { kind: 'invalid', reason: `the certificate is of trust domain ${id.trustDomain.name}, not ${trustDomain}` };
  }
  const deviceId = deviceIdOf(id);
  if (deviceId === undefined) {
    return { kind: 'invalid', reason: `${id.toString()} is not a device ID (spiffe://${trustDomain}/device/<id>)` };
  }
  const leaf = new X509Certificate(chain[0] as Buffer);
  return { kind: 'device', id: deviceId, serial: serialText(leaf.serialNumber), notAfter: r.expiresAt.getTime() };
}

/**
 * A lookup that remembers each answer (found or not) for `ttlMs` (at most 1000: a revocation must
 * take effect within a second) and shares one read among concurrent requests for the same id.
 *
 * @example
 * ```ts
 * const devices = cachedDeviceLookup({ get: (id) => store.devices.get(id) });
 * ```
 */
export function cachedDeviceLookup(inner: DeviceLookup, ttlMs = 1000, max = 10_000): DeviceLookup {
  const ttl = Math.min(Math.max(ttlMs, 0), 1000);
  const cache = new Map<string, { at: number; p: Promise<DeviceRecord | undefined> }>();
  return {
    get(id) {
      const now = performance.now();
      const hit = cache.get(id);
      if (hit && now - hit.at < ttl) return hit.p;
      const p = inner.get(id);
      cache.delete(id);
      cache.set(id, { at: now, p });
      // A failed read is not remembered: the next request asks again (this one fails closed).
      p.catch(() => {
        if (cache.get(id)?.p === p) cache.delete(id);
      });
      if (cache.size > max) cache.delete(cache.keys().next().value as string);
      return p;
    },
  };
}

/** The device of a request after the lookup. */
export type RequestDevice =
  | { kind: 'none' }
  | { kind: 'device'; record: DeviceRecord }
  | { kind: 'refused'; status: 401 | 403; error: string; reason: string; deviceId?: string };

/**
 * The device of a connection with its record: a certificate that does not verify is refused 401
 * `device_certificate_invalid`; a device not enrolled, revoked, or presenting a certificate that is
 * not its current one 403 `device_unknown` / `device_revoked`. A lookup error throws (the caller
 * fails closed).
 */
export async function requestDevice(peer: PeerDevice, lookup: DeviceLookup): Promise<RequestDevice> {
  if (peer.kind === 'none') return peer;
  if (peer.kind === 'invalid') {
    return { kind: 'refused', status: 401, error: 'device_certificate_invalid', reason: peer.reason };
  }
  const record = await lookup.get(peer.id);
  const refused = (error: string, reason: string): RequestDevice => ({
    kind: 'refused',
    status: 403,
    error,
    reason,
    deviceId: peer.id,
  });
  if (!record) return refused('device_unknown', `device ${peer.id} is not enrolled`);
  if (record.revokedAt !== null) {
    const why = record.revokedReason ? ` (${record.revokedReason})` : '';
    return refused('device_revoked', `device ${peer.id} was revoked${why}`);
  }
  if (serialText(record.certSerial) !== peer.serial) {
    return refused('device_revoked', `the certificate of device ${peer.id} was replaced by a newer one`);
  }
  return { kind: 'device', record };
}

export type DeviceSource = NonNullable<NonNullable<AccessRequest['source']>['device']>;

/** Why policy sees no device when none was presented. */
export const NO_DEVICE_REASON = 'no device certificate presented';

/**
 * What policy sees of a device (`source.device`): its posture when collected within `maxAgeS`,
 * else only its id, owner match, age and why the posture facts are unknown (they fail closed).
 */
export function deviceSource(
  record: DeviceRecord | undefined,
  user: string | undefined,
  maxAgeS: number,
  now = Date.now(),
): DeviceSource {
  if (!record) return { unknown_reason: NO_DEVICE_REASON };
  const base = { id: record.id, owner_is_user: user !== undefined && record.owner === user };
  const p = record.posture;
  if (!p) return { ...base, unknown_reason: `device ${record.id} has not reported its posture` };
  const collected = Date.parse(p.collected_at);
  if (!Number.isFinite(collected)) return { ...base, unknown_reason: `device ${record.id} has no posture time` };
  // A report from a clock ahead of ours counts as just collected, never as negative age.
  const age = Math.max(0, Math.floor((now - collected) / 1000));
  if (age > maxAgeS) {
    return {
      ...base,
      posture_age_s: age,
      unknown_reason: `device posture is ${age} s old, the route allows ${maxAgeS} s`,
    };
  }
  return {
    ...base,
    managed: p.managed,
    encrypted: p.encrypted,
    os_patched: p.os_patched,
    edr_active: p.edr_active,
    posture_age_s: age,
  };
}
