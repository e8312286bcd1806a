/**
 * Decision ids are UUIDv7 (RFC 9562): unique, with the current time in their first 48 bits, so ids
 * made later sort later and the audit log's decision index grows at its right edge.
 */
import { describe, expect, it } from 'vitest';
import { newDecisionId } from '../../src/pep/decision.js';

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const msOf = (id: string) => Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16);

describe('newDecisionId', () => {
  it('makes unique UUIDv7s carrying the current time', () => {
    const before = Date.now();
    const ids = Array.from({ length: 20_000 }, () => newDecisionId());
    const after = Date.now();
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) {
      expect(id).toMatch(V7);
      // the clock the recorder uses may be up to a few ms behind the wall clock
      expect(msOf(id)).toBeGreaterThanOrEqual(before - 1000);
      expect(msOf(id)).toBeLessThanOrEqual(after);
    }
  });

  it('sorts ids made later after earlier ones', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      ids.push(newDecisionId());
      await new Promise((r) => setTimeout(r, 3));
    }
    expect([...ids].sort()).toEqual(ids);
  });
});
