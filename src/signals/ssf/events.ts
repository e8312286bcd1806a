/**
 * What a verified SET means for nevertrust: CAEP and RISC events mapped onto the one model of
 * signals ({@link Signal}). An event type we do not act on is ignored and reported (never an error
 * for the whole SET: a transmitter may send more than we need). Signals only take access away, so an
 * event that would only give some back (a device compliant again, a credential created, assurance
 * raised) is ignored and reported too; the next posture check or login restores what it should.
 *
 * Subjects: `email` and `iss_sub` name a person. `opaque` names a session for the session events
 * (`session-revoked`, `token-claims-change`, `assurance-level-change`) and a device for
 * `device-compliance-change` and a `risk-level-change` whose principal is `DEVICE`; anywhere else an
 * opaque id is ignored and reported, since we could not say whose it is.
 *
 * @example
 * ```ts
 * const set = await verifySet(body, options);
 * const { signals, ignored } = signalsFromSet(set);
 * ```
 */
import { type Signal, signalSchema, type UserRef } from '../../api/signals.js';
import type { SetEvent, SubjectId, VerifiedSet } from './set.js';

export const CAEP_EVENT_PREFIX = 'https://schemas.openid.net/secevent/caep/event-type/';
export const RISC_EVENT_PREFIX = 'https://schemas.openid.net/secevent/risc/event-type/';

/** CAEP event-type URIs this module maps (and the transmitter sends). */
export const CAEP = {
  sessionRevoked: `${CAEP_EVENT_PREFIX}session-revoked`,
  credentialChange: `${CAEP_EVENT_PREFIX}credential-change`,
  deviceComplianceChange: `${CAEP_EVENT_PREFIX}device-compliance-change`,
  assuranceLevelChange: `${CAEP_EVENT_PREFIX}assurance-level-change`,
  tokenClaimsChange: `${CAEP_EVENT_PREFIX}token-claims-change`,
  riskLevelChange: `${CAEP_EVENT_PREFIX}risk-level-change`,
} as const;

/** RISC event-type URIs this module maps. */
export const RISC = {
  accountDisabled: `${RISC_EVENT_PREFIX}account-disabled`,
  accountPurged: `${RISC_EVENT_PREFIX}account-purged`,
  credentialCompromise: `${RISC_EVENT_PREFIX}credential-compromise`,
} as const;

/** CAEP `risk-level-change` levels as risk scores (0..1). */
export const RISK_LEVEL_SCORES: Readonly<Record<'low' | 'medium' | 'high', number>> = {
  low: 0.1,
  medium: 0.5,
  high: 0.9,
};

/** An event that produced no signal, and why. */
export interface IgnoredEvent {
  type: string;
  reason: string;
}

/** What a SET means: the signals to apply, and the events that were not acted on. */
export interface SetSignals {
  signals: Signal[];
  ignored: IgnoredEvent[];
}

type Common = Pick<Signal, 'reason' | 'source' | 'at' | 'origin'>;
type Mapped = Signal | string;

/** The person a subject names, or undefined for an opaque one. */
function userOf(subject: SubjectId): UserRef | undefined {
  if (subject.format === 'email') return { user: subject.email };
  if (subject.format === 'iss_sub') return { user: subject.sub, issuer: subject.iss, sub: subject.sub };
  return undefined;
}

/** `reason_admin`/`reason_user`: a string (CAEP drafts) or a map of language tags (CAEP 1.0). */
function reasonText(value: unknown): string | undefined {
  if (typeof value === 'string' && value.length > 0) return value;
  if (typeof value === 'object' && value !== null) {
    const map = value as Record<string, unknown>;
    const en = map.en;
    if (typeof en === 'string' && en.length > 0) return en;
    const first = Object.values(map).find((v): v is string => typeof v === 'string' && v.length > 0);
    return first;
  }
  return undefined;
}

/** Ends a subject's sessions: the one session an opaque id names, or every session of a person. */
function endSessions(subject: SubjectId, c: Common): Signal {
  const user = userOf(subject);
  if (user) return { kind: 'user.logged-out', ...c, user };
  return { kind: 'session.revoked', ...c, sessionId: (subject as { id: string }).id };
}

