/** The few cookie operations the authenticator needs: read one by name, write `__Host-` cookies. */
import type { IncomingMessage } from 'node:http';

/** The first value of cookie `name` in the request, undefined when absent. */
export function readCookie(req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * A `__Host-` cookie: Secure, Path=/, no Domain (the prefix demands all three), HttpOnly, SameSite=Lax
 * (the provider's redirect back to the callback is a top-level GET, which Lax lets through).
 */
export function hostCookie(name: string, value: string, maxAgeSeconds: number): string {
  return `${name}=${value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=${Math.max(0, Math.floor(maxAgeSeconds))}`;
}

/** Clears a cookie set by {@link hostCookie}. */
export const clearCookie = (name: string): string => hostCookie(name, '', 0);
