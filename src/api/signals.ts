/**
 * The one model of revocation, risk and posture signals (issue #23, item 1). Every source — an
 * admin's `nevertrust revoke …`, a received SSF SET, a posture check, a policy change — produces
 * these, and every enforcement point consumes only these. A signal only ever takes access away (or
 * sets a risk score): nothing here grants anything, so a lost or forged "good news" signal cannot
 * open a door. Sequence numbers are not part of a signal: the store assigns them when it keeps one.
 *
 * @example
 * ```ts
 * const s = signalSchema.parse({
 *   kind: 'session.revoked', sessionId: 's-123', reason: 'admin revoked it',
 *   source: 'admin', at: new Date().toISOString(),
 * });
 * ```
 */
import { z } from 'zod';

/** Who raised a signal: an admin, a received SSF SET, a device posture check, a policy change. */
export const SIGNAL_SOURCES = ['admin', 'ssf', 'posture', 'policy'] as const;
export type SignalSource = (typeof SIGNAL_SOURCES)[number];

/** Every kind of signal, in one list (the discriminant of {@link Signal}). */
export const SIGNAL_KINDS = [
  'session.revoked',
  'user.disabled',
  'user.logged-out',
  'user.credentials-changed',
  'device.revoked',
  'device.lost',
  'device.non-compliant',
  'risk.set',
  'workload.entry-deleted',
  'agent.banned',
  'svid.revoked',
] as const;
export type SignalKind = (typeof SIGNAL_KINDS)[number];

const text = z.string().min(1).max(1024);

/** Fields every signal carries. */
const common = {
  /** Why, for people: shown in audit events and on the page of a cut session. */
  reason: z.string().max(1024),
  source: z.enum(SIGNAL_SOURCES),
  /** When it happened (ISO 8601, with offset), as the source says; not when we received it. */
  at: z.iso.datetime({ offset: true }),
  /** Provenance for audit, e.g. `ssf:<iss>#<jti>` for a received SET. */
  origin: z.string().max(2048).optional(),
};

/**
 * A person. `user` is the name nevertrust knows them by (a login name or an email address); when the
 * source named them by an OpenID issuer and subject (`iss_sub`), both are kept so an enforcement
 * point can match sessions by (issuer, sub) exactly rather than by a name.
 */
export const userRefSchema = z
  .object({ user: text, issuer: text.optional(), sub: text.optional() })
  .strict()
  .refine((u) => (u.issuer === undefined) === (u.sub === undefined), {
    message: 'issuer and sub go together',
  });
export type UserRef = z.infer<typeof userRefSchema>;

const userSignal = <K extends string>(kind: K) =>
  z.object({ kind: z.literal(kind), ...common, user: userRefSchema }).strict();
const deviceSignal = <K extends string>(kind: K) =>
  z.object({ kind: z.literal(kind), ...common, deviceId: text }).strict();

/** A risk target: a person or a device. */
export const riskTargetSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('user'), user: userRefSchema }).strict(),
  z.object({ type: z.literal('device'), deviceId: text }).strict(),
]);
export type RiskTarget = z.infer<typeof riskTargetSchema>;

export const signalSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('session.revoked'), ...common, sessionId: text }).strict(),
  userSignal('user.disabled'),
  userSignal('user.logged-out'),
  userSignal('user.credentials-changed'),
  deviceSignal('device.revoked'),
  deviceSignal('device.lost'),
  deviceSignal('device.non-compliant'),
  z
    .object({ kind: z.literal('risk.set'), ...common, target: riskTargetSchema, score: z.number().min(0).max(1) })
    .strict(),
  z
    .object({
      kind: z.literal('workload.entry-deleted'),
      ...common,
      entryId: text,
      // The entry's SPIFFE ID, so a sidecar can cut its peers without having had the entry.
      spiffeId: z.string().startsWith('spiffe://').max(2048).optional(),
    })
    .strict(),
  z.object({ kind: z.literal('agent.banned'), ...common, agentId: text }).strict(),
  // Hex serial as the CA writes it (case-insensitive; compared lowercased).
  z.object({ kind: z.literal('svid.revoked'), ...common, serial: z.string().regex(/^[0-9a-fA-F]{1,64}$/) }).strict(),
]);

/** One signal. Narrow on `kind`. */
export type Signal = z.infer<typeof signalSchema>;
/** The signal of one kind, e.g. `SignalOf<'risk.set'>`. */
export type SignalOf<K extends SignalKind> = Extract<Signal, { kind: K }>;

