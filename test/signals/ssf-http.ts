/**
 * A test SSF transmitter over real HTTP (node:http) with its own ES256 key: discovery at
 * `/.well-known/ssf-configuration`, its JWKS, stream creation and status, and an RFC 8936 poll
 * endpoint fed by `queue()`. `mint` signs any claims and header, so tests can forge too.
 */
import { generateKeyPairSync, type KeyObject, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, SignJWT } from 'jose';

export interface HttpTransmitter {
  issuer: string;
  privateKey: KeyObject;
  /** Requests it got: `POST /stream` bodies, `POST /poll` bodies, Authorization headers. */
  streamRequests: unknown[];
  polls: Array<{ maxEvents?: number; ack?: string[]; setErrs?: Record<string, { err: string }> }>;
  authorizations: string[];
  /** SETs handed out by the poll endpoint until acked or refused. */
  queue(jti: string, set: string): void;
  pending(): string[];
  mint(
    claims: Record<string, unknown>,
    header?: Record<string, unknown>,
    key?: KeyObject | Uint8Array,
  ): Promise<string>;
  close(): Promise<void>;
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

export async function startHttpTransmitter(audience: string): Promise<HttpTransmitter> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'http-tx-1', alg: 'ES256', use: 'sig' };
  const queued = new Map<string, string>();
  const streamRequests: unknown[] = [];
  const polls: HttpTransmitter['polls'] = [];
  const authorizations: string[] = [];
  let issuer = '';
  const server: Server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const json = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (req.headers.authorization) authorizations.push(req.headers.authorization);
      if (req.method === 'GET' && url.pathname === '/.well-known/ssf-configuration')
        return json(200, {
          spec_version: '1_0',
          issuer,
          jwks_uri: `${issuer}/jwks`,
          delivery_methods_supported: ['urn:ietf:rfc:8935', 'urn:ietf:rfc:8936'],
          configuration_endpoint: `${issuer}/stream`,
          status_endpoint: `${issuer}/status`,
        });
      if (req.method === 'GET' && url.pathname === '/jwks') return json(200, { keys: [jwk] });
      if (req.method === 'POST' && url.pathname === '/stream') {
        const body = (await readBody(req)) as { delivery: { method: string; endpoint_url?: string } };
        streamRequests.push(body);
        return json(201, {
          stream_id: 'stream-1',
          iss: issuer,
          aud: audience,
          delivery:
            body.delivery.method === 'urn:ietf:rfc:8936'
              ? { method: body.delivery.method, endpoint_url: `${issuer}/poll` }
              : body.delivery,
          events_delivered: [],
        });
      }
      if (req.method === 'GET' && url.pathname === '/status')
        return json(200, { stream_id: url.searchParams.get('stream_id'), status: 'enabled' });
      if (req.method === 'POST' && url.pathname === '/poll') {
        const body = (await readBody(req)) as HttpTransmitter['polls'][number];
        polls.push(body);
        for (const jti of body.ack ?? []) queued.delete(jti);
        for (const jti of Object.keys(body.setErrs ?? {})) queued.delete(jti);
        const sets = Object.fromEntries([...queued].slice(0, body.maxEvents ?? 100));
        return json(200, { sets, moreAvailable: false });
      }
      json(404, { error: 'not_found' });
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    issuer,
    privateKey,
    streamRequests,
    polls,
    authorizations,
    queue: (jti, set) => void queued.set(jti, set),
    pending: () => [...queued.keys()],
    async mint(claims, header = {}, key = privateKey) {
      const payload: Record<string, unknown> = {
        iss: issuer,
        aud: audience,
        iat: Math.floor(Date.now() / 1000),
        jti: randomUUID(),
        ...claims,
      };
      for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k];
      return new SignJWT(payload)
        .setProtectedHeader({ alg: 'ES256', typ: 'secevent+jwt', kid: 'http-tx-1', ...header } as never)
        .sign(key);
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
