/**
 * Hash routes (`#/graph`, `#/decisions/<id>`…): the console is one page behind the access proxy,
 * so a route never reaches the server and a reload keeps the view. Pure: no DOM, no Preact.
 */

/** The pages, in the order of the navigation. */
export const PAGES = ['graph', 'decisions', 'people', 'devices', 'workloads', 'policy', 'anomalies'] as const;
export type PageName = (typeof PAGES)[number];

/** A parsed route: the page and the optional id after it (`#/devices/<id>`). */
export interface Route {
  page: PageName;
  id?: string;
}

/**
 * Parses a location hash; anything unknown is the default page, the graph.
 *
 * @example
 * parseRoute('#/decisions/01a2') // { page: 'decisions', id: '01a2' }
 */
export function parseRoute(hash: string): Route {
  const [, page, ...rest] = hash.replace(/^#/, '').split('/');
  const name = PAGES.find((p) => p === page) ?? 'graph';
  if (name !== page || rest.length === 0) return { page: name };
  let id: string;
  try {
    id = decodeURIComponent(rest.join('/'));
  } catch {
    // A mangled link (`%E0%A4`): show the page's list rather than fail.
    return { page: name };
  }
  return id ? { page: name, id } : { page: name };
}

/** The hash of a page (and id): `href` of a link. */
export function href(page: PageName, id?: string): string {
  return id === undefined ? `#/${page}` : `#/${page}/${encodeURIComponent(id)}`;
}

/** A graph window given in the route (`#/graph/<from ISO>..<to ISO>`), in epoch milliseconds. */
export interface GraphRange {
  from: number;
  to: number;
}

// A UTC or offset ISO-8601 time (`2026-12-01T00:00:00Z`, `…:00.000+01:00`): no bare dates, no local time.
const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):\d{2}(?::\d{2}(?:\.\d{1,3})?)?(?:Z|[+-]\d{2}:\d{2})$/;

/**
 * Parses a graph route's window: `<from>..<to>`, each an ISO-8601 time with a zone, `from` before
 * `to`. The server checks the rest (at most 31 days); an error here names the part at fault.
 *
 * @example
 * parseGraphRange('2026-11-30T00:00:00Z..2026-12-01T00:00:00Z') // { from: 1795996800000, to: 1796083200000 }
 */
export function parseGraphRange(text: string): GraphRange | { error: string } {
  if (text.length > 80) return { error: 'window: too long (give <from ISO time>..<to ISO time>)' };
  const parts = text.split('..');
  if (parts.length !== 2) return { error: 'window: give <from ISO time>..<to ISO time>' };
  const [a, b] = parts as [string, string];
  const time = (s: string) => {
    const m = ISO_TIME.exec(s);
    if (!m) return Number.NaN;
    // Date.parse rolls `02-30` over into March and takes `24:00`: refuse what the calendar lacks.
    const [y, mo, d, h] = [m[1], m[2], m[3], m[4]].map(Number) as [number, number, number, number];
    const day = new Date(Date.UTC(y, mo - 1, d));
    if (mo < 1 || mo > 12 || day.getUTCMonth() !== mo - 1 || day.getUTCDate() !== d || h > 23) return Number.NaN;
    return Date.parse(s);
  };
  const from = time(a);
  const to = time(b);
  if (Number.isNaN(from)) return { error: `window: from is not an ISO-8601 time with a zone: ${a}` };
  if (Number.isNaN(to)) return { error: `window: to is not an ISO-8601 time with a zone: ${b}` };
  if (from >= to) return { error: 'window: from must be before to' };
  return { from, to };
}

/** The hash of the graph over a fixed window: a link that shows the same edges tomorrow. */
export function graphRangeHref(r: GraphRange): string {
  return `#/graph/${new Date(r.from).toISOString()}..${new Date(r.to).toISOString()}`;
}
