/**
 * Selectors say which processes an entry applies to: `type:value`, e.g. `unix:uid:1000`,
 * `unix:sha256:<hex>`. One parser for the server (validating entries) and the agent (matching callers).
 */

export interface Selector {
  type: string;
  value: string;
}

export class SelectorError extends Error {
  readonly code = 'ERR_SELECTOR';
  constructor(message: string) {
    super(message);
    this.name = 'SelectorError';
  }
}

/** Known unix selector kinds and what their value must look like. Unknown kinds of known types are refused. */
const UNIX_RULES: Record<string, { test: RegExp; example: string }> = {
  uid: { test: /^\d{1,10}$/, example: 'unix:uid:1000' },
  gid: { test: /^\d{1,10}$/, example: 'unix:gid:1000' },
  user: { test: /^[a-z_][a-z0-9_.-]{0,63}\$?$/i, example: 'unix:user:www-data' },
  group: { test: /^[a-z_][a-z0-9_.-]{0,63}\$?$/i, example: 'unix:group:www-data' },
  supplementary_gid: { test: /^\d{1,10}$/, example: 'unix:supplementary_gid:27' },
  supplementary_group: { test: /^[a-z_][a-z0-9_.-]{0,63}\$?$/i, example: 'unix:supplementary_group:docker' },
  path: { test: /^\/[^\0]{0,4095}$/, example: 'unix:path:/usr/bin/node' },
  sha256: { test: /^[0-9a-f]{64}$/, example: 'unix:sha256:<64 lowercase hex>' },
};

const TYPE = /^[a-z][a-z0-9_-]{0,31}$/;

/**
 * Parses and validates one selector.
 *
 * @example parseSelector('unix:uid:1000') // { type: 'unix', value: 'uid:1000' }
 */
export function parseSelector(text: string): Selector {
  const i = text.indexOf(':');
  if (i <= 0) throw new SelectorError(`selector "${text}" must be type:value (e.g. unix:uid:1000)`);
  const type = text.slice(0, i);
  const value = text.slice(i + 1);
  if (!TYPE.test(type))
    throw new SelectorError(`selector "${text}": type "${type}" must be lowercase letters, digits, _ or -`);
  if (value.length === 0) throw new SelectorError(`selector "${text}" has an empty value`);
  if (value.length > 4200) throw new SelectorError(`selector "${text.slice(0, 40)}…" is too long`);
  if (type === 'unix') {
    const j = value.indexOf(':');
    const kind = j > 0 ? value.slice(0, j) : value;
    const rule = UNIX_RULES[kind];
    if (!rule) {
      throw new SelectorError(
        `selector "${text}": unknown unix selector "${kind}" (known: ${Object.keys(UNIX_RULES).join(', ')})`,
      );
    }
    const v = j > 0 ? value.slice(j + 1) : '';
    if (!rule.test.test(v))
      throw new SelectorError(`selector "${text}": malformed value for unix:${kind} (e.g. ${rule.example})`);
  }
  return { type, value };
}

export function formatSelector(s: Selector): string {
  return `${s.type}:${s.value}`;
}

/** An entry applies to a caller when ALL of the entry's selectors are in the caller's set. */
export function selectorsMatch(entrySelectors: readonly string[], callerSelectors: ReadonlySet<string>): boolean {
  if (entrySelectors.length === 0) return false;
  for (const s of entrySelectors) if (!callerSelectors.has(s)) return false;
  return true;
}
