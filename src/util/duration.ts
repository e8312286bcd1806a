/**
 * Durations as people write them in config files and flags: `90s`, `5m`, `1h`, `24h`, `7d`, `1h30m`,
 * or a bare number of seconds.
 *
 * @example parseDuration('1h30m') // 5400
 */
import { z } from 'zod';

const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;

export function parseDuration(text: string | number): number {
  if (typeof text === 'number') {
    if (!Number.isFinite(text) || text < 0)
      throw new Error(`duration must be a non-negative number of seconds, got ${text}`);
    return text;
  }
  const s = text.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  PART.lastIndex = 0;
  let total = 0;
  let consumed = 0;
  for (let m = PART.exec(s); m !== null; m = PART.exec(s)) {
    total += Number(m[1]) * (UNIT_SECONDS[m[2] ?? 's'] ?? 1);
    consumed = PART.lastIndex;
  }
  if (s.length === 0 || consumed !== s.length) {
    throw new Error(`"${text}" is not a duration (examples: 90s, 5m, 1h, 1h30m, 7d)`);
  }
  return total;
}

/** Inverse of parseDuration for display: 5400 → `1h30m`. */
export function formatDuration(seconds: number): string {
  if (seconds === 0) return '0s';
  let rest = Math.round(seconds);
  let out = '';
  for (const [unit, size] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}

/**
 * A duration field of a config file (`"1h30m"` or seconds), parsed to seconds; a bad one is an issue
 * on that field. The one zod form of {@link parseDuration}, for every config schema.
 *
 * @example z.object({ idle_lifetime: durationSchema.default(3600) })
 */
export const durationSchema = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});
