/**
 * Clipping, so that what we record about a hostile request is stored instead of refused: a 16 KB
 * path or reason is cut to the schema's limit (marked with `…`), and an event whose canonical form
 * is still over the size limit (escaped control characters take six bytes each, bulky `details`)
 * has its longest strings halved until it fits. Only for events our own code builds (decisions,
 * refusals, server events); events from outside are refused with a reason instead (the caller
 * must know).
 */
import { AuditEventTooLargeError } from './errors.js';
import { type AuditEvent, DEFAULT_MAX_EVENT_BYTES, normalizeEvent } from './event.js';

/** The mark at the end of a clipped string. */
export const CLIP_MARK = '…';

/**
 * `s` within `max` UTF-16 units, ending in {@link CLIP_MARK} when cut.
 *
 * @example
 * clipText('/a'.repeat(9000), 2048)!.length // 2048
 */
export function clipText(s: string | undefined, max: number): string | undefined {
  return s === undefined || s.length <= max ? s : `${s.slice(0, Math.max(0, max - 1))}${CLIP_MARK}`;
}

type Slot = { holder: Record<string, unknown>; key: string };

/** Copies the strings the event carries (top-level text, source, target, details), collecting their slots. */
function copyWithSlots(v: unknown, slots: Slot[], depth: number): unknown {
  if (depth > 17 || v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) {
    const out = v.map((x) => copyWithSlots(x, slots, depth + 1));
    for (let i = 0; i < out.length; i++) {
      if (typeof out[i] === 'string') slots.push({ holder: out as unknown as Record<string, unknown>, key: String(i) });
    }
    return out;
  }
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    out[k] = copyWithSlots(x, slots, depth + 1);
    // Identifiers and the kind are short by schema and must stay exact.
    if (typeof x === 'string' && !(depth === 0 && (k === 'kind' || k.endsWith('id') || k === 'outcome'))) {
      slots.push({ holder: out, key: k });
    }
  }
  return out;
}

/**
 * Normalizes an event our own code built, clipping it to fit `maxBytes` instead of refusing it for
 * size: the longest string is halved (and marked) until the canonical form fits. Returns undefined
 * when even clipping cannot make it fit (e.g. thousands of `details` keys); other faults (a
 * malformed event) throw as {@link normalizeEvent} does.
 *
 * @example
 * const e = normalizeClipped({ kind: 'access.decision', reason: '\u0001'.repeat(2000), target: { path: '\u0001'.repeat(2000) } }, { maxBytes: 16384 });
 */
export function normalizeClipped(
  input: unknown,
  opts: { maxBytes?: number; now?: number } = {},
): { event: AuditEvent; clipped: boolean } | undefined {
  try {
    return { event: normalizeEvent(input, opts), clipped: false };
  } catch (err) {
    if (!(err instanceof AuditEventTooLargeError)) throw err;
  }
  const slots: Slot[] = [];
  const copy = copyWithSlots(input, slots, 0);
  const limit = opts.maxBytes ?? DEFAULT_MAX_EVENT_BYTES;
  // Each pass halves the longest string: a few dozen passes at most, and only for oversized events.
  for (let pass = 0; pass < 64; pass++) {
    let longest: Slot | undefined;
    let len = 0;
    for (const s of slots) {
      const n = (s.holder[s.key] as string).length;
      if (n > len) {
        len = n;
        longest = s;
      }
    }
    if (!longest || len <= 16) return undefined;
    longest.holder[longest.key] = clipText(longest.holder[longest.key] as string, Math.floor(len / 2));
    try {
      return { event: normalizeEvent(copy, { ...opts, maxBytes: limit }), clipped: true };
    } catch (err) {
      if (!(err instanceof AuditEventTooLargeError)) throw err;
    }
  }
  return undefined;
}
