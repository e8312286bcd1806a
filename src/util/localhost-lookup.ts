/**
 * A `dns.lookup` that answers `localhost` and every `*.localhost` name with the loopback address
 * itself, as RFC 6761 § 6.3 asks and browsers do; other names go to the system resolver. glibc
 * resolves only `localhost`, so without this a local setup (`nevertrust up`: `idp.localhost`,
 * `backoffice.localhost`) would need /etc/hosts edits. Pass it as `lookup` to net/tls/https
 * connections or an undici Agent's `connect`.
 *
 * @example
 * ```ts
 * const agent = new https.Agent({ ca, lookup: localhostLookup });
 * ```
 */
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';

type Callback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** True for `localhost` and names under it (any case, trailing dot allowed). */
export function isLocalhostName(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/\.$/, '');
  return h === 'localhost' || h.endsWith('.localhost');
}

export function localhostLookup(hostname: string, options: LookupOptions | number | Callback, cb?: Callback): void {
  const callback = (typeof options === 'function' ? options : cb) as Callback;
  const opts: LookupOptions =
    typeof options === 'object' ? options : typeof options === 'number' ? { family: options } : {};
  if (isLocalhostName(hostname)) {
    const v6 = opts.family === 6 || opts.family === 'IPv6';
    const address = v6 ? '::1' : '127.0.0.1';
    const family = v6 ? 6 : 4;
    if (opts.all) callback(null, [{ address, family }]);
    else callback(null, address, family);
    return;
  }
  dnsLookup(hostname, opts, callback as never);
}
