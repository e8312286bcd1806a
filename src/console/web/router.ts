/**
 * Hash routes (`#/graph`, `#/decisions/<id>`…): the console is one page behind the access proxy,
 * so a route never reaches the server and a reload keeps the view.
 */
import { useEffect, useState } from 'preact/hooks';

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
  const id = rest.length > 0 && name === page ? decodeURIComponent(rest.join('/')) : undefined;
  return id ? { page: name, id } : { page: name };
}

/** The hash of a page (and id): `href` of a link. */
export function href(page: PageName, id?: string): string {
  return id === undefined ? `#/${page}` : `#/${page}/${encodeURIComponent(id)}`;
}

/** The current route, following `hashchange`. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const on = () => setRoute(parseRoute(location.hash));
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}
