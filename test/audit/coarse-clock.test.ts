/**
 * The coarse clock agrees with the wall clock (the thread refreshes it every millisecond; the bound
 * here is loose because shared machines stall threads), moves forward, and answers with Date.now()
 * when no thread runs.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { acquireCoarseClock, coarseClockState, coarseNow, releaseCoarseClock } from '../../src/audit/coarse-clock.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

afterEach(() => {
  for (let i = 0; i < 4; i++) releaseCoarseClock();
});

describe('coarse clock', () => {
  it('is Date.now() when nobody holds it', () => {
    const before = Date.now();
    const t = coarseNow();
    expect(t).toBeGreaterThanOrEqual(before);
    expect(t).toBeLessThanOrEqual(Date.now());
  });

  it('follows the wall clock while held, and moves forward', async () => {
    expect(coarseClockState()).toBe('off');
    acquireCoarseClock();
    for (let i = 0; i < 100 && coarseClockState() !== 'running'; i++) await sleep(20);
    // readings come from the thread, not from the Date.now() fallback
    expect(coarseClockState()).toBe('running');
    for (let i = 0; i < 5; i++) {
      const wall = Date.now();
      const t = coarseNow();
      expect(Number.isInteger(t)).toBe(true);
      expect(Math.abs(t - wall)).toBeLessThan(1000);
      await sleep(100);
      expect(coarseNow()).toBeGreaterThan(t);
    }
  });

  it('keeps running until the last holder releases it, and works again after', async () => {
    acquireCoarseClock();
    acquireCoarseClock();
    releaseCoarseClock();
    await sleep(30);
    expect(Math.abs(coarseNow() - Date.now())).toBeLessThan(1000);
    releaseCoarseClock();
    releaseCoarseClock(); // one release too many changes nothing
    expect(coarseClockState()).toBe('off');
    expect(Math.abs(coarseNow() - Date.now())).toBeLessThan(5);
    acquireCoarseClock();
    await sleep(30);
    expect(Math.abs(coarseNow() - Date.now())).toBeLessThan(1000);
  });
});