/** A signal as the store numbered it. */
export const sequencedSignalSchema = z.strictObject({
  seq: z.number().int().positive(),
  signal: signalSchema,
  /** When the server kept it (ISO 8601). */
  received_at: z.iso.datetime({ offset: true }),
});
export type SequencedSignal = z.infer<typeof sequencedSignalSchema>;

/**
 * The signal stream (`GET /v1/signals/stream?after=<seq>`, NDJSON, one message a line), followed by
 * every enforcement point. `hello` first: the newest number and the oldest still kept (a follower
 * whose `after` is older than `oldest - 1` missed signals that are gone: it must re-read its state,
 * e.g. fail closed until it has). Then every signal after `after`, in order, then each new one as it
 * is kept; `ping` every few seconds with the newest number, so a silent connection is noticed.
 */
export const signalStreamMessageSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('hello'),
    head: z.number().int().nonnegative(),
    oldest: z.number().int().nonnegative(),
  }),
  z.strictObject({ type: z.literal('signal'), ...sequencedSignalSchema.shape }),
  z.strictObject({ type: z.literal('ping'), head: z.number().int().nonnegative() }),
]);
export type SignalStreamMessage = z.infer<typeof signalStreamMessageSchema>;

/** The lookup key of what a signal is about (the store's `signals.subject`). */
export function signalSubject(s: Signal): string {
  switch (s.kind) {
    case 'session.revoked':
      return `session:${s.sessionId}`;
    case 'user.disabled':
    case 'user.logged-out':
    case 'user.credentials-changed':
      return `user:${s.user.user}`;
    case 'device.revoked':
    case 'device.lost':
    case 'device.non-compliant':
      return `device:${s.deviceId}`;
    case 'risk.set':
      return s.target.type === 'user' ? `user:${s.target.user.user}` : `device:${s.target.deviceId}`;
    case 'workload.entry-deleted':
      return `entry:${s.entryId}`;
    case 'agent.banned':
      return `agent:${s.agentId}`;
    case 'svid.revoked':
      return `svid:${s.serial.toLowerCase()}`;
  }
}

/** Names exactly one of `keys` in `o`. */
const exactlyOne = (o: Record<string, unknown>, keys: readonly string[]) =>
  keys.filter((k) => o[k] !== undefined).length === 1;

const REVOKE_TARGETS = ['session', 'user', 'device', 'svid'] as const;

/**
 * `POST /v1/admin/revoke` (`nevertrust revoke …`): exactly one of a session id, a person's name, a
 * device id or an SVID serial (hex).
 */
export const revokeRequestSchema = z
  .strictObject({
    session: text.optional(),
    user: text.optional(),
    device: text.optional(),
    svid: z
      .string()
      .regex(/^[0-9a-fA-F:]{1,95}$/, 'a hex serial, e.g. 3f9a01 (colons allowed)')
      .transform((s) => s.replaceAll(':', ''))
      .pipe(z.string().min(1).max(64))
      .optional(),
    reason: z.string().max(1024).optional(),
  })
  .refine((o) => exactlyOne(o, REVOKE_TARGETS), { message: 'name exactly one of session, user, device, svid' });
export type RevokeRequest = z.infer<typeof revokeRequestSchema>;

/** `POST /v1/admin/risk` (`nevertrust risk set …`): a score from 0 to 1 for a person or a device. */
export const riskRequestSchema = z
  .strictObject({
    user: text.optional(),
    device: text.optional(),
    score: z.number().min(0, 'a score from 0 to 1').max(1, 'a score from 0 to 1'),
    reason: z.string().max(1024).optional(),
  })
  .refine((o) => exactlyOne(o, ['user', 'device']), { message: 'name exactly one of user, device' });
export type RiskRequest = z.infer<typeof riskRequestSchema>;

/** The answer to `POST /v1/admin/revoke` and `POST /v1/admin/risk`. */
export const raisedSignalSchema = z.strictObject({
  seq: z.number().int().positive(),
  kind: z.enum(SIGNAL_KINDS),
  subject: z.string(),
  /** Sessions the store ended because of it (session and person signals). */
  ended_sessions: z.number().int().nonnegative(),
});
export type RaisedSignalWire = z.infer<typeof raisedSignalSchema>;

/** `GET /v1/admin/signals?after=&limit=`: kept signals after a seq, oldest first. */
export const signalListSchema = z.strictObject({
  signals: z.array(sequencedSignalSchema),
  head: z.number().int().nonnegative(),
  oldest: z.number().int().nonnegative(),
});
export type SignalListWire = z.infer<typeof signalListSchema>;
