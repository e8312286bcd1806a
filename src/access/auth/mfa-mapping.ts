/**
 * Which of a provider's authentications count as a second factor (the auth config's `mfa` section),
 * and what a session's step-up at the proxy adds: both end in `PersonIdentity.amr` and `mfaAt`.
 */
import { MFA_AMR, type PersonIdentity } from '../identity.js';

/** The auth config's `mfa` section, parsed. */
export interface ProviderMfaMapping {
  /** `amr` values that count as a second factor (default {@link MFA_AMR}). */
  amr: readonly string[];
  /** An `acr` value → the methods it stands for (added to `amr`; they count when listed in `amr`). */
  acr: Readonly<Record<string, readonly string[]>>;
}

/** A session's step-up at the proxy (`access_sessions.mfa`). */
export interface SessionMfa {
  /** Epoch seconds. */
  at: number;
  methods: string[];
}

/**
 * The person as the provider's token says, with the mapping applied: the `acr`'s methods join `amr`,
 * and when a counting method is among them, `mfa` is true and `mfaAt` is `auth_time` — no time
 * stands in for a missing `auth_time` (a token's `iat` or the login time is when a token was issued,
 * not when the factor was used), so freshness rules then fail closed.
 *
 * @example
 * ```ts
 * withProviderMfa(person, { amr: ['otp', 'hwk'], acr: { 'urn:example:mfa': ['mfa'] } })
 * ```
 */
export function withProviderMfa(p: PersonIdentity, m: ProviderMfaMapping): PersonIdentity {
  const fromAcr = p.acr !== undefined && Object.hasOwn(m.acr, p.acr) ? (m.acr[p.acr] ?? []) : [];
  const amr = [...new Set([...p.amr, ...fromAcr])];
  const counts = amr.some((x) => m.amr.includes(x));
  const { mfaAt: _at, mfa: _mfa, ...rest } = p;
  if (!counts) return { ...rest, amr };
  return { ...rest, amr, mfa: true, ...(p.authTime !== undefined ? { mfaAt: p.authTime } : {}) };
}

/**
 * The person of a session that stepped up at the proxy: `amr` is what held at that moment (the
 * provider's methods that are no second factor, e.g. `pwd`, plus the step-up's), and `mfaAt` its
 * time. The provider's own second factors are older than the step-up and are left out, so a rule
 * asking for a fresh `hwk` cannot be met by a key used at login hours ago and a code now.
 */
export function withSessionMfa(p: PersonIdentity, m: ProviderMfaMapping, s: SessionMfa | undefined): PersonIdentity {
  if (s === undefined || (p.mfaAt !== undefined && p.mfaAt > s.at)) return p;
  const kept = p.amr.filter((x) => !m.amr.includes(x));
  return { ...p, amr: [...new Set([...kept, ...s.methods])], mfa: true, mfaAt: s.at };
}

/** The session's `mfa` column, or undefined when absent or not of the expected shape. */
export function parseSessionMfa(json: string | null): SessionMfa | undefined {
  if (json === null) return undefined;
  try {
    const v = JSON.parse(json) as { at?: unknown; methods?: unknown };
    if (typeof v.at !== 'number' || !Array.isArray(v.methods)) return undefined;
    return { at: v.at, methods: v.methods.filter((x): x is string => typeof x === 'string') };
  } catch {
    return undefined;
  }
}
