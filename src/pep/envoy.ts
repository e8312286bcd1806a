/**
 * Envoy external authorization over gRPC (`envoy.service.auth.v3.Authorization/Check`), served
 * with `@grpc/grpc-js` from the field-compatible proto subset in `proto/envoy/`. The caller's
 * identity is `attributes.source.principal` — Envoy fills it from the verified client
 * certificate's URI SAN — or, when Envoy forwards it, the certificate itself, verified here.
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { AccessRequest } from '../policy/request.js';
import { type BundleSource, parseSpiffeId } from '../spiffe/index.js';
import { packageRoot } from '../util/package-root.js';
import { type EnforcedDecision, type DecisionRecorder, enforce, refuse, type SnapshotProvider } from './decision.js';
import { targetOf } from './http.js';
import { verifyForwardedCertificate } from './identity.js';
import { grpcPeerVerifier, svidServerCredentials } from './mtls/grpc.js';
import type { Authorizer, PeerAuthorizationError, X509SvidSource } from './mtls/index.js';

/** gRPC status codes used in `CheckResponse.status`. */
export const GRPC_OK = 0;
export const GRPC_PERMISSION_DENIED = 7;
export const GRPC_UNAUTHENTICATED = 16;

interface Peer {
  address?: { socket_address?: { address?: string; port_value?: number } } | null;
  service?: string;
  principal?: string;
  certificate?: string;
}

/** The parts of a `CheckRequest` nevertrust reads (proto-loader output with `keepCase`). */
export interface CheckRequest {
  attributes?: {
    source?: Peer | null;
    destination?: Peer | null;
    request?: {
      http?: {
        id?: string;
        method?: string;
        headers?: Record<string, string>;
        path?: string;
        host?: string;
      } | null;
    } | null;
    context_extensions?: Record<string, string>;
  } | null;
}

interface HeaderValueOption {
  header: { key: string; value: string };
  append?: { value: boolean };
}

/** `CheckResponse` as written to the wire. */
export interface CheckResponse {
  status: { code: number; message: string };
  denied_response?: { status: { code: number }; headers: HeaderValueOption[]; body: string };
  ok_response?: { headers: HeaderValueOption[]; headers_to_remove: string[] };
}

/** Options of {@link envoyCheck} and {@link startEnvoyAuthzServer}. */
export interface EnvoyCheckOptions {
  snapshot: SnapshotProvider;
  recorder?: DecisionRecorder;
  /** Verifies `source.certificate` when Envoy forwards it. */
  bundles?: () => BundleSource | undefined;
  /** Target when neither `destination.principal` nor `context_extensions.target` names one. */
  defaultTarget?: string;
}

/** Absolute path of the Envoy ext_authz proto subset. */
export function envoyProtoDir(): string {
  return join(packageRoot(), 'proto');
}

let pkgDef: grpc.GrpcObject | undefined;

/**
 * The loaded `envoy.service.auth.v3` package (for servers and for test clients).
 *
 * @example
 * ```ts
 * const Authorization = envoyAuthPackage().Authorization as grpc.ServiceClientConstructor;
 * ```
 */
export function envoyAuthPackage(): grpc.GrpcObject {
  if (!pkgDef) {
    const def = protoLoader.loadSync('envoy/service/auth/v3/external_auth.proto', {
      keepCase: true,
      longs: String,
      enums: String,
      defaults: false,
      oneofs: true,
      includeDirs: [envoyProtoDir()],
    });
    const root = grpc.loadPackageDefinition(def) as unknown as {
      envoy: { service: { auth: { v3: grpc.GrpcObject } } };
    };
    pkgDef = root.envoy.service.auth.v3;
  }
  return pkgDef;
}

function hv(key: string, value: string): HeaderValueOption {
  return { header: { key, value } };
}

function spiffeOrUndefined(s: string | undefined): string | undefined {
  if (!s?.startsWith('spiffe://')) return undefined;
  try {
    return parseSpiffeId(s).toString();
  } catch {
    return undefined;
  }
}

/**
 * Decides one `CheckRequest`: status 0 with `ok_response` (identity headers for the upstream)
 * allows; 7 (or 16 without an identity) with `denied_response` denies. Never throws.
 *
 * @example
 * ```ts
 * const res = envoyCheck({ attributes: { source: { principal: 'spiffe://example.org/ns/payments/sa/api-gateway' },
 *   destination: { principal: 'spiffe://example.org/ns/payments/sa/payment-service' },
 *   request: { http: { method: 'POST', path: '/v1/charges' } } } }, { snapshot: () => snap });
 * res.status.code; // 0
 * ```
 */
