/**
 * The console's pure pieces, outside the browser: hash routes (including mangled and hostile
 * links), the evaluate form's request, the next CA rotation step checked against the CA's own
 * schedule (src/ca/rotation.ts), and the log verification's sentence. These modules are free of the DOM
 * and Preact on purpose: the page modules that use them are checked by the console's own tsconfig.
 */
import { describe, expect, it } from 'vitest';
import type { Generation } from '../../src/ca/generation.js';
import { advanceGenerations } from '../../src/ca/rotation.js';
import { nextRotation } from '../../src/console/web/ca-schedule.js';
import { requestOf } from '../../src/console/web/evaluate-request.js';
import { graphRangeHref, href, PAGES, parseGraphRange, parseRoute } from '../../src/console/web/routes.js';
import { verifyText } from '../../src/console/web/verify-report.js';

describe('hash routes', () => {
  it('defaults to the graph, for nothing, junk and unknown pages', () => {
    for (const h of ['', '#', '#/', '#/nope', '#nope', '#//graph', '#/GRAPH', '#/../people'])
      expect(parseRoute(h), h).toEqual({ page: 'graph' });
  });

  it('reads every page and the ids after decisions and devices', () => {
    for (const p of PAGES) expect(parseRoute(`#/${p}`)).toEqual({ page: p });
    expect(parseRoute('#/decisions/01a2-b3')).toEqual({ page: 'decisions', id: '01a2-b3' });
    expect(parseRoute('#/devices/')).toEqual({ page: 'devices' });
  });

  it('round-trips ids with slashes, hashes, spaces, quotes and unicode', () => {
    for (const id of ['a/b/c', 'x#y', 'with space', '"><img src=x>', 'dévice-🔒', '%41'])
      expect(parseRoute(href('devices', id))).toEqual({ page: 'devices', id });
  });

  it('shows the list for a mangled escape instead of failing', () => {
    expect(parseRoute('#/decisions/%E0%A4%A')).toEqual({ page: 'decisions' });
  });
});

describe('the graph window in the route', () => {
  const from = Date.UTC(2026, 10, 30);
  const to = Date.UTC(2026, 11, 1);

  it('reads #/graph/<from>..<to> as the graph page with the window as its id, in epoch ms', () => {
    const r = parseRoute('#/graph/2026-11-30T00:00:00Z..2026-12-01T00:00:00Z');
    expect(r).toEqual({ page: 'graph', id: '2026-11-30T00:00:00Z..2026-12-01T00:00:00Z' });
    expect(parseGraphRange(r.id as string)).toEqual({ from, to });
  });

  it('takes milliseconds, offsets and minutes-only times, and round-trips its own links', () => {
    expect(parseGraphRange('2026-11-30T01:00+01:00..2026-12-01T00:00:00.000Z')).toEqual({ from, to });
    const link = graphRangeHref({ from: from + 1, to });
    expect(parseGraphRange(parseRoute(link).id as string)).toEqual({ from: from + 1, to });
    // Escaped in a pasted link: parseRoute decodes it first.
    expect(parseGraphRange(parseRoute('#/graph/2026-11-30T00%3A00%3A00Z..2026-12-01T00%3A00Z').id as string)).toEqual({
      from,
      to,
    });
  });

  it('refuses a window backwards or empty, naming why', () => {
    expect(parseGraphRange('2026-12-01T00:00:00Z..2026-11-30T00:00:00Z')).toEqual({
      error: 'window: from must be before to',
    });
    expect(parseGraphRange('2026-12-01T00:00:00Z..2026-12-01T00:00:00Z')).toHaveProperty('error');
  });

  it('refuses times without a zone, impossible dates, numbers, junk and oversized text', () => {
    const bad = [
      '',
      '..',
      '2026-11-30..2026-12-01',
      '2026-11-30T00:00:00..2026-12-01T00:00:00',
      '2026-02-30T00:00:00Z..2026-03-05T00:00:00Z',
      '2026-13-01T00:00:00Z..2026-12-01T00:00:00Z',
      '2026-11-30T24:00:00Z..2026-12-01T00:00:00Z',
      '2026-11-30T00:00:00+25:00..2026-12-01T00:00:00Z',
      '1795996800000..1796083200000',
      '2026-11-30T00:00:00Z..2026-12-01T00:00:00Z..2026-12-02T00:00:00Z',
      '2026-11-30T00:00:00Z',
      '<script>..</script>',
      `2026-11-30T00:00:00Z..2026-12-01T00:00:00Z${' '.repeat(100)}`,
    ];
    for (const t of bad) expect(parseGraphRange(t), t).toHaveProperty('error');
    expect(parseGraphRange('2026-11-30T00:00:00Z..tomorrow')).toEqual({
      error: 'window: to is not an ISO-8601 time with a zone: tomorrow',
    });
  });
});

