/**
 * Devices on the wire (issue #22): the posture report a device's collector sends
 * (`src/access/device/posture/`). Every signal can say "unknown" (`null`, with a `reason`), and
 * unknown is never compliant: {@link postureFacts} turns only a definite `true` into a pass.
 */
import { z } from 'zod';
import { isoTime } from './fields.js';

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
