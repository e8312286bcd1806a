/**
 * Login attempt limits of the built-in provider: failures per client IP and per username in a
 * sliding window. A limited key is refused before the password is checked, so guessing costs time
 * whichever username or address it spreads over.
 */
import type { IncomingMessage } from 'node:http';

/**
 * The address attempts are counted against: the peer, or behind the TLS-terminating proxy (the
 * provider's only peer then) the address that proxy appended last to X-Forwarded-For; otherwise
 * every person would share the proxy's one limit.
 */
export function clientIp(req: IncomingMessage, behindProxy: boolean): string {
  const peer = req.socket.remoteAddress ?? '';
  if (!behindProxy) return peer;
  const header = req.headers['x-forwarded-for'];
  const list = (Array.isArray(header) ? header.join(',') : (header ?? '')).split(',');
  const last = list[list.length - 1]?.trim() ?? '';
  return last.length > 0 && last.length <= 64 ? last : peer;
}

export interface AttemptLimits {
  /** Failed logins allowed per IP in the window (default 20). */
  perIp: number;
  /** Failed logins allowed per username in the window (default 5). */
  perUser: number;
  /** Window length in ms (default 15 minutes). */
  windowMs: number;
}

export const DEFAULT_ATTEMPT_LIMITS: AttemptLimits = { perIp: 20, perUser: 5, windowMs: 15 * 60_000 };

/** Remembers recent failures; bounded so that a flood of usernames cannot grow it without end. */
export class LoginAttempts {
  private readonly failures = new Map<string, number[]>();
  private static readonly MAX_KEYS = 100_000;

  constructor(private readonly limits: AttemptLimits = DEFAULT_ATTEMPT_LIMITS) {}

  private recent(key: string, now: number): number[] {
    const list = (this.failures.get(key) ?? []).filter((t) => t > now - this.limits.windowMs);
    if (list.length === 0) this.failures.delete(key);
    else this.failures.set(key, list);
    return list;
  }

  /** Why this attempt is refused before checking the password, or undefined when it may proceed. */
  limited(ip: string, username: string, now = Date.now()): 'ip' | 'username' | undefined {
    if (this.recent(`ip:${ip}`, now).length >= this.limits.perIp) return 'ip';
    if (this.recent(`user:${username}`, now).length >= this.limits.perUser) return 'username';
    return undefined;
  }

  failed(ip: string, username: string, now = Date.now()): void {
    if (this.failures.size > LoginAttempts.MAX_KEYS) this.failures.clear();
    for (const key of [`ip:${ip}`, `user:${username}`]) this.failures.set(key, [...this.recent(key, now), now]);
  }

  /** A success clears the username's failures (not the IP's: one good account must not launder guesses). */
  succeeded(username: string): void {
    this.failures.delete(`user:${username}`);
  }
}
