/**
 * Low-level Workload API client on `@grpc/grpc-js`, with messages from `proto/workloadapi.proto`.
 * Every call carries `workload.spiffe.io: true`. {@link X509Source} and {@link JwtSource} build on it.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { splitDerChain } from '../spiffe/cert.js';
import {
  parseSpiffeId,
  type SpiffeId,
  spiffeIdFromCertificate,
  TrustBundle,
  type TrustDomain,
} from '../spiffe/index.js';
import { type EndpointAddress, resolveEndpoint } from './address.js';
import { workloadProtoPath } from './paths.js';
import { grpcErrorCode, NevertrustError } from '../errors.js';

/** Metadata key and value every Workload API call carries. */
export const WORKLOAD_API_HEADER = 'workload.spiffe.io';

/** A Workload API call failed; `code` is the gRPC status code (e.g. 7 PermissionDenied). */
export class WorkloadApiError extends NevertrustError<`ERR_WORKLOAD_API_${string}`> {
  override readonly name = 'WorkloadApiError';
  /** `ERR_WORKLOAD_API_<STATUS NAME>`, e.g. `ERR_WORKLOAD_API_PERMISSION_DENIED`. */
  readonly code: `ERR_WORKLOAD_API_${string}`;
  constructor(
    /** The gRPC status number the Workload API answered (e.g. 7, PERMISSION_DENIED). */
    readonly grpcCode: number,
    message: string,
  ) {
    const { code, status } = grpcErrorCode('ERR_WORKLOAD_API', grpcCode);
    super(message, { status });
    this.code = code;
  }
}

/** The Workload API answered something that is not a valid SVID or bundle. */
export class WorkloadResponseError extends NevertrustError<'ERR_WORKLOAD_RESPONSE'> {
  override readonly name = 'WorkloadResponseError';
  readonly code = 'ERR_WORKLOAD_RESPONSE';
  constructor(message: string) {
    super(message, { status: 502 });
  }
}

/** One X.509-SVID as a workload uses it. */
export interface X509Svid {
  spiffeId: SpiffeId;
  /** Leaf first. */
  certChain: X509Certificate[];
  certChainDer: Buffer[];
  /** The chain as PEM, leaf first (for `tls.createSecureContext({ cert })`). */
  certChainPem: string;
  privateKey: KeyObject;
  /** PKCS#8 PEM (for `tls.createSecureContext({ key })`). */
  privateKeyPem: string;
  hint: string;
  /** The leaf's notAfter. */
  expiresAt: Date;
}

/** One FetchX509SVID message, parsed. */
export interface X509Context {
  svids: X509Svid[];
  /** Own and federated trust bundles by trust domain name. */
  bundles: Map<string, TrustBundle>;
}

/** One validated JWT-SVID as ValidateJWTSVID returns it. */
export interface ValidatedJwtSvid {
  spiffeId: SpiffeId;
  claims: Record<string, unknown>;
}

/** A JWT-SVID from FetchJWTSVID. */
export interface JwtSvidToken {
  spiffeId: SpiffeId;
  token: string;
  hint: string;
  /** From the token's `exp` (not verified here: it came from the agent over a local socket). */
  expiresAt: Date;
  issuedAt: Date;
}

export interface WorkloadClientOptions {
  /** `unix:///path` or `tcp://ip:port`; default `SPIFFE_ENDPOINT_SOCKET`. */
  address?: string;
  /** Deadline of unary calls; default 10 s. */
  timeoutMs?: number;
}

type Cb = (err: grpc.ServiceError | null, res: unknown) => void;
interface GeneratedClient extends grpc.Client {
  FetchX509SVID(req: object, md: grpc.Metadata): grpc.ClientReadableStream<unknown>;
  FetchX509Bundles(req: object, md: grpc.Metadata): grpc.ClientReadableStream<unknown>;
  FetchJWTBundles(req: object, md: grpc.Metadata): grpc.ClientReadableStream<unknown>;
  FetchJWTSVID(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Cb): grpc.ClientUnaryCall;
  ValidateJWTSVID(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Cb): grpc.ClientUnaryCall;
}
type ClientCtor = new (target: string, creds: grpc.ChannelCredentials, opts?: grpc.ClientOptions) => GeneratedClient;

