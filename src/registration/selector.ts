/**
 * Selectors say which processes an entry applies to: `type:value`, e.g. `unix:uid:1000`,
 * `unix:sha256:<hex>`. One grammar for the server (validating entries) and the agent (attesting and
 * matching callers). Unknown types and malformed values are refused: a selector that could never be
 * produced by attestation would silently match nothing.
 */
import { NevertrustError } from '../errors.js';

/** A selector: `type:value`, e.g. type `unix`, value `uid:1000`. */
export interface Selector {
  readonly type: string;
  readonly value: string;
}

export type SelectorErrorCode = 'ERR_SELECTOR_MALFORMED' | 'ERR_SELECTOR_UNKNOWN_TYPE' | 'ERR_SELECTOR_INVALID_VALUE';

/** Thrown by {@link parseSelector} for a selector that is not well formed. */
export class SelectorError extends NevertrustError<SelectorErrorCode> {
  override readonly name = 'SelectorError';
  constructor(
    readonly code: SelectorErrorCode,
    message: string,
  ) {
    super(message, { status: 400 });
  }
}

/** The unix selector keys (SPIRE's names). */
export const UNIX_SELECTOR_KEYS = [
  'uid',
  'gid',
  'user',
  'group',
  'supplementary_gid',
  'supplementary_group',
  'path',
  'sha256',
] as const;
export type UnixSelectorKey = (typeof UNIX_SELECTOR_KEYS)[number];

const TYPE_RE = /^[a-z][a-z0-9_-]*$/;
export const NUMERIC_RE = /^(0|[1-9][0-9]{0,9})$/;
const SHA256_RE = /^[0-9a-f]{64}$/;
// POSIX-portable names plus what real systems use (dots, trailing $ for machine accounts).
export const NAME_RE = /^[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?$/;
const MAX_SELECTOR_LENGTH = 4096;

export interface ParseSelectorOptions {
  /** Selector types accepted; default `['unix']`. Anything else is rejected (fail closed). */
  types?: readonly string[];
}

/**
 * Parses `type:value` strictly. For `unix`: `uid`/`gid`/`supplementary_gid` are decimal ids
 * (≤ 4294967295), `user`/`group`/`supplementary_group` are account names, `path` is an absolute,
 * normalised path, `sha256` is 64 lowercase hex digits.
 *
 * @example
 * ```ts
 * parseSelector('unix:uid:1000');            // { type: 'unix', value: 'uid:1000' }
 * parseSelector('unix:path:/usr/bin/node');  // { type: 'unix', value: 'path:/usr/bin/node' }
 * parseSelector('unix:uid:-1');              // throws SelectorError ERR_SELECTOR_INVALID_VALUE
 * ```
 * @throws {SelectorError}
 */
export function parseSelector(text: string, opts: ParseSelectorOptions = {}): Selector {
  if (typeof text !== 'string' || text.length === 0) {
    throw new SelectorError('ERR_SELECTOR_MALFORMED', 'a selector must be a non-empty string of the form type:value');
  }
  if (text.length > MAX_SELECTOR_LENGTH) {
    throw new SelectorError('ERR_SELECTOR_MALFORMED', `selector is longer than ${MAX_SELECTOR_LENGTH} characters`);
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(text)) {
    throw new SelectorError('ERR_SELECTOR_MALFORMED', `selector ${JSON.stringify(text)} contains control characters`);
  }
  const i = text.indexOf(':');
  if (i <= 0 || i === text.length - 1) {
    throw new SelectorError(
      'ERR_SELECTOR_MALFORMED',
      `selector ${JSON.stringify(text)} must be type:value, e.g. unix:uid:1000`,
    );
  }
  const type = text.slice(0, i);
  const value = text.slice(i + 1);
  if (!TYPE_RE.test(type)) {
    throw new SelectorError('ERR_SELECTOR_MALFORMED', `selector type ${JSON.stringify(type)} is not a lowercase name`);
  }
  const types = opts.types ?? ['unix'];
  if (!types.includes(type)) {
    throw new SelectorError(
      'ERR_SELECTOR_UNKNOWN_TYPE',
      `selector type ${JSON.stringify(type)} is not supported (supported: ${types.join(', ')})`,
    );
  }
  if (type === 'unix') checkUnixValue(text, value);
  return { type, value };
}

function checkUnixValue(text: string, value: string): void {
  const j = value.indexOf(':');
  const key = j < 0 ? value : value.slice(0, j);
  const v = j < 0 ? '' : value.slice(j + 1);
  const bad = (why: string): never => {
    throw new SelectorError('ERR_SELECTOR_INVALID_VALUE', `selector ${JSON.stringify(text)}: ${why}`);
  };
  if (!(UNIX_SELECTOR_KEYS as readonly string[]).includes(key)) {
    bad(`unknown unix selector ${JSON.stringify(key)} (expected one of ${UNIX_SELECTOR_KEYS.join(', ')})`);
  }
  if (j < 0 || v.length === 0) bad(`unix:${key} needs a value, e.g. unix:${key}:${exampleFor(key)}`);
  switch (key as UnixSelectorKey) {
    case 'uid':
    case 'gid':
    case 'supplementary_gid':
      if (!NUMERIC_RE.test(v) || Number(v) > 0xffffffff) bad(`${key} must be a decimal id between 0 and 4294967295`);
      break;
    case 'user':
    case 'group':
    case 'supplementary_group':
      if (v.length > 256 || !NAME_RE.test(v)) bad(`${key} must be an account name (letters, digits, . _ -)`);
      break;
    case 'path':
      if (!v.startsWith('/')) bad('path must be absolute');
      if (v.split('/').some((seg, idx) => seg === '.' || seg === '..' || (seg === '' && idx > 0))) {
        bad('path must be normalised (no //, . or .. segments, no trailing /)');
      }
      break;
    case 'sha256':
      if (!SHA256_RE.test(v)) bad('sha256 must be 64 lowercase hexadecimal digits');
      break;
  }
}

function exampleFor(key: string): string {
  if (key === 'path') return '/usr/bin/app';
  if (key === 'sha256') return '<64 hex digits>';
  if (key.endsWith('gid') || key === 'uid') return '1000';
  return 'name';
}

/**
 * The canonical text of a selector, `type:value`.
 *
 * @example
 * ```ts
 * formatSelector({ type: 'unix', value: 'uid:0' }); // 'unix:uid:0'
 * ```
 */
export function formatSelector(s: Selector): string {
  return `${s.type}:${s.value}`;
}

/**
 * True when an entry applies to a caller: ALL of the entry's selectors are among the caller's.
 * An entry with no selectors matches nobody (fail closed: it would otherwise match every process).
 *
 * @example
 * ```ts
 * entryMatches([parseSelector('unix:uid:1000')], await attestUnix(peer)); // true for uid 1000
 * ```
 */
export function entryMatches(
  entrySelectors: readonly Selector[],
  callerSelectors: readonly Selector[] | ReadonlySet<string>,
): boolean {
  if (entrySelectors.length === 0) return false;
  const have =
    callerSelectors instanceof Set
      ? (callerSelectors as ReadonlySet<string>)
      : new Set((callerSelectors as readonly Selector[]).map(formatSelector));
  return entrySelectors.every((s) => have.has(formatSelector(s)));
}

/** String-form variant of {@link entryMatches} for stored entries (`["unix:uid:1000", …]`). */
export function selectorsMatch(entrySelectors: readonly string[], callerSelectors: ReadonlySet<string>): boolean {
  if (entrySelectors.length === 0) return false;
  for (const s of entrySelectors) if (!callerSelectors.has(s)) return false;
  return true;
}
