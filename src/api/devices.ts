/**
 * Devices on the wire (issue #22): the posture report a device's collector sends
 * (`src/access/device/posture/`). Every signal can say "unknown" (`null`, with a `reason`), and
 * unknown is never compliant: {@link postureFacts} turns only a definite `true` into a pass.
 */
import { z } from 'zod';
import { isoTime, toIso } from './fields.js';

/** A device's own name: what follows `/device/` in its SPIFFE ID (`spiffe://<td>/device/<id>`). */
export const DEVICE_ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;
export const deviceIdText = z
  .string()
  .regex(DEVICE_ID_PATTERN, 'use 1-64 lower-case letters, digits, . _ - (starting with a letter or digit)');

/** Longest text of any posture field; collectors clip to it, the server refuses longer. */
export const POSTURE_TEXT_MAX = 256;
/** Most EDR process names a report may list. */
export const POSTURE_EDR_NAMES_MAX = 32;

// No control characters: these values end up in pages, logs and policy input.
const text = z
  .string()
  .max(POSTURE_TEXT_MAX)
  .regex(/^[^\p{Cc}]*$/u, 'no control characters');
/** Why a signal is unknown (or how it was decided). */
const reason = text.min(1).optional();

/** A null value must say why; a definite one may. */
function unknownHasReason(value: unknown, r: string | undefined, ctx: z.RefinementCtx): void {
  if (value === null && r === undefined)
    ctx.addIssue({ code: 'custom', message: 'an unknown (null) signal needs a reason' });
}

export const postureOsSchema = z
  .strictObject({ name: text.nullable(), version: text.nullable(), id: text.nullable(), reason })
  .superRefine((v, ctx) => unknownHasReason(v.name, v.reason, ctx));

export const postureUpdatesSchema = z
  .strictObject({
    pending_security: z.number().int().min(0).max(1_000_000).nullable(),
    pending_total: z.number().int().min(0).max(1_000_000).nullable(),
    checked_at: isoTime.optional(),
    source: z.enum(['apt', 'unknown']),
    reason,
  })
  .superRefine((v, ctx) => {
    unknownHasReason(v.pending_security, v.reason, ctx);
    if (v.source === 'unknown' && v.pending_security !== null)
      ctx.addIssue({ code: 'custom', message: 'counts from an unknown source must be null' });
    if (v.pending_security !== null && v.pending_total !== null && v.pending_security > v.pending_total)
      ctx.addIssue({ code: 'custom', message: 'pending_security cannot exceed pending_total' });
  });

export const postureDiskSchema = z.strictObject({
  /** null = unknown (container root, lsblk missing, odd output). */
  root_encrypted: z.boolean().nullable(),
  /** The device path from the disk to `/`, or why it is unknown. */
  detail: text.min(1),
});

export const FIREWALL_TOOLS = ['nftables', 'iptables', 'ufw', 'firewalld'] as const;
export const postureFirewallSchema = z
  .strictObject({ active: z.boolean().nullable(), tool: z.enum(FIREWALL_TOOLS).nullable(), reason })
  .superRefine((v, ctx) => {
    unknownHasReason(v.active, v.reason, ctx);
    if (v.active === true && v.tool === null)
      ctx.addIssue({ code: 'custom', message: 'an active firewall names its tool' });
  });

export const postureEdrSchema = z
  .strictObject({
    active: z.boolean(),
    /** The configured process names found running. */
    running: z.array(text.min(1)).max(POSTURE_EDR_NAMES_MAX),
    reason,
  })
  .superRefine((v, ctx) => {
    if (v.active !== v.running.length > 0)
      ctx.addIssue({ code: 'custom', message: 'active exactly when a configured EDR process is running' });
  });

