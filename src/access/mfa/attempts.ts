/**
 * Attempt limits on factor verification: per person (`user:<issuer> <sub>`) and per source address
 * (`ip:<addr>`), counted in the store so every proxy on it shares them. A locked key refuses even a
 * right code; a success clears the person's counter (not the address's: one person's success says
 * nothing about the other guesses from there).
 */
import { z } from 'zod';
import type { MfaAttemptLimit, MfaRepository, MfaSubjectKey } from '../../store/mfa.js';
import { userAttemptKey } from '../../store/mfa.js';

export interface AttemptLimits {
  user: MfaAttemptLimit;
  ip: MfaAttemptLimit;
}

const MIN15 = 15 * 60 * 1000;

/** 5 failures in 15 minutes lock a person for 15 minutes; 20 lock an address. */
export const DEFAULT_ATTEMPT_LIMITS: AttemptLimits = {
  user: { max: 5, windowMs: MIN15, lockMs: MIN15 },
  ip: { max: 20, windowMs: MIN15, lockMs: MIN15 },
};

const limitInput = (d: MfaAttemptLimit) =>
  z
    .strictObject({
      max: z.number().int().min(1).max(1000).default(d.max),
      window_seconds: z
        .number()
        .int()
        .min(1)
        .max(7 * 86400)
        .default(d.windowMs / 1000),
      lock_seconds: z
        .number()
        .int()
        .min(1)
        .max(7 * 86400)
        .default(d.lockMs / 1000),
    })
    .transform((v) => ({ max: v.max, windowMs: v.window_seconds * 1000, lockMs: v.lock_seconds * 1000 }));

/**
 * The config form (`mfa.attempts` of the proxy config), in seconds, to {@link AttemptLimits}.
 *
 * @example
 * attemptLimitsSchema.parse({ user: { max: 3 } }) // user: 3 failures / 15 min, lock 15 min; ip: defaults
 */
export const attemptLimitsSchema = z
  .strictObject({
    user: limitInput(DEFAULT_ATTEMPT_LIMITS.user).optional(),
    ip: limitInput(DEFAULT_ATTEMPT_LIMITS.ip).optional(),
  })
  .transform(
    (v): AttemptLimits => ({ user: v.user ?? DEFAULT_ATTEMPT_LIMITS.user, ip: v.ip ?? DEFAULT_ATTEMPT_LIMITS.ip }),
  );

export const ipAttemptKey = (ip: string): string => `ip:${ip}`;

export interface AttemptFailure {
  /** Whether the person or the address is locked after this failure. */
  locked: boolean;
  /** Keys this failure locked (each lock is reported once, across proxies). */
  lockedNow: Array<{ key: string; until: number }>;
}

/** The attempt counters of one service. */
export class AttemptGuard {
  constructor(
    private readonly repo: MfaRepository,
    private readonly limits: AttemptLimits,
  ) {}

  /** Whether verification is locked for this person or this address at `at` (ms). */
  async locked(s: MfaSubjectKey, ip: string, at: number): Promise<boolean> {
    const keys = [userAttemptKey(s), ...(ip ? [ipAttemptKey(ip)] : [])];
    return (await this.repo.lockedUntil(keys, at)) !== undefined;
  }

  async fail(s: MfaSubjectKey, ip: string, at: number): Promise<AttemptFailure> {
    const counted: Array<[string, MfaAttemptLimit]> = [[userAttemptKey(s), this.limits.user]];
    if (ip) counted.push([ipAttemptKey(ip), this.limits.ip]);
    const out: AttemptFailure = { locked: false, lockedNow: [] };
    for (const [key, limit] of counted) {
      const f = await this.repo.registerFailure(key, at, limit);
      if (f.lockedUntil !== null && f.lockedUntil > at) out.locked = true;
      if (f.lockedNow && f.lockedUntil !== null) out.lockedNow.push({ key, until: f.lockedUntil });
    }
    return out;
  }

  async succeed(s: MfaSubjectKey, at: number): Promise<void> {
    await this.repo.clearFailures(userAttemptKey(s), at);
  }

  get windowMs(): number {
    return Math.max(this.limits.user.windowMs, this.limits.ip.windowMs);
  }
}
