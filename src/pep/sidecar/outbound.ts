/**
 * The outbound leg: the app speaks plain HTTP to a local egress port and names the service it wants
 * in `Host`; the sidecar originates mTLS with the workload's SVID, checks that the server is the
 * SPIFFE ID configured for that service before sending a byte, and streams both ways. WebSocket
 * handshakes are passed through the same verified connection and then tunnelled.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { authorizeId, connectMtls, createMtlsAgent, type X509SvidSource } from '../mtls/index.js';
import { type OutboundConfig, splitHostPort } from './config.js';
import { forwardHeaders, JSON_TYPE, requestHead } from './headers.js';
import type { RunningLeg } from './inbound.js';
import { listen } from '../../util/listen.js';
import { splice, writeRawResponse } from './tunnel.js';

/** The reason code for a failed origination: a refused server is not the same as a missing one. */
function failureCode(e: Error): 'peer_rejected' | 'bad_gateway' {
  return /authoriz|SVID|certificate/i.test(e.message) ? 'peer_rejected' : 'bad_gateway';
}

/**
 * Starts the egress listener.
 *
 * @example
 * ```ts
 * const leg = await startOutbound(config.outbound, source, log);
 * ```
 */
export async function startOutbound(
  ob: OutboundConfig,
  source: X509SvidSource,
  log: (msg: string, fields?: Record<string, unknown>) => void,
): Promise<RunningLeg> {
  const services = new Map(
    Object.entries(ob.services).map(([name, svc]) => [
      name,
      {
        ...svc,
        ...splitHostPort(svc.address),
        agent: createMtlsAgent(source, {
          authorize: authorizeId(svc.spiffe_id),
          agent: { headersTimeout: ob.timeout_ms, bodyTimeout: ob.timeout_ms },
        }),
      },
    ]),
  );
  const serviceOf = (req: IncomingMessage) => services.get((req.headers.host ?? '').replace(/:\d+$/, ''));

  const server: Server = createHttpServer((req, res) => {
    const svc = serviceOf(req);
    if (!svc) {
      req.resume();
      res.writeHead(502, JSON_TYPE).end('{"error":"unknown_service"}');
      return;
    }
    const headers = forwardHeaders(req.headers, { stripIdentity: true });
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    svc.agent
      .request({
        origin: `https://${svc.address}`,
        path: req.url ?? '/',
        method: (req.method ?? 'GET') as 'GET',
        headers: headers as Record<string, string>,
        body: hasBody ? req : undefined,
      })
      .then(
        (ur) => {
          res.writeHead(ur.statusCode, forwardHeaders(ur.headers, { stripIdentity: false }));
          ur.body.pipe(res);
        },
        (e: Error) => {
          log('outbound request failed', { service: svc.spiffe_id, error: e.message });
          if (!res.headersSent) res.writeHead(502, JSON_TYPE).end(JSON.stringify({ error: failureCode(e) }));
          else res.destroy();
        },
      );
  });

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const svc = serviceOf(req);
    if (!svc) return writeRawResponse(socket, 502, JSON_TYPE, '{"error":"unknown_service"}');
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket')
      return writeRawResponse(socket, 400, JSON_TYPE, '{"error":"unsupported_upgrade"}');
    connectMtls(source, {
      host: svc.host,
      port: svc.port,
      authorize: authorizeId(svc.spiffe_id),
      timeoutMs: ob.timeout_ms,
    }).then(
      (tls) => {
        const headers = forwardHeaders(req.headers, { stripIdentity: true, keepUpgrade: true });
        let handshake: string;
        try {
          handshake = requestHead(req.method ?? 'GET', req.url ?? '/', headers);
        } catch (e) {
          tls.destroy();
          log('outbound WebSocket refused: a header cannot be written', { error: (e as Error).message });
          writeRawResponse(socket, 400, JSON_TYPE, '{"error":"unrepresentable_header"}');
          return;
        }
        tls.write(handshake, 'latin1');
        if (head.length > 0) tls.write(head);
        splice(socket, tls);
      },
      (e: Error) => {
        log('outbound WebSocket failed', { service: svc.spiffe_id, error: e.message });
        writeRawResponse(socket, 502, JSON_TYPE, JSON.stringify({ error: failureCode(e) }));
      },
    );
  });

  server.keepAliveTimeout = 60_000;
  const port = await listen(server, splitHostPort(ob.listen));
  log('sidecar outbound (plain HTTP → mTLS) listening', { port });
  return {
    port,
    close: async () => {
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeIdleConnections();
      });
      for (const s of services.values()) await s.agent.close();
    },
  };
}