/** `POST /v1/devices/<id>/posture` (next step of #22): one collection of every signal. */
export const postureReportSchema = z.strictObject({
  device_id: deviceIdText,
  collected_at: isoTime,
  os: postureOsSchema,
  /** `uname -r`; null when unknown. */
  kernel: text.nullable(),
  updates: postureUpdatesSchema,
  disk: postureDiskSchema,
  firewall: postureFirewallSchema,
  edr: postureEdrSchema,
  /** Version of the collector that made the report. */
  collector_version: text.min(1),
});
export type PostureReport = z.infer<typeof postureReportSchema>;
export type PostureOs = z.infer<typeof postureOsSchema>;
export type PostureUpdates = z.infer<typeof postureUpdatesSchema>;
export type PostureDisk = z.infer<typeof postureDiskSchema>;
export type PostureFirewall = z.infer<typeof postureFirewallSchema>;
export type PostureEdr = z.infer<typeof postureEdrSchema>;
export type FirewallTool = (typeof FIREWALL_TOOLS)[number];

/** The compliance facts of a report: `true` only when the signal is known to pass; unknown is `false`. */
export interface PostureFacts {
  encrypted: boolean;
  os_patched: boolean;
  firewall_active: boolean;
  edr_active: boolean;
  /** Names of the signals that were unknown, so a refusal can say which one it lacked. */
  unknown: string[];
}

/**
 * Reads a report fail-closed: an unknown signal is never compliant (and is listed in `unknown`).
 *
 * @example
 * ```ts
 * const facts = postureFacts(postureReportSchema.parse(body));
 * if (!facts.encrypted) deny(facts.unknown.includes('disk') ? 'disk encryption unknown' : 'disk not encrypted');
 * ```
 */
export function postureFacts(r: PostureReport): PostureFacts {
  const unknown: string[] = [];
  if (r.disk.root_encrypted === null) unknown.push('disk');
  if (r.updates.pending_security === null || r.updates.source === 'unknown') unknown.push('updates');
  if (r.firewall.active === null) unknown.push('firewall');
  return {
    encrypted: r.disk.root_encrypted === true,
    os_patched: r.updates.source !== 'unknown' && r.updates.pending_security === 0,
    firewall_active: r.firewall.active === true,
    edr_active: r.edr.active && r.edr.running.length > 0,
    unknown,
  };
}

// ---------------------------------------------------------------------------------------------
// Enrollment, renewal, reports and administration (issue #22). The agent port (HTTPS with the
// server's SVID) serves the device's calls: `POST /device/v1/enroll` (one-time token, no client
// certificate), `POST /device/v1/renew` and `POST /device/v1/posture` (mTLS with the device
// certificate). The API port serves the admin routes and the MDM webhook.
// ---------------------------------------------------------------------------------------------

/** An enrollment token's secret part: 32 hex digits (the store keeps its SHA-256 only). */
export const deviceTokenSecret = z.string().regex(/^[0-9a-f]{32}$/, 'expected 32 hex digits');

/** Largest PEM CSR accepted (a P-256 request is about 500 bytes). */
export const DEVICE_CSR_MAX = 8192;
const csrPem = z.string().min(1).max(DEVICE_CSR_MAX);

/**
 * `POST /device/v1/enroll`: the token, a PKCS#10 CSR of the device key whose URI SAN is
 * `spiffe://<td>/device/<device_id>`, and a name for people (the host name).
 */
export const deviceEnrollRequestSchema = z.strictObject({
  token: deviceTokenSecret,
  device_id: deviceIdText,
  csr: csrPem,
  name: text.min(1).optional(),
});
export type DeviceEnrollRequest = z.infer<typeof deviceEnrollRequestSchema>;

/** `POST /device/v1/renew` (mTLS with the current device certificate): a CSR for the same ID. */
export const deviceRenewRequestSchema = z.strictObject({ csr: csrPem });
export type DeviceRenewRequest = z.infer<typeof deviceRenewRequestSchema>;

/** The answer to enroll and renew: the certificate, the trust bundle to verify the server and peers with. */
export const deviceCertificateSchema = z.strictObject({
  device_id: deviceIdText,
  spiffe_id: z.string().min(1),
  owner: text.min(1),
  /** PEM: the device certificate, then any intermediates. */
  cert_chain: z.string().min(1),
  /** PEM: the trust domain's roots (the device's trust bundle). */
  bundle: z.string().min(1),
  expires_at: isoTime,
  /** When the daemon renews: half of the lifetime. */
  renew_after: isoTime,
});
export type DeviceCertificateWire = z.infer<typeof deviceCertificateSchema>;