describe('the evaluate form', () => {
  it('sends the decision API request with only the fields given', () => {
    expect(
      requestOf({
        source: 'spiffe://example.org/ns/a/sa/b',
        user: '',
        mfa: 'on',
        target: '',
        service: 'pay',
        method: 'POST',
        path: '/v1/charges',
      }),
    ).toEqual({
      source: { spiffe_id: 'spiffe://example.org/ns/a/sa/b', mfa: true },
      target: { service: 'pay' },
      request: { method: 'POST', path: '/v1/charges' },
    });
    expect(requestOf({ source: '', method: '', path: '' })).toEqual({});
  });
});

describe('the next CA rotation step', () => {
  const H = 3_600_000;
  const gen = (id: string, status: Generation['status'], notBefore: number, notAfter: number) =>
    ({
      id,
      status,
      notBefore,
      notAfter,
      x509Published: true,
      jwtPublished: true,
      x509LastExpiry: 0,
      jwtLastExpiry: 0,
    }) as Generation;
  const wire = (gens: Generation[]) =>
    gens.map((g) => ({
      id: g.id,
      status: g.status,
      notBefore: new Date(g.notBefore).toISOString(),
      notAfter: new Date(g.notAfter).toISOString(),
    }));
  const advance = (gens: Generation[], t: number) =>
    advanceGenerations(
      gens.map((g) => ({ ...g })),
      t,
      false,
      {
        newGeneration: (at) => gen('next', 'prepared', at, at + 24 * H),
        retired: () => {},
      },
    );

  it('is the moment the CA itself prepares, then activates, the next generation', () => {
    const t0 = Date.UTC(2026, 11, 7, 12);
    const active = [gen('g1', 'active', t0, t0 + 24 * H)];
    const prep = nextRotation(wire(active));
    expect(prep?.step).toMatch(/prepare/);
    const at = Date.parse(prep?.at ?? '');
    expect(advance(active, at - 1).changed).toBe(false);
    expect(advance(active, at).changed).toBe(true);

    const both = [gen('g1', 'active', t0, t0 + 24 * H), gen('g2', 'prepared', t0 + 12 * H, t0 + 36 * H)];
    const act = nextRotation(wire(both));
    expect(act?.step).toMatch(/activate/);
    const when = Date.parse(act?.at ?? '');
    expect(advance(both, when - 1).gens.find((g) => g.id === 'g2')?.status).toBe('prepared');
    expect(advance(both, when).gens.find((g) => g.id === 'g2')?.status).toBe('active');
  });

  it('has no step without an active generation', () => {
    expect(nextRotation([])).toBeNull();
  });
});

describe('the verification report', () => {
  it('says what a failed verification found', () => {
    const text = verifyText({
      ok: false,
      treeSize: 10,
      headSize: 10,
      root: 'ab'.repeat(32),
      checkpointsChecked: 2,
      externalCheckpointsChecked: 0,
      segmentsChecked: 0,
      indexChecked: true,
      unverifiedRanges: [],
      firstBad: { index: 4, kind: 'changed', message: 'leaf 4 differs' },
      badCheckpoints: [{ tree_size: 8, source: 'database', message: 'bad signature' }],
    });
    expect(text).toMatch(/^NOT intact: 10 events/);
    expect(text).toContain('first problem at event 4 (changed): leaf 4 differs');
    expect(text).toContain('1 bad checkpoints');
  });
});
