/**
 * Where a browser goes after login: only a path on the proxy's own origin. Anything that a browser
 * could read as another origin (`//evil`, `/\evil`, a scheme, backslashes, control characters, an
 * encoded slash or backslash that decodes to one of those) falls back to `/`.
 *
 * @example safeReturnTo('/reports?q=1') // '/reports?q=1'
 * @example safeReturnTo('/%2F%2Fevil.example') // '/'
 */
export function safeReturnTo(raw: unknown): string {
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 2048) return '/';
  if (!raw.startsWith('/')) return '/';
  // Every decoding a browser or an app might apply must still be a plain path.
  let text = raw;
  for (let i = 0; i < 3; i++) {
    if (!isPlainPath(text)) return '/';
    let decoded: string;
    try {
      decoded = decodeURIComponent(text);
    } catch {
      return '/';
    }
    if (decoded === text) break;
    text = decoded;
  }
  if (!isPlainPath(text)) return '/';
  // Last word to the URL parser: the result must stay on the origin it is resolved against.
  const base = 'https://origin.invalid';
  try {
    if (new URL(raw, base).origin !== base) return '/';
  } catch {
    return '/';
  }
  return raw;
}

function isPlainPath(s: string): boolean {
  if (!s.startsWith('/') || s.startsWith('//')) return false;
  // Backslashes (browsers read them as slashes) and control characters (tabs and newlines are dropped).
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f || c === 0x5c) return false;
  }
  // A scheme anywhere in the path, e.g. `/redirect/https://evil`, is refused rather than guessed at.
  const path = s.split(/[?#]/, 1)[0] ?? '';
  return !/[A-Za-z][A-Za-z0-9+.-]*:/.test(path);
}