/** Largest signed posture report accepted (bytes of the compact JWS). */
export const POSTURE_JWS_MAX = 64 * 1024;

/**
 * `POST /device/v1/posture` (mTLS with the device certificate): a compact JWS (ES256, signed with the
 * device key, the same key as the certificate's) whose payload is a {@link PostureReport}.
 */
export const postureSubmitSchema = z.strictObject({ jws: z.string().min(1).max(POSTURE_JWS_MAX) });
export type PostureSubmit = z.infer<typeof postureSubmitSchema>;
/** The JWS header `typ` of a posture report: a JWS made for anything else is never taken for one. */
export const POSTURE_JWS_TYP = 'nevertrust-posture+jws';

/** Where a posture came from: the device's own signed report, or an MDM/EDR webhook. */
export const POSTURE_SOURCES = ['collector', 'mdm'] as const;
export type PostureSource = (typeof POSTURE_SOURCES)[number];

/**
 * A device's posture as the server keeps it (the latest per device, and each in the history): the
 * compliance facts, read fail-closed, with the times. `managed`: enrolled here and reporting with its
 * own key (collector), or the MDM says so.
 */
export const devicePostureSchema = z.strictObject({
  source: z.enum(POSTURE_SOURCES),
  collected_at: isoTime,
  received_at: isoTime,
  managed: z.boolean(),
  encrypted: z.boolean(),
  os_patched: z.boolean(),
  firewall_active: z.boolean(),
  edr_active: z.boolean(),
  /** Signals the report could not decide (never compliant), e.g. `disk`, `updates`. */
  unknown: z.array(text.min(1)).max(16),
  /** Every fact that a compliant device needs holds: {@link isCompliant}. */
  compliant: z.boolean(),
});
export type DevicePosture = z.infer<typeof devicePostureSchema>;

/** Compliant: managed, encrypted, patched and with EDR running (the firewall is reported, not required). */
export function isCompliant(p: Pick<DevicePosture, 'managed' | 'encrypted' | 'os_patched' | 'edr_active'>): boolean {
  return p.managed && p.encrypted && p.os_patched && p.edr_active;
}

/** The posture of a collector's report, as kept. */
export function postureFromReport(r: PostureReport, receivedAt: number): DevicePosture {
  const f = postureFacts(r);
  const facts = {
    managed: true,
    encrypted: f.encrypted,
    os_patched: f.os_patched,
    firewall_active: f.firewall_active,
    edr_active: f.edr_active,
  };
  return {
    source: 'collector',
    collected_at: r.collected_at,
    received_at: toIso(receivedAt),
    ...facts,
    unknown: f.unknown,
    compliant: isCompliant(facts),
  };
}

/**
 * `POST /v1/devices/mdm` (API port): an MDM or EDR's view of a device, for platforms the collector
 * does not cover. Authenticated by HMAC-SHA256 over `<timestamp>.<body>` with the configured secret
 * (`X-Nevertrust-Timestamp`, `X-Nevertrust-Signature: v1=<hex>`), within 5 minutes.
 */
export const mdmPostureSchema = z.strictObject({
  device_id: deviceIdText,
  collected_at: isoTime,
  managed: z.boolean(),
  encrypted: z.boolean().nullable(),
  os_patched: z.boolean().nullable(),
  firewall_active: z.boolean().nullable(),
  edr_active: z.boolean().nullable(),
  /** The sender, for the history (`intune`, `jamf`, `crowdstrike`…). */
  vendor: text.min(1).max(64),
});
export type MdmPosture = z.infer<typeof mdmPostureSchema>;

