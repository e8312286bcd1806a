/**
 * One error taxonomy: every error class in src/ extends NevertrustError (directly or through another
 * of ours), so every error has a stable ERR_ code and an HTTP status, and dispatch() maps them all
 * alike. Only src/errors.ts itself extends Error.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = resolve(import.meta.dirname, '../../src');

function* tsFiles(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* tsFiles(p);
    else if (p.endsWith('.ts')) yield p;
  }
}

describe('one error base', () => {
  it('no class in src/ but NevertrustError extends a built-in Error type', () => {
    const offenders: string[] = [];
    for (const file of tsFiles(SRC)) {
      const rel = relative(SRC, file);
      if (rel === 'errors.ts') continue;
      for (const m of readFileSync(file, 'utf8').matchAll(/class\s+(\w+)[^{]*?\bextends\s+(\w*Error)\b/g)) {
        if (/^(Error|TypeError|RangeError|SyntaxError)$/.test(m[2] as string))
          offenders.push(`${rel}: ${m[1]} extends ${m[2]}`);
      }
    }
    expect(offenders).toEqual([]);
  });

  it('the base shows a message below 500 and hides it from 500 on (the default)', async () => {
    const errors = await import('../../src/errors.js');
    class Probe extends errors.NevertrustError<'ERR_PROBE_X'> {
      override readonly name = 'Probe';
      readonly code = 'ERR_PROBE_X';
    }
    const p = new Probe('m', { status: 404 });
    expect(p).toBeInstanceOf(Error);
    expect(errors.isNevertrustError(p)).toBe(true);
    expect([p.status, p.expose]).toEqual([404, true]);
    expect(new Probe('m').expose).toBe(false); // 500 by default: internal, never shown
  });
});
