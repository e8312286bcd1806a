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
