/**
 * The Workload API endpoint address (spiffe/spiffe `standards/SPIFFE_Workload_Endpoint.md` §4):
 * `unix:///path` (or `unix:/path`) or `tcp://<ip>:<port>`, usually from `SPIFFE_ENDPOINT_SOCKET`.
 */
import { isIP } from 'node:net';
import { NevertrustError } from '../errors.js';

/** The environment variable SPIFFE clients read the endpoint from. */
export const SPIFFE_ENDPOINT_SOCKET = 'SPIFFE_ENDPOINT_SOCKET';

/** Thrown for a missing or malformed endpoint address. */
export class EndpointAddressError extends NevertrustError<'ERR_WORKLOAD_ADDRESS'> {
  override readonly name = 'EndpointAddressError';
  readonly code = 'ERR_WORKLOAD_ADDRESS';
  constructor(message: string) {
    super(message, { status: 400 });
  }
}

/** A parsed endpoint, with the target string `@grpc/grpc-js` understands. */
export interface EndpointAddress {
  kind: 'unix' | 'tcp';
  /** Socket path (unix) or `ip:port` (tcp). */
  location: string;
  /** Target for a grpc-js channel: `unix:///path`, `ipv4:1.2.3.4:80` or `ipv6:[::1]:80`. */
  grpcTarget: string;
}

/**
 * Parses an endpoint address strictly, as the SPIFFE Workload Endpoint standard specifies.
 *
 * @example
 * ```ts
 * parseEndpointAddress('unix:///run/nevertrust/agent.sock').grpcTarget; // 'unix:///run/nevertrust/agent.sock'
 * parseEndpointAddress('tcp://127.0.0.1:8082').grpcTarget;              // 'ipv4:127.0.0.1:8082'
 * ```
 * @throws {EndpointAddressError}
 */
export function parseEndpointAddress(address: string): EndpointAddress {
  const bad = (why: string): never => {
    throw new EndpointAddressError(`Workload API address ${JSON.stringify(address)}: ${why}`);
  };
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    return bad('not a URI (expected unix:///path or tcp://ip:port)');
  }
  if (url.search || url.hash || address.includes('?') || address.includes('#'))
    bad('query and fragment are not allowed');
  if (url.username || url.password) bad('user info is not allowed');
  if (url.protocol === 'unix:') {
    if (url.host) bad('a unix address has no authority; use unix:///absolute/path');
    const path = decodeURIComponent(url.pathname);
    if (!path.startsWith('/') || path === '/') bad('a unix address needs an absolute socket path');
    return { kind: 'unix', location: path, grpcTarget: `unix://${path}` };
  }
  if (url.protocol === 'tcp:') {
    if (url.pathname && url.pathname !== '/' && url.pathname !== '') bad('a tcp address has no path');
    if (!url.port) bad('a tcp address needs a port');
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const v = isIP(host);
    if (v === 0) bad('a tcp address needs an IP address, not a host name');
    return {
      kind: 'tcp',
      location: `${v === 6 ? `[${host}]` : host}:${url.port}`,
      grpcTarget: v === 6 ? `ipv6:[${host}]:${url.port}` : `ipv4:${host}:${url.port}`,
    };
  }
  return bad('the scheme must be unix or tcp');
}

/**
 * The endpoint from `explicit`, else from `SPIFFE_ENDPOINT_SOCKET`.
 *
 * @example
 * ```ts
 * resolveEndpoint(); // reads process.env.SPIFFE_ENDPOINT_SOCKET
 * ```
 * @throws {EndpointAddressError} when neither is set or the address is malformed
 */
export function resolveEndpoint(explicit?: string, env: NodeJS.ProcessEnv = process.env): EndpointAddress {
  const addr = explicit ?? env[SPIFFE_ENDPOINT_SOCKET];
  if (!addr) {
    throw new EndpointAddressError(
      `no Workload API address: pass one or set ${SPIFFE_ENDPOINT_SOCKET} (e.g. unix:///run/nevertrust/agent.sock)`,
    );
  }
  return parseEndpointAddress(addr);
}