function userSignal(kind: 'user.disabled' | 'user.credentials-changed', subject: SubjectId, c: Common): Mapped {
  const user = userOf(subject);
  return user ? { kind, ...c, user } : 'an opaque subject names no person nevertrust knows';
}

function mapEvent(event: SetEvent, c: Common): Mapped {
  const { type, subject, payload } = event;
  switch (type) {
    case CAEP.sessionRevoked:
      return endSessions(subject, c);
    case CAEP.tokenClaimsChange:
      // We cannot re-read the new claims here: the person signs in again and gets them.
      return endSessions(subject, c);
    case CAEP.assuranceLevelChange:
      // A raised level takes nothing away; a lowered or unstated direction ends the sessions
      // established at the old level (fail closed).
      if (payload.change_direction === 'increase') return 'assurance increased: takes nothing away';
      return endSessions(subject, c);
    case CAEP.credentialChange:
      if (payload.change_type === 'create') return 'a credential was created: takes nothing away';
      return userSignal('user.credentials-changed', subject, c);
    case CAEP.deviceComplianceChange: {
      const status = payload.current_status;
      if (status === 'compliant') return 'device compliant again: the next posture check restores access';
      if (status !== 'not-compliant') return `current_status ${JSON.stringify(status)} is not compliant/not-compliant`;
      if (subject.format !== 'opaque') return 'a device-compliance-change needs the device as an opaque subject';
      return { kind: 'device.non-compliant', ...c, deviceId: subject.id };
    }
    case CAEP.riskLevelChange: {
      const level = typeof payload.current_level === 'string' ? payload.current_level.toLowerCase() : '';
      const score = RISK_LEVEL_SCORES[level as keyof typeof RISK_LEVEL_SCORES];
      if (score === undefined) return `current_level ${JSON.stringify(payload.current_level)} is not low/medium/high`;
      const principal = typeof payload.principal === 'string' ? payload.principal.toUpperCase() : undefined;
      if (subject.format === 'opaque') {
        if (principal !== 'DEVICE') return 'an opaque risk subject must have principal DEVICE';
        return { kind: 'risk.set', ...c, target: { type: 'device', deviceId: subject.id }, score };
      }
      if (principal !== undefined && principal !== 'USER') return `principal ${principal} is not a person or device`;
      return { kind: 'risk.set', ...c, target: { type: 'user', user: userOf(subject) as UserRef }, score };
    }
    case RISC.accountDisabled:
    case RISC.accountPurged:
      return userSignal('user.disabled', subject, c);
    case RISC.credentialCompromise:
      return userSignal('user.credentials-changed', subject, c);
    default:
      return 'event type not acted on';
  }
}

/** The short name of an event type, for default reasons (`session-revoked`). */
function shortName(type: string): string {
  return type.slice(type.lastIndexOf('/') + 1) || type;
}

/**
 * Maps each event of a verified SET onto signals (`source: 'ssf'`, `origin: ssf:<iss>#<jti>`, `at`
 * from the event's `event_timestamp` or else `iat`). Never throws for an unknown or unusable event:
 * it is listed in `ignored` with the reason.
 */
export function signalsFromSet(set: VerifiedSet): SetSignals {
  const signals: Signal[] = [];
  const ignored: IgnoredEvent[] = [];
  for (const event of set.events) {
    const ts = event.payload.event_timestamp;
    const at = typeof ts === 'number' && Number.isFinite(ts) && ts > 0 ? new Date(ts * 1000) : set.issuedAt;
    const given = reasonText(event.payload.reason_admin) ?? reasonText(event.payload.reason_user);
    const c: Common = {
      reason: (given ?? `${shortName(event.type)} from ${set.issuer}`).slice(0, 1024),
      source: 'ssf',
      at: Number.isNaN(at.getTime()) ? set.issuedAt.toISOString() : at.toISOString(),
      origin: `ssf:${set.issuer}#${set.jti}`.slice(0, 2048),
    };
    const mapped = mapEvent(event, c);
    if (typeof mapped === 'string') {
      ignored.push({ type: event.type, reason: mapped });
      continue;
    }
    const parsed = signalSchema.safeParse(mapped);
    if (parsed.success) signals.push(parsed.data);
    else ignored.push({ type: event.type, reason: `not a valid signal: ${parsed.error.issues[0]?.message}` });
  }
  return { signals, ignored };
}
