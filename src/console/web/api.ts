/**
 * The console's one way to the admin API: same-origin fetch with the person's cookie (the access
 * proxy adds the signed assertion), JSON both ways. A 401 `insufficient_user_authentication` (RFC
 * 9470) opens the step-up dialog; the action is never replayed automatically.
 */

/**
 * An answer other than 2xx, with the server's `{error, message}` when it gave one. A plain Error
 * with fields: the browser code has no part in the server's error taxonomy (src/errors.ts).
 */
export type ApiError = Error & { status: number; code: string };

function apiError(status: number, code: string, message: string): ApiError {
  return Object.assign(new Error(message), { name: 'ApiError', status, code });
}

/** Fired on `window` when the server wants a fresh second factor before this action. */
export const STEP_UP_EVENT = 'nevertrust:step-up';

/** True when a 401 says the second factor is too old (RFC 9470), not that there is no login. */
function needsStepUp(res: Response): boolean {
  return res.status === 401 && /insufficient_user_authentication/.test(res.headers.get('www-authenticate') ?? '');
}

/** The message shown for a refused answer: the server's, or one that says what to do. */
async function errorOf(res: Response): Promise<ApiError> {
  let code = `http_${res.status}`;
  let message = res.statusText || `HTTP ${res.status}`;
  try {
    const body = (await res.json()) as { error?: unknown; message?: unknown };
    if (typeof body.error === 'string') code = body.error;
    if (typeof body.message === 'string') message = body.message;
  } catch {
    // Not JSON (a proxy's page): the status says enough.
  }
  if (needsStepUp(res)) {
    window.dispatchEvent(new CustomEvent(STEP_UP_EVENT));
    return apiError(401, 'insufficient_user_authentication', `This action needs a fresh second factor. ${message}`);
  }
  if (res.status === 401) return apiError(401, code, `Not signed in (${message}). Reload the page to sign in.`);
  if (res.status === 403) return apiError(403, code, `Not allowed: ${message}`);
  return apiError(res.status, code, message);
}

/** Options of {@link api}: a method other than GET sends `body` as JSON (an empty object if none). */
export interface ApiOptions {
  method?: 'GET' | 'POST' | 'DELETE' | 'PATCH';
  body?: unknown;
  signal?: AbortSignal;
}

/**
 * Calls the admin API and parses its JSON answer; throws an {@link ApiError} on a refusal.
 *
 * @example
 * const { devices } = await api<{ devices: DeviceWire[] }>('/v1/admin/devices');
 */
export async function api<T>(path: string, opts: ApiOptions = {}): Promise<T> {
  const method = opts.method ?? 'GET';
  const init: RequestInit = {
    method,
    credentials: 'same-origin',
    headers: { accept: 'application/json' },
    signal: opts.signal,
  };
  if (method !== 'GET') {
    // The server demands JSON on a person's non-GET call (a form post cannot forge one).
    init.headers = { accept: 'application/json', 'content-type': 'application/json' };
    init.body = JSON.stringify(opts.body ?? {});
  }
  const res = await fetch(path, init);
  if (!res.ok) throw await errorOf(res);
  return (await res.json()) as T;
}

/**
 * Follows an NDJSON stream (`/v1/admin/audit/tail?follow=1`), calling `onItem` per line until
 * `signal` aborts or the server ends it. Resolves when the stream ends; rejects on a refusal.
 */
export async function followNdjson<T>(path: string, onItem: (item: T) => void, signal: AbortSignal): Promise<void> {
  const res = await fetch(path, { credentials: 'same-origin', headers: { accept: 'application/x-ndjson' }, signal });
  if (!res.ok || !res.body) throw await errorOf(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffered += value;
      let nl = buffered.indexOf('\n');
      while (nl >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line) onItem(JSON.parse(line) as T);
        nl = buffered.indexOf('\n');
      }
    }
  } catch (e) {
    if (signal.aborted) return;
    throw e;
  } finally {
    reader.releaseLock();
  }
}

/** A query string from the given fields, skipping empty ones. */
export function query(fields: Record<string, string | number | undefined>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}

/** Human text for any thrown value. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
