/**
 * Repeated refusals aggregate with an exact count and real timers: the first at once, the rest of
 * the window as one record when it ends, a steady flood one record per window, a spray of callers
 * bounded, and flush() leaving nothing uncounted.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { OTHER_CALLERS, RefusalAggregator } from '../../src/audit/refusals.js';

function collecting(windowMs: number, maxKeys?: number) {
  const records: { event: string; repeated: number }[] = [];
  const agg = new RefusalAggregator<string>({
    windowMs,
    maxKeys,
    record: (event, repeated) => records.push({ event, repeated }),
  });
  return { agg, records };
}

describe('RefusalAggregator', () => {
  it('records the first refusal at once and the rest of the window as one record with their count', async () => {
    const { agg, records } = collecting(1000);
    expect(agg.refused('ip-1\nbad token', 'first')).toBe(true);
    for (let i = 0; i < 999; i++) expect(agg.refused('ip-1\nbad token', `later-${i}`)).toBe(false);
    expect(records).toEqual([{ event: 'first', repeated: 0 }]);
    expect(agg.pending()).toBe(999);
    await sleep(1300);
    expect(records).toEqual([
      { event: 'first', repeated: 0 },
      { event: 'first', repeated: 999 },
    ]);
    // A quiet window ends the run: the next refusal is recorded at once again.
    await sleep(1300);
    expect(agg.refused('ip-1\nbad token', 'again')).toBe(true);
    expect(records.at(-1)).toEqual({ event: 'again', repeated: 0 });
    agg.flush();
  });

  it('a steady flood costs one record per window and the counts add up exactly', async () => {
    const { agg, records } = collecting(50);
    let sent = 0;
    const until = Date.now() + 300;
    while (Date.now() < until) {
      for (let i = 0; i < 100; i++) agg.refused('k', 'e');
      sent += 100;
      await sleep(5);
    }
    agg.flush();
    const counted = records.reduce((n, r) => n + (r.repeated === 0 ? 1 : r.repeated), 0);
    expect(counted).toBe(sent);
    expect(records.filter((r) => r.repeated === 0)).toHaveLength(1);
    expect(records.length).toBeLessThan(20);
  });

  it('callers beyond maxKeys are counted together; flush() records every pending count', () => {
    const { agg, records } = collecting(10_000, 3);
    for (let i = 0; i < 100; i++) agg.refused(`caller-${i}`, `e-${i}`);
    // Three callers recorded; the 97 others as one run (its first recorded, 96 counted).
    expect(records).toHaveLength(4);
    expect(agg.pending()).toBe(96);
    agg.flush();
    expect(records.at(-1)).toEqual({ event: 'e-3', repeated: 96 });
    expect(agg.pending()).toBe(0);
    expect(OTHER_CALLERS).toContain('other');
  });
});
