/**
 * The agent's connection to the server's agent port: TLS that trusts only the trust bundle and
 * accepts only the server's SPIFFE ID (not a hostname), presenting the agent SVID once it has one.
 */
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { Agent, request } from 'undici';
import { NevertrustError } from '../errors.js';
import type { z } from 'zod';
import { errorBodySchema } from './fields.js';
import { parseWire } from './parse.js';

export class ServerCallError extends NevertrustError<'ERR_SERVER_CALL_REFUSED'> {
  override readonly name = 'ServerCallError';
  readonly code = 'ERR_SERVER_CALL_REFUSED';
  constructor(
    /** The server's HTTP status. */
    status: number,
    /** The server's wire reason, e.g. `agent_banned`. */
    readonly error: string,
    message: string,
  ) {
    super(message, { status });
  }

  override get reason(): string {
    return this.error;
  }
}

export interface ServerClientOptions {
  /** `https://127.0.0.1:8081` */
  url: string;
  /** PEM of the CA certificates to trust (the bundle). */
  caPem: string;
  /** The SPIFFE ID the server must present, e.g. `spiffe://example.org/nevertrust/server`. */
  serverId: string;
  /** Agent SVID (chain PEM) and key PEM; absent before attestation. */
  cert?: string;
  key?: string;
}

/**
 * A TLS `checkServerIdentity` that accepts exactly one URI SAN, `serverId`: Node verified the chain
 * against `ca`; the name that matters is the SPIFFE ID, not the host.
 */
export function serverIdentityCheck(serverId: string): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    const uris = cert.subjectaltname
      ?.split(', ')
      .filter((s) => s.startsWith('URI:'))
      .map((s) => s.slice(4));
    if (uris?.length === 1 && uris[0] === serverId) return undefined;
    return new Error(`the server presented ${uris?.join(',') || 'no SPIFFE ID'}, expected ${serverId}`);
  };
}

/** One TLS configuration; make a new client when the bundle or the agent SVID changes. */
export class ServerClient {
  private readonly dispatcher: Agent;
  constructor(readonly opts: ServerClientOptions) {
    this.dispatcher = new Agent({
      connect: {
        ca: opts.caPem,
        cert: opts.cert,
        key: opts.key,
        checkServerIdentity: serverIdentityCheck(opts.serverId),
      },
      keepAliveTimeout: 30_000,
    });
  }

  /**
   * Sends `body` as JSON and returns the answer parsed by `schema` (its contract in src/api/); an
   * answer that does not fit throws `WireFormatError` naming the field.
   *
   * @example
   * ```ts
   * const r = await client.call('POST', '/agent/v1/jwt', { entry_id, audience }, jwtSvidSchema);
   * ```
   */
  async call<S extends z.ZodType>(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    schema: S,
    timeoutMs = 15_000,
  ): Promise<z.output<S>> {
    const res = await request(`${this.opts.url}${path}`, {
      method,
      dispatcher: this.dispatcher,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const text = await res.body.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (res.statusCode >= 400) throw callError(res.statusCode, parsed, text);
    return parseWire(schema, parsed, `${method} ${path}`);
  }

  /**
   * Opens the sync stream and yields each NDJSON line, parsed as JSON, until it ends; the caller
   * checks each against its contract (src/api/sync.ts), so one bad message need not end the stream.
   */
  async *stream(path: string, signal: AbortSignal): AsyncGenerator<unknown> {
    const res = await request(`${this.opts.url}${path}`, {
      method: 'GET',
      dispatcher: this.dispatcher,
      signal,
      bodyTimeout: 60_000,
    });
    if (res.statusCode >= 400) {
      const text = await res.body.text();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {}
      throw callError(res.statusCode, parsed, text);
    }
    let buf = '';
    for await (const chunk of res.body) {
      buf += (chunk as Buffer).toString('utf8');
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim()) yield JSON.parse(line) as unknown;
        nl = buf.indexOf('\n');
      }
    }
  }

  close(): Promise<void> {
    return this.dispatcher.close();
  }
}

/** A refusal: the server's `{error, message}` when it sent one, else its status and text. */
function callError(status: number, parsed: unknown, text: string): ServerCallError {
  const body = errorBodySchema.partial().safeParse(parsed);
  const p = body.success ? body.data : {};
  return new ServerCallError(status, p.error ?? 'error', p.message ?? text);
}

/** notAfter of the first certificate of a PEM chain, ms. */
export function leafNotAfter(chainPem: string): number {
  return new Date(new X509Certificate(chainPem).validTo).getTime();
}
