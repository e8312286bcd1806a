/**
 * Finding a request's route: the exact host (case-insensitive, port stripped), then the longest path
 * prefix that matches on a segment boundary of the normalized path. No default route: an unknown
 * host is never forwarded anywhere.
 */
import type { RouteConfig } from './config.js';

/** A route table built once from the config. */
export class RouteTable {
  /** Per host, its routes longest prefix first. */
  private readonly byHost = new Map<string, RouteConfig[]>();

  constructor(routes: readonly RouteConfig[]) {
    for (const r of routes) {
      const list = this.byHost.get(r.from.host) ?? [];
      list.push(r);
      this.byHost.set(r.from.host, list);
    }
    for (const list of this.byHost.values()) list.sort((a, b) => b.from.path_prefix.length - a.from.path_prefix.length);
  }

  /** Whether any route serves this host (already {@link hostOf}-normalized). */
  hasHost(host: string): boolean {
    return this.byHost.has(host);
  }

  /**
   * The route for a host and a **normalized** path; undefined when none matches.
   *
   * @example
   * ```ts
   * table.match('wiki.example.test', '/admin/users') // the `/admin` route, not `/ad`
   * ```
   */
  match(host: string, path: string): RouteConfig | undefined {
    const list = this.byHost.get(host);
    if (!list) return undefined;
    for (const r of list) if (underPrefix(path, r.from.path_prefix)) return r;
    return undefined;
  }
}

/** `/app` covers `/app` and `/app/…`, not `/application`. */
export function underPrefix(path: string, prefix: string): boolean {
  if (prefix === '/') return true;
  return path === prefix || (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 0x2f);
}

/**
 * The host a `Host` header names: lower case, port stripped; undefined when malformed (a bracketed
 * IPv6 literal is kept with its brackets, and never matches a route's DNS name).
 */
export function hostOf(header: string | undefined): string | undefined {
  if (!header || header.length > 255) return undefined;
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(header);
  return m?.[1]?.toLowerCase().replace(/\.$/, '');
}
