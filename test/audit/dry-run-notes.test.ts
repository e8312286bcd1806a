/**
 * Dry-run notes in a decision event: bounded so the event stays within the log's size limit, names
 * clipped, the enforcement point's own details left as they were.
 */
import { describe, expect, it } from 'vitest';
import { decisionEvent, withDryRunNotes } from '../../src/audit/decision-event.js';
import { normalizeEvent } from '../../src/audit/index.js';

describe('dry-run notes of a decision event', () => {
  it('keeps eight notes, counts the rest, clips names, leaves the site details alone', () => {
    const site = { pep: 'decide-api', details: { identity: 'xfcc' } };
    const notes = Array.from({ length: 11 }, (_, i) => ({
      policy: `p${i}-${'x'.repeat(2000)}`,
      rule: i % 2 ? null : 'r',
      decision: 'deny' as const,
      changed: true,
    }));
    const details = withDryRunNotes(site.details, notes);
    expect(site.details).toEqual({ identity: 'xfcc' });
    expect(details.identity).toBe('xfcc');
    expect(details.dry_run_omitted).toBe(3);
    const kept = details.dry_run as { policy: string; rule: string | null }[];
    expect(kept).toHaveLength(8);
    expect(kept.every((n) => n.policy.length <= 256)).toBe(true);
    expect(kept[1]?.rule).toBeNull();

    // The worst case still makes a storable event (16 KiB), with the longest request fields there are.
    const long = 'a'.repeat(5000);
    const e = decisionEvent(
      { decision_id: 'd', policy: 'p'.repeat(256), rule: 'r'.repeat(256), reason: long, version: 'v' },
      {
        source: { spiffe_id: `spiffe://example.org/${long}`, user: long },
        target: { spiffe_id: `spiffe://example.org/${long}` },
        request: { path: `/${long}`, method: 'GET' },
      },
      { ...site, details },
      'deny',
    );
    expect(() => normalizeEvent(e)).not.toThrow();
  });
});
