/**
 * OS signal: `/etc/os-release` (os-release(5)) and the kernel release (`uname -r`, which is
 * `os.release()`: the same uname(2) call without a process).
 */
import { readFile } from 'node:fs/promises';
import { release } from 'node:os';
import type { PostureOs } from '../../../api/index.js';
import { clip } from './exec.js';

const MAX_OS_RELEASE_BYTES = 64 * 1024;

/** One os-release value: unquotes "…" and '…' and the shell escapes os-release(5) allows. */
function unquote(raw: string): string | undefined {
  const v = raw.trim();
  if (v.startsWith('"') || v.startsWith("'")) {
    const q = v[0] as string;
    if (v.length < 2 || !v.endsWith(q)) return undefined;
    const inner = v.slice(1, -1);
    return q === '"' ? inner.replace(/\\([\\$"`])/g, '$1') : inner;
  }
  return /^[^\s"'`$\\]*$/.test(v) ? v : undefined;
}

/**
 * Parses os-release text. Never throws: text with no usable NAME/ID gives an unknown OS with a reason.
 *
 * @example
 * ```ts
 * parseOsRelease('NAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n');
 * // { name: 'Debian GNU/Linux', version: '12', id: 'debian' }
 * ```
 */
export function parseOsRelease(text: string): PostureOs {
  const vars = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (!m) continue;
    const value = unquote(m[2] as string);
    if (value !== undefined) vars.set(m[1] as string, value);
  }
  const name = vars.get('NAME') || vars.get('PRETTY_NAME');
  const id = vars.get('ID');
  if (!name && !id) return { name: null, version: null, id: null, reason: 'os-release has no NAME or ID' };
  const version = vars.get('VERSION_ID') || vars.get('VERSION') || vars.get('BUILD_ID');
  // os-release(5): NAME defaults to "Linux" and ID to "linux" when absent.
  return {
    name: clip(name || 'Linux'),
    version: version ? clip(version) : null,
    id: clip(id || 'linux'),
    ...(version ? {} : { reason: 'os-release has no VERSION_ID (a rolling release?)' }),
  };
}

/** Reads /etc/os-release, else /usr/lib/os-release (its documented fallback). */
export async function collectOs(files = ['/etc/os-release', '/usr/lib/os-release']): Promise<PostureOs> {
  const errors: string[] = [];
  for (const f of files) {
    try {
      const buf = await readFile(f);
      return parseOsRelease(buf.subarray(0, MAX_OS_RELEASE_BYTES).toString('utf8'));
    } catch (e) {
      errors.push(`${f}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'}`);
    }
  }
  return { name: null, version: null, id: null, reason: clip(`no os-release (${errors.join(', ')})`) };
}

/** The running kernel's release, as `uname -r` prints it; null if empty. */
export function collectKernel(): string | null {
  const r = release().trim();
  return r ? clip(r) : null;
}