export function envoyCheck(req: CheckRequest, opts: EnvoyCheckOptions): CheckResponse {
  const a = req.attributes ?? {};
  const http = a.request?.http ?? {};
  const src = a.source ?? {};
  const ip = src.address?.socket_address?.address || undefined;
  const target =
    spiffeOrUndefined(a.destination?.principal) ?? a.context_extensions?.target ?? opts.defaultTarget ?? undefined;
  const request: AccessRequest = {
    target: targetOf(target),
    request: { method: http.method || undefined, path: http.path || undefined },
  };
  const ctx = { pep: 'envoy-grpc', ip, details: {} as Record<string, unknown> };
  let peerId: string | undefined;
  if (src.certificate) {
    const v = verifyForwardedCertificate(src.certificate, opts.bundles?.(), 'envoy-principal');
    if (v.kind !== 'ok') {
      const reason = v.kind === 'invalid' ? v.reason : 'no identity';
      return denied(refuse(reason, request, opts.recorder, ctx), GRPC_UNAUTHENTICATED);
    }
    peerId = v.spiffeId;
  } else if (src.principal) {
    peerId = spiffeOrUndefined(src.principal);
    if (!peerId) {
      return denied(
        refuse('principal_not_spiffe: source.principal is not a SPIFFE ID', request, opts.recorder, ctx),
        GRPC_UNAUTHENTICATED,
      );
    }
  }
  request.source = { spiffe_id: peerId, ip };
  const d = enforce(opts.snapshot, request, opts.recorder, ctx);
  if (!d.allow) return denied(d, peerId ? GRPC_PERMISSION_DENIED : GRPC_UNAUTHENTICATED);
  const headers = [hv('x-nevertrust-decision-id', d.decision_id)];
  if (peerId) headers.push(hv('x-nevertrust-peer-id', peerId));
  return {
    status: { code: GRPC_OK, message: '' },
    ok_response: { headers, headers_to_remove: [] },
  };
}

function denied(d: EnforcedDecision, code: number): CheckResponse {
  const httpStatus = code === GRPC_UNAUTHENTICATED ? 401 : 403;
  const error = code === GRPC_UNAUTHENTICATED ? 'unauthenticated' : 'forbidden';
  return {
    status: { code, message: error },
    denied_response: {
      status: { code: httpStatus },
      headers: [hv('content-type', 'application/json'), hv('x-nevertrust-decision-id', d.decision_id)],
      body: JSON.stringify({ error, decision_id: d.decision_id }),
    },
  };
}

/** A running ext_authz gRPC server. */
export interface EnvoyAuthzServer {
  readonly port: number;
  close(): Promise<void>;
}

/** mTLS for the ext_authz port: the server's SVID, and which callers (Envoy's SPIFFE IDs) may ask. */
export interface EnvoyAuthzTls {
  source: X509SvidSource;
  authorize: Authorizer;
}

/**
 * Serves `envoy.service.auth.v3.Authorization/Check` on its own port: with `tls`, over mTLS where
 * only authorized callers (Envoy) may ask — anyone else gets UNAUTHENTICATED or PERMISSION_DENIED,
 * recorded; without, in plaintext (loopback or a node-local address next to Envoy only).
 *
 * @example
 * ```ts
 * const s = await startEnvoyAuthzServer({ host: '127.0.0.1', port: 9191, snapshot: () => watcher.current });
 * await s.close();
 * ```
 */
export async function startEnvoyAuthzServer(
  opts: EnvoyCheckOptions & { host?: string; port: number; tls?: EnvoyAuthzTls },
): Promise<EnvoyAuthzServer> {
  const Authorization = envoyAuthPackage().Authorization as grpc.ServiceClientConstructor;
  const server = new grpc.Server();
  const callers = opts.tls ? grpcPeerVerifier(opts.tls.source, opts.tls.authorize) : undefined;
  server.addService(Authorization.service, {
    Check: (call: grpc.ServerUnaryCall<CheckRequest, CheckResponse>, cb: grpc.sendUnaryData<CheckResponse>) => {
      if (callers) {
        try {
          callers.verify(call);
        } catch (e) {
          const err = e as PeerAuthorizationError;
          refuse(`ext_authz caller refused: ${err.message}`, {}, opts.recorder, { pep: 'envoy-grpc' });
          const code =
            err.code === 'ERR_PEER_UNAUTHORIZED' ? grpc.status.PERMISSION_DENIED : grpc.status.UNAUTHENTICATED;
          return cb({ code, details: err.code });
        }
      }
      let res: CheckResponse;
      try {
        res = envoyCheck(call.request, opts);
      } catch (e) {
        // Fail closed on anything unexpected (malformed attributes included).
        res = denied(
          refuse(`internal: ${(e as Error).message}`, {}, opts.recorder, { pep: 'envoy-grpc' }),
          GRPC_PERMISSION_DENIED,
        );
      }
      cb(null, res);
    },
  });
  const host = opts.host ?? '127.0.0.1';
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `${host.includes(':') ? `[${host}]` : host}:${opts.port}`,
      opts.tls ? svidServerCredentials(opts.tls.source) : grpc.ServerCredentials.createInsecure(),
      (err, p) => (err ? reject(err) : resolve(p)),
    ),
  );
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        t.unref();
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      }),
  };
}