let ctor: ClientCtor | undefined;
function clientCtor(): ClientCtor {
  if (!ctor) {
    const def = protoLoader.loadSync(workloadProtoPath(), {
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    ctor = (grpc.loadPackageDefinition(def) as unknown as { SpiffeWorkloadAPI: ClientCtor }).SpiffeWorkloadAPI;
  }
  return ctor;
}

function metadata(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(WORKLOAD_API_HEADER, 'true');
  return md;
}

function apiError(e: grpc.ServiceError | Error): WorkloadApiError {
  const code = typeof (e as grpc.ServiceError).code === 'number' ? (e as grpc.ServiceError).code : grpc.status.UNKNOWN;
  return new WorkloadApiError(code, (e as grpc.ServiceError).details || e.message);
}

/** A cancellable subscription to a Workload API stream. */
export interface Watch {
  cancel(): void;
}

/**
 * The five Workload API RPCs over one grpc-js channel.
 *
 * @example
 * ```ts
 * const client = new WorkloadApiClient({ address: 'unix:///run/nevertrust/agent.sock' });
 * const [svid] = await client.fetchJwtSvid(['payments']);
 * client.close();
 * ```
 */
export class WorkloadApiClient {
  readonly endpoint: EndpointAddress;
  private readonly client: GeneratedClient;
  private readonly timeoutMs: number;

  constructor(opts: WorkloadClientOptions = {}) {
    this.endpoint = resolveEndpoint(opts.address);
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    const Ctor = clientCtor();
    this.client = new Ctor(this.endpoint.grpcTarget, grpc.credentials.createInsecure(), {
      // Local socket: reconnect quickly after an agent restart (our own backoff paces the calls).
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 2000,
    });
  }

  /**
   * Streams X.509 contexts: `onUpdate` for each valid message, `onEnd` once with the error that ended
   * the stream (WorkloadApiError) or a WorkloadResponseError for a message that does not parse.
   */
  watchX509Context(onUpdate: (ctx: X509Context) => void, onEnd: (err: Error) => void): Watch {
    return this.watch(this.client.FetchX509SVID({}, metadata()), parseX509Context, onUpdate, onEnd);
  }

  /** Streams JWT bundles (JWKS per trust domain). */
  watchJwtBundles(onUpdate: (b: Map<string, TrustBundle>) => void, onEnd: (err: Error) => void): Watch {
    return this.watch(this.client.FetchJWTBundles({}, metadata()), parseJwtBundles, onUpdate, onEnd);
  }

  /** Streams X.509 bundles per trust domain. */
  watchX509Bundles(onUpdate: (b: Map<string, TrustBundle>) => void, onEnd: (err: Error) => void): Watch {
    return this.watch(this.client.FetchX509Bundles({}, metadata()), parseX509Bundles, onUpdate, onEnd);
  }

  private watch<T>(
    stream: grpc.ClientReadableStream<unknown>,
    parse: (m: unknown) => T,
    onUpdate: (v: T) => void,
    onEnd: (err: Error) => void,
  ): Watch {
    let ended = false;
    const end = (err: Error) => {
      if (ended) return;
      ended = true;
      stream.cancel();
      onEnd(err);
    };
    stream.on('data', (m) => {
      if (ended) return;
      let v: T;
      try {
        v = parse(m);
      } catch (e) {
        end(e instanceof WorkloadResponseError ? e : new WorkloadResponseError((e as Error).message));
        return;
      }
      onUpdate(v);
    });
    stream.on('error', (e) => end(apiError(e)));
    stream.on('end', () => end(new WorkloadApiError(grpc.status.UNAVAILABLE, 'the Workload API ended the stream')));
    return {
      cancel: () => {
        ended = true;
        stream.cancel();
      },
    };
  }

  /** The first message of a stream, then cancels it. */
  private first<T>(start: (onUpdate: (v: T) => void, onEnd: (e: Error) => void) => Watch): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        w.cancel();
        reject(new WorkloadApiError(grpc.status.DEADLINE_EXCEEDED, 'no answer from the Workload API'));
      }, this.timeoutMs);
      const w = start(
        (v) => {
          clearTimeout(timer);
          w.cancel();
          resolve(v);
        },
        (e) => {
          clearTimeout(timer);
          reject(e);
        },
      );
    });
  }

  /** The current X.509 context (one FetchX509SVID message). */
  fetchX509Context(): Promise<X509Context> {
    return this.first((u, e) => this.watchX509Context(u, e));
  }

  /** The current JWT bundles by trust domain name. */
  fetchJwtBundles(): Promise<Map<string, TrustBundle>> {
    return this.first((u, e) => this.watchJwtBundles(u, e));
  }

  /** The current X.509 bundles by trust domain name. */
  fetchX509Bundles(): Promise<Map<string, TrustBundle>> {
    return this.first((u, e) => this.watchX509Bundles(u, e));
  }

  /**
   * JWT-SVIDs for `audience` (one per identity, or only `spiffeId`).
   *
   * @throws {WorkloadApiError}
   */
  fetchJwtSvid(audience: readonly string[] | string, spiffeId?: string): Promise<JwtSvidToken[]> {
    const aud = typeof audience === 'string' ? [audience] : [...audience];
    return new Promise((resolve, reject) => {
      this.client.FetchJWTSVID(
        { audience: aud, spiffe_id: spiffeId ?? '' },
        metadata(),
        { deadline: Date.now() + this.timeoutMs },
        (err, res) => {
          if (err) return reject(apiError(err));
          try {
            resolve(parseJwtSvids(res));
          } catch (e) {
            reject(e);
          }
        },
      );
    });
  }

  /**
   * Validates a JWT-SVID through the agent (ValidateJWTSVID).
   *
   * @throws {WorkloadApiError} grpcCode 3 (`ERR_WORKLOAD_API_INVALID_ARGUMENT`) for a token that does not validate
   */
  validateJwtSvid(token: string, audience: string): Promise<ValidatedJwtSvid> {
    return new Promise((resolve, reject) => {
      this.client.ValidateJWTSVID(
        { audience, svid: token },
        metadata(),
        { deadline: Date.now() + this.timeoutMs },
        (err, res) => {
          if (err) return reject(apiError(err));
          const r = res as { spiffe_id: string; claims?: unknown };
          try {
            resolve({ spiffeId: parseSpiffeId(r.spiffe_id), claims: structToJson(r.claims) });
          } catch (e) {
            reject(new WorkloadResponseError(`invalid ValidateJWTSVID response: ${(e as Error).message}`));
          }
        },
      );
    });
  }

  close(): void {
    this.client.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Parsing

function toBuffer(b: unknown, what: string): Buffer {
  if (Buffer.isBuffer(b)) return b;
  if (b instanceof Uint8Array) return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  throw new WorkloadResponseError(`${what} is not bytes`);
}

function certificates(der: Buffer, what: string): { ders: Buffer[]; certs: X509Certificate[] } {
  let ders: Buffer[];
  try {
    ders = splitDerChain(der);
  } catch (e) {
    throw new WorkloadResponseError(`${what}: not concatenated DER certificates (${(e as Error).message})`);
  }
  if (ders.length === 0) throw new WorkloadResponseError(`${what}: empty`);
  try {
    return { ders, certs: ders.map((d) => new X509Certificate(d)) };
  } catch (e) {
    throw new WorkloadResponseError(`${what}: invalid certificate (${(e as Error).message})`);
  }
}

function bundleFromDer(td: TrustDomain, der: Buffer, what: string): TrustBundle {
  return new TrustBundle({ trustDomain: td, x509Authorities: der.length === 0 ? [] : certificates(der, what).ders });
}

function trustDomainKey(key: string): TrustDomain {
  // Keys are the trust domain's SPIFFE ID (`spiffe://td`); accept a bare name too.
  return parseSpiffeId(key.startsWith('spiffe://') ? key : `spiffe://${key}`).trustDomain;
}

/**
 * Parses a FetchX509SVID message: each chain leaf first, the leaf's URI SAN equal to `spiffe_id`,
 * the PKCS#8 key matching the leaf, bundles as concatenated DER.
 *
 * @throws {WorkloadResponseError}
 */
export function parseX509Context(message: unknown): X509Context {
  const m = message as { svids?: unknown[]; federated_bundles?: Record<string, unknown> };
  const svids: X509Svid[] = [];
  const bundles = new Map<string, TrustBundle>();
  for (const [i, raw] of (m.svids ?? []).entries()) {
    const s = raw as { spiffe_id: string; x509_svid: unknown; x509_svid_key: unknown; bundle: unknown; hint?: string };
    let id: SpiffeId;
    try {
      id = parseSpiffeId(s.spiffe_id);
    } catch (e) {
      throw new WorkloadResponseError(`svids[${i}].spiffe_id: ${(e as Error).message}`);
    }
    const { ders, certs } = certificates(toBuffer(s.x509_svid, `svids[${i}].x509_svid`), `svids[${i}].x509_svid`);
    const leaf = certs[0] as X509Certificate;
    let leafId: SpiffeId;
    try {
      leafId = spiffeIdFromCertificate(leaf);
    } catch (e) {
      throw new WorkloadResponseError(
        `svids[${i}]: the first certificate is not an X.509-SVID leaf (${(e as Error).message})`,
      );
    }
    if (!leafId.equals(id)) {
      throw new WorkloadResponseError(`svids[${i}]: the leaf certificate is for ${leafId}, not ${id}`);
    }
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey({ key: toBuffer(s.x509_svid_key, 'key'), format: 'der', type: 'pkcs8' });
    } catch (e) {
      throw new WorkloadResponseError(
        `svids[${i}].x509_svid_key: not an unencrypted PKCS#8 key (${(e as Error).message})`,
      );
    }
    if (!leaf.checkPrivateKey(privateKey)) {
      throw new WorkloadResponseError(`svids[${i}]: the private key does not match the leaf certificate`);
    }
    const td = id.trustDomain;
    if (!bundles.has(td.name)) {
      bundles.set(td.name, bundleFromDer(td, toBuffer(s.bundle, 'bundle'), `svids[${i}].bundle`));
    }
    svids.push({
      spiffeId: id,
      certChain: certs,
      certChainDer: ders,
      certChainPem: certs.map((c) => c.toString()).join(''),
      privateKey,
      privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      hint: s.hint ?? '',
      expiresAt: new Date(leaf.validTo),
    });
  }
  if (svids.length === 0) throw new WorkloadResponseError('the response holds no SVID');
  for (const [key, der] of Object.entries(m.federated_bundles ?? {})) {
    const td = trustDomainKey(key);
    if (!bundles.has(td.name)) bundles.set(td.name, bundleFromDer(td, toBuffer(der, key), `federated_bundles[${key}]`));
  }
  return { svids, bundles };
}