/** The posture of an MDM report, as kept (null = unknown = not compliant). */
export function postureFromMdm(m: MdmPosture, receivedAt: number): DevicePosture {
  const unknown = (['encrypted', 'os_patched', 'firewall_active', 'edr_active'] as const).filter((k) => m[k] === null);
  const facts = {
    managed: m.managed,
    encrypted: m.encrypted === true,
    os_patched: m.os_patched === true,
    firewall_active: m.firewall_active === true,
    edr_active: m.edr_active === true,
  };
  return {
    source: 'mdm',
    collected_at: m.collected_at,
    received_at: toIso(receivedAt),
    ...facts,
    unknown: [...unknown],
    compliant: isCompliant(facts),
  };
}

/** A device as the server keeps it (the store's model type). Times are ms since the epoch. */
export interface DeviceRecord {
  id: string;
  owner: string;
  name: string | null;
  spiffeId: string;
  enrolledAt: number;
  certSerial: string;
  certNotAfter: number;
  renewedAt: number | null;
  revokedAt: number | null;
  revokedReason: string | null;
  /** The latest posture (collector or MDM), null before the first. */
  posture: DevicePosture | null;
}

/** A device on the wire (admin list and show). */
export const deviceSchema = z.strictObject({
  id: deviceIdText,
  owner: text.min(1),
  name: text.nullable(),
  spiffe_id: z.string().min(1),
  enrolled_at: isoTime,
  cert_serial: z.string().min(1),
  cert_expires_at: isoTime,
  renewed_at: isoTime.nullable(),
  revoked_at: isoTime.nullable(),
  revoked_reason: text.nullable(),
  posture: devicePostureSchema.nullable(),
});
export type DeviceWire = z.infer<typeof deviceSchema>;

/** The one conversion of a kept device to the wire. */
export function deviceToWire(d: DeviceRecord): DeviceWire {
  return {
    id: d.id,
    owner: d.owner,
    name: d.name,
    spiffe_id: d.spiffeId,
    enrolled_at: toIso(d.enrolledAt),
    cert_serial: d.certSerial,
    cert_expires_at: toIso(d.certNotAfter),
    renewed_at: d.renewedAt === null ? null : toIso(d.renewedAt),
    revoked_at: d.revokedAt === null ? null : toIso(d.revokedAt),
    revoked_reason: d.revokedReason,
    posture: d.posture,
  };
}

/** `GET /v1/admin/devices[?owner=]`. */
export const deviceListSchema = z.strictObject({ devices: z.array(deviceSchema) });
/** `GET /v1/admin/devices/<id>`: the device and its latest reports, newest first. */
export const deviceShowSchema = z.strictObject({
  device: deviceSchema,
  reports: z.array(z.strictObject({ seq: z.number().int(), posture: devicePostureSchema })),
});
/** `POST /v1/admin/devices/<id>/revoke`. */
export const deviceRevokeRequestSchema = z.strictObject({ reason: text.min(1).optional() });

/** `POST /v1/admin/devices/tokens`: for whom, optionally which device id, and a lifetime (`24h`, seconds). */
export const deviceTokenRequestSchema = z.strictObject({
  owner: text.min(1),
  device_id: deviceIdText.optional(),
  ttl: z.union([z.string(), z.number()]).optional(),
});
/**
 * The answer: the secret and `token`, what `nevertrust device enroll --token` takes:
 * `<secret>.<ca pin>`, the pin being the SHA-256 (hex) of a root of the trust bundle in force, so a
 * device can check the server it first talks to.
 */
export const deviceTokenSchema = z.strictObject({
  token: z.string().regex(/^[0-9a-f]{32}\.[0-9a-f]{64}$/, 'expected <32 hex>.<64 hex>'),
  owner: text.min(1),
  device_id: deviceIdText.nullable(),
  expires_at: isoTime,
  ttl: z.number().positive(),
});
export type DeviceTokenWire = z.infer<typeof deviceTokenSchema>;

/** The answer to `POST /device/v1/posture`: the posture the server kept. */
export const postureAcceptedSchema = z.strictObject({ device_id: deviceIdText, posture: devicePostureSchema });
export type PostureAccepted = z.infer<typeof postureAcceptedSchema>;
