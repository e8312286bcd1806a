/**
 * The agent's connection to the server's agent port: TLS that trusts only the trust bundle and
 * accepts only the server's SPIFFE ID (not a hostname), presenting the agent SVID once it has one.
 */
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { Agent, request } from 'undici';
import { NevertrustError } from '../errors.js';

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

/** One TLS configuration; make a new client when the bundle or the agent SVID changes. */
export class ServerClient {
  private readonly dispatcher: Agent;
  constructor(readonly opts: ServerClientOptions) {
    const serverId = opts.serverId;
    this.dispatcher = new Agent({
      connect: {
        ca: opts.caPem,
        cert: opts.cert,
        key: opts.key,
        // Node verified the chain against `ca`; the name that matters is the SPIFFE ID.
        checkServerIdentity: (_host: string, cert: PeerCertificate) => {
          const uris = cert.subjectaltname
            ?.split(', ')
            .filter((s) => s.startsWith('URI:'))
            .map((s) => s.slice(4));
          if (uris?.length === 1 && uris[0] === serverId) return undefined;
          return new Error(`the server presented ${uris?.join(',') || 'no SPIFFE ID'}, expected ${serverId}`);
        },
      },
      keepAliveTimeout: 30_000,
    });
  }

  async call<T>(method: 'GET' | 'POST', path: string, body?: unknown, timeoutMs = 15_000): Promise<T> {
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
    if (res.statusCode >= 400) {
      const p = (parsed ?? {}) as { error?: string; message?: string };
      throw new ServerCallError(res.statusCode, p.error ?? 'error', p.message ?? text);
    }
    return parsed as T;
  }

  /** Opens the sync stream and yields each NDJSON message until it ends. */
  async *stream(path: string, signal: AbortSignal): AsyncGenerator<Record<string, unknown>> {
    const res = await request(`${this.opts.url}${path}`, {
      method: 'GET',
      dispatcher: this.dispatcher,
      signal,
      bodyTimeout: 60_000,
    });
    if (res.statusCode >= 400) {
      const text = await res.body.text();
      let p: { error?: string; message?: string } = {};
      try {
        p = JSON.parse(text) as typeof p;
      } catch {}
      throw new ServerCallError(res.statusCode, p.error ?? 'error', p.message ?? text);
    }
    let buf = '';
    for await (const chunk of res.body) {
      buf += (chunk as Buffer).toString('utf8');
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim()) yield JSON.parse(line) as Record<string, unknown>;
        nl = buf.indexOf('\n');
      }
    }
  }

  close(): Promise<void> {
    return this.dispatcher.close();
  }
}

/** notAfter of the first certificate of a PEM chain, ms. */
export function leafNotAfter(chainPem: string): number {
  return new Date(new X509Certificate(chainPem).validTo).getTime();
}