function parseX509Bundles(message: unknown): Map<string, TrustBundle> {
  const out = new Map<string, TrustBundle>();
  for (const [key, der] of Object.entries((message as { bundles?: Record<string, unknown> }).bundles ?? {})) {
    const td = trustDomainKey(key);
    out.set(td.name, bundleFromDer(td, toBuffer(der, key), `bundles[${key}]`));
  }
  return out;
}

function parseJwtBundles(message: unknown): Map<string, TrustBundle> {
  const out = new Map<string, TrustBundle>();
  for (const [key, json] of Object.entries((message as { bundles?: Record<string, unknown> }).bundles ?? {})) {
    const td = trustDomainKey(key);
    try {
      out.set(td.name, TrustBundle.fromJwks(td, toBuffer(json, key).toString('utf8')));
    } catch (e) {
      throw new WorkloadResponseError(`bundles[${key}]: ${(e as Error).message}`);
    }
  }
  return out;
}

function parseJwtSvids(res: unknown): JwtSvidToken[] {
  const svids = (res as { svids?: { spiffe_id: string; svid: string; hint?: string }[] }).svids ?? [];
  return svids.map((s, i) => {
    const parts = s.svid.split('.');
    let claims: { exp?: unknown; iat?: unknown };
    try {
      claims = JSON.parse(Buffer.from(parts[1] ?? '', 'base64url').toString('utf8')) as typeof claims;
    } catch {
      throw new WorkloadResponseError(`svids[${i}]: not a compact JWS`);
    }
    if (parts.length !== 3 || typeof claims.exp !== 'number') {
      throw new WorkloadResponseError(`svids[${i}]: not a JWT-SVID with an exp claim`);
    }
    const exp = claims.exp * 1000;
    const iat = typeof claims.iat === 'number' ? claims.iat * 1000 : Date.now();
    return {
      spiffeId: parseSpiffeId(s.spiffe_id),
      token: s.svid,
      hint: s.hint ?? '',
      expiresAt: new Date(exp),
      issuedAt: new Date(iat),
    };
  });
}

