/**
 * Which field names hold secrets: the one predicate behind the logger's redaction and the audit
 * log's scrubbing. Names are matched by family, not from a list of spellings: case and separators
 * are normalized (`X-Api-Key`, `x_api_key`, `apiKey`, `APIKEY` are one name), and a name is secret
 * when it ENDS in a secret family — the last word says what the value is, so `api_key` is a secret
 * while `key_id`, `token_file` and `password_policy` are not.
 *
 * Families: token, secret, password/passwd/passphrase/pass/pwd, cookie, authorization, credential,
 * bearer, jwt, otp, kek; api key, private key, signing key, secret key, access key, session key,
 * encryption key, svid key, session id; a bare `key`. A trailing encoding word is looked through
 * (`private_key_pem`, `token_value`, `api_key_b64`).
 *
 * Deliberately NOT secret: `public_key`/`publicKey`, `key_id`/`keyId`/`kid`, `keys` (a JWKS is
 * public), `key_type`, `token_file`/`token_id`/`token_type`, `session` — identifiers and public
 * halves that the audit log needs to stay useful.
 */

// Families long enough to match as the ending of the joined name ("xapikey" ends in "apikey").
const ENDINGS = [
  'token',
  'tokens',
  'secret',
  'secrets',
  'password',
  'passwords',
  'passwd',
  'passphrase',
  'cookie',
  'cookies',
  'authorization',
  'credential',
  'credentials',
  'apikey',
  'privatekey',
  'signingkey',
  'secretkey',
  'accesskey',
  'sessionkey',
  'encryptionkey',
  'svidkey',
  'sessionid',
  'sessid',
];
// Short families: only as the whole last word, so that `rootpath` is not an `otp`.
const LAST_WORDS = new Set(['bearer', 'jwt', 'otp', 'kek', 'pass', 'pwd']);
// Words that say how a value is written, not what it is.
const ENCODINGS = new Set(['pem', 'der', 'jwk', 'b64', 'base64', 'hex', 'value', 'raw', 'data', 'bytes', 'encoded']);

/** Lower-case words of a field name: camelCase, `-`, `_`, `.` and spaces split words. */
function words(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w !== '');
}

function compute(name: string): boolean {
  const ws = words(name);
  while (ws.length > 1 && ENCODINGS.has(ws[ws.length - 1] as string)) ws.pop();
  if (ws.length === 0) return false;
  const last = ws[ws.length - 1] as string;
  if (LAST_WORDS.has(last)) return true;
  if (ws.length === 1 && last === 'key') return true;
  const joined = ws.join('');
  for (const e of ENDINGS) if (joined.endsWith(e)) return true;
  return false;
}

// Field names repeat (every decision record has the same few): remember answers, within a bound.
const cache = new Map<string, boolean>();

/**
 * True when a field of this name holds a secret and must not be logged or stored.
 *
 * @example
 * ```ts
 * isSecretKey('x-api-key');  // true
 * isSecretKey('accessKey');  // true
 * isSecretKey('key_id');     // false
 * isSecretKey('public_key'); // false
 * ```
 */
export function isSecretKey(name: string): boolean {
  let r = cache.get(name);
  if (r === undefined) {
    r = compute(name);
    if (cache.size >= 4096) cache.clear();
    cache.set(name, r);
  }
  return r;
}

export const REDACTED = '[redacted]';

/**
 * A copy of `value` in which every field with a secret name (at any depth of plain objects and
 * arrays) is replaced by `[redacted]`. Other objects (errors, buffers, class instances) are kept as
 * they are; cycles and depth beyond 10 are cut. Returns `value` itself when nothing was redacted.
 *
 * @example
 * ```ts
 * redactSecretFields({ headers: { 'x-api-key': 'k', accept: '*' } });
 * // { headers: { 'x-api-key': '[redacted]', accept: '*' } }
 * ```
 */
export function redactSecretFields<T>(value: T): T {
  return walk(value, 0, new WeakSet()) as T;
}

function isPlain(v: object): boolean {
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}

function walk(v: unknown, depth: number, seen: WeakSet<object>): unknown {
  if (v === null || typeof v !== 'object' || depth > 10 || seen.has(v)) return v;
  if (Array.isArray(v)) {
    seen.add(v);
    let out: unknown[] | undefined;
    v.forEach((x, i) => {
      const y = walk(x, depth + 1, seen);
      if (y !== x) {
        out ??= v.slice();
        out[i] = y;
      }
    });
    return out ?? v;
  }
  if (!isPlain(v)) return v;
  seen.add(v);
  let out: Record<string, unknown> | undefined;
  for (const [k, x] of Object.entries(v)) {
    const y = isSecretKey(k) ? REDACTED : walk(x, depth + 1, seen);
    if (y !== x) {
      out ??= { ...(v as Record<string, unknown>) };
      out[k] = y;
    }
  }
  return out ?? v;
}
