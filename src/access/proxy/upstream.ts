/**
 * Connections to the apps: one keep-alive agent per route. Plain `http://` and `https://` apps are
 * reached as they are; a route with `to_spiffe_id` goes over mTLS with the proxy's SVID to a
 * nevertrust sidecar, which must present that SPIFFE ID before any byte is written.
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Duplex } from 'node:stream';
import { authorizeId, connectMtls, type X509SvidSource } from '../../pep/mtls/index.js';
import type { RouteConfig } from './config.js';

/** Where and how a route's requests go. */
export interface Upstream {
  protocol: 'http:' | 'https:';
  hostname: string;
  port: number;
  /** `host:port` as the app knows itself (the `Host` unless preserve_host). */
  authority: string;
  agent: HttpAgent;
}

const AGENT_OPTIONS = {
  keepAlive: true,
  keepAliveMsecs: 1000,
  maxSockets: 256,
  maxFreeSockets: 64,
  scheduling: 'lifo' as const,
};

/**
 * The upstream of a route.
 *
 * @example
 * ```ts
 * const up = upstreamFor(route, source);
 * request({ host: up.hostname, port: up.port, agent: up.agent, path, headers });
 * ```
 */
export function upstreamFor(route: RouteConfig, source: X509SvidSource): Upstream {
  const u = new URL(route.to);
  const protocol = u.protocol as Upstream['protocol'];
  const hostname = u.hostname.replace(/^\[|\]$/g, '');
  const port = Number(u.port) || (protocol === 'https:' ? 443 : 80);
  let agent: HttpAgent;
  if (route.to_spiffe_id) {
    const authorize = authorizeId(route.to_spiffe_id);
    const mtls = new HttpsAgent(AGENT_OPTIONS);
    // The agent's pooling with our own handshake: the sidecar's SVID is verified and its ID checked
    // before the request is written (node's callback form of createConnection).
    (mtls as unknown as { createConnection: unknown }).createConnection = (
      _o: unknown,
      cb: (e: Error | null, s?: Duplex) => void,
    ) => {
      connectMtls(source, { host: hostname, port, authorize, timeoutMs: 10_000 }).then(
        (s) => cb(null, s),
        (e: Error) => cb(e),
      );
      return undefined;
    };
    agent = mtls;
  } else agent = protocol === 'https:' ? new HttpsAgent(AGENT_OPTIONS) : new HttpAgent(AGENT_OPTIONS);
  return { protocol, hostname, port, authority: u.host, agent };
}