/**
 * `google.protobuf.Struct` (as grpc-js/proto-loader decode it, with `oneofs: true`) → plain JSON.
 *
 * @example
 * ```ts
 * structToJson({ fields: { sub: { kind: 'stringValue', stringValue: 'spiffe://example.org/a' } } });
 * // { sub: 'spiffe://example.org/a' }
 * ```
 */
export function structToJson(struct: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const fields = (struct as { fields?: Record<string, unknown> } | null | undefined)?.fields ?? {};
  for (const [k, v] of Object.entries(fields)) out[k] = valueToJson(v);
  return out;
}

const VALUE_KINDS = ['nullValue', 'numberValue', 'stringValue', 'boolValue', 'structValue', 'listValue'] as const;

function valueToJson(v: unknown): unknown {
  const val = (v ?? {}) as Record<string, unknown>;
  const kind =
    typeof val.kind === 'string' ? val.kind : VALUE_KINDS.find((k) => val[k] !== undefined && val[k] !== null);
  switch (kind) {
    case 'numberValue':
      return Number(val.numberValue);
    case 'stringValue':
      return String(val.stringValue);
    case 'boolValue':
      return Boolean(val.boolValue);
    case 'structValue':
      return structToJson(val.structValue);
    case 'listValue':
      return ((val.listValue as { values?: unknown[] } | undefined)?.values ?? []).map(valueToJson);
    default:
      return null;
  }
}
