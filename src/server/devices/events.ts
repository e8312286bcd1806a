/**
 * How the device routes record what they do: every action and every refusal is a `device.*` server
 * event (audited), never with a token secret. Refusals go through the refusal aggregator, so a flood
 * of one caller's bad requests is one event with its count.
 */
import type { IncomingMessage } from 'node:http';
import type { DevicePosture } from '../../api/devices.js';
import type { SignalOf } from '../../api/signals.js';
import type { ServerEvent, ServerEvents } from '../events.js';
import { HttpError } from '../router.js';

/** The server event kinds of devices. */
export type DeviceEventKind =
  | 'device.token'
  | 'device.enroll'
  | 'device.renew'
  | 'device.report'
  | 'device.mdm'
  | 'device.revoke'
  | 'device.non_compliant';

/** Who and what a device event is about. */
export interface DeviceEventSubject {
  /** The caller: a device SPIFFE ID, an admin principal, or `mdm`. */
  by?: string;
  /** The device's SPIFFE ID or id, when known. */
  device?: string;
}

/**
 * Records a refusal and returns the HttpError to throw (4xx, with the reason).
 *
 * @example
 * throw refuse(ctx.events, req, 'device.report', 403, 'device_revoked', 'device d1 is revoked', { device: id });
 */
export function refuse(
  events: ServerEvents,
  req: IncomingMessage,
  kind: DeviceEventKind,
  status: number,
  error: string,
  reason: string,
  who: DeviceEventSubject = {},
): HttpError {
  const ip = req.socket.remoteAddress;
  events.refusals.refused(`${kind}\n${who.by ?? ip}\n${status}\n${reason}`, {
    kind,
    outcome: 'deny',
    source: { id: who.by, ip },
    target: { id: who.device, resource: req.url?.split('?')[0] },
    reason,
  });
  return new HttpError(status, error, reason);
}

/** Records an action that was allowed. */
export function allowed(
  events: ServerEvents,
  req: IncomingMessage,
  kind: DeviceEventKind,
  reason: string,
  who: DeviceEventSubject,
  details?: Record<string, unknown>,
): void {
  const e: ServerEvent = {
    kind,
    outcome: 'allow',
    source: { id: who.by, ip: req.socket.remoteAddress },
    target: { id: who.device },
    reason,
  };
  if (details) e.details = details;
  events.record(e);
}

/**
 * After a posture was kept: when it went from compliant (or none) to not compliant, emits
 * `device.non_compliant` carrying the `device.non-compliant` signal (issue #23 acts on it).
 * Returns the signal when one was emitted.
 */
export function noteComplianceChange(
  events: ServerEvents,
  deviceId: string,
  spiffeId: string,
  previous: DevicePosture | null,
  now: DevicePosture,
): SignalOf<'device.non-compliant'> | undefined {
  if (now.compliant || (previous !== null && !previous.compliant)) return undefined;
  const failing = (['managed', 'encrypted', 'os_patched', 'edr_active'] as const).filter((k) => !now[k]);
  const reason = `device ${deviceId} is no longer compliant (${now.source}: not ${failing.join(', not ')})`;
  const signal: SignalOf<'device.non-compliant'> = {
    kind: 'device.non-compliant',
    deviceId,
    reason,
    source: 'posture',
    at: now.received_at,
    origin: `${now.source}:${deviceId}`,
  };
  events.record({
    kind: 'device.non_compliant',
    outcome: 'deny',
    source: { id: spiffeId },
    target: { id: spiffeId },
    reason,
    details: { signal, failing, unknown: now.unknown },
  });
  return signal;
}
