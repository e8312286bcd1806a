/**
 * The SPIFFE Workload API (spiffe/spiffe `standards/SPIFFE_Workload_API.md`) served by the agent on
 * a Unix socket. The agent supplies a {@link WorkloadResolver} (identities per selector set, bundles,
 * JWT-SVID minting, change events); this module attests callers and speaks the protocol.
 *
 * Choices, where the standard leaves room (SPIRE's behaviour unless noted):
 * - Every RPC first requires the metadata `workload.spiffe.io: true` (else INVALID_ARGUMENT), then
 *   attests the caller from SO_PEERCRED + /proc. A caller that cannot be attested, or is entitled to
 *   no identity, gets PERMISSION_DENIED — on all five RPCs, bundles and validation included: the
 *   bundles a caller sees are those of its identities' trust domains and their federated domains.
 * - Streams send the full current state at once and again on every resolver `change` that alters
 *   what this caller would receive (identical states are not re-sent). A stream whose caller has no
 *   identity left (its entry was deleted) ends with PERMISSION_DENIED, as SPIRE does.
 * - Attestation happens once per call: a stream keeps the selectors of the process that opened it.
 * - ValidateJWTSVID failures are INVALID_ARGUMENT with the reason (SPIRE does the same).
 * - The socket file is mode 0777: any uid must be able to connect, because authorization is by
 *   attestation, not by file mode. Its directory must belong to the agent and not be writable by
 *   others (else another user could replace the socket); the server refuses such a directory.
 */
import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import protobuf from 'protobufjs';
import type { JWTPayload } from 'jose';
import {
  bundleSet,
  JwtSvidError,
  parseSpiffeId,
  type SpiffeId,
  SpiffeIdError,
  TrustBundle,
  validateJwtSvid,
} from '../spiffe/index.js';
import { workloadProtoPath } from '../workload/paths.js';
import {
  type CallContext,
  GrpcError,
  GrpcServer,
  type GrpcServerOptions,
  type ListenAddress,
  type MethodDefinition,
  Status,
} from './grpc/index.js';
import type { PeerCredentials } from './peercred.js';
import { type Selector, UnixAttestor } from './unix-attestor.js';

/** The metadata key every Workload API call must carry with the value `true`. */
export const WORKLOAD_API_HEADER = 'workload.spiffe.io';

/** One identity a workload is entitled to, with its current X.509-SVID. */
export interface WorkloadIdentity {
  /** `spiffe://td/path`. */
  spiffeId: string;
  /** DER certificates, the leaf (the SVID) first, then intermediates. */
  x509Chain: readonly Uint8Array[];
  /** Unencrypted PKCS#8 DER private key of the leaf. */
  privateKeyPkcs8: Uint8Array;
  /** Operator guidance when a workload has several identities (registration entry `hint`). */
  hint?: string;
  /** Trust domains (names, `example.org`) whose bundles this workload also gets (`federated_bundles`). */
  federatesWith?: readonly string[];
}

/**
 * What the agent gives the Workload API. The agent owns registration entries, keys, rotation and
 * caching; this interface is how the server asks for the current state.
 *
 * @example
 * ```ts
 * class AgentResolver extends EventEmitter implements WorkloadResolver {
 *   identitiesFor(selectors) { return this.cache.entries.filter((e) => entryMatches(e.selectors, selectors)).map(…); }
 *   bundles() { return [this.cache.bundle, ...this.cache.federated]; }
 *   mintJwtSvid(spiffeId, audience) { return this.jwtCache.get(spiffeId, audience); }
 * }
 * // after a rotation, a bundle update or an entry change:
 * resolver.emit('change');
 * ```
 */
export interface WorkloadResolver {
  /** The identities whose entry selectors are all in `selectors` (see `entryMatches`), with current SVIDs. */
  identitiesFor(selectors: readonly Selector[]): readonly WorkloadIdentity[] | Promise<readonly WorkloadIdentity[]>;
  /** Every trust bundle the agent holds: its own trust domain's and federated ones (X.509 and JWT authorities). */
  bundles(): readonly TrustBundle[];
  /**
   * A JWT-SVID for `spiffeId` (one the caller is entitled to) and `audience` (non-empty). The agent
   * caches per (identity, audiences) and refreshes before expiry.
   */
  mintJwtSvid(spiffeId: string, audience: readonly string[]): Promise<string>;
  /**
   * The trust domain's CRLs of revoked X.509-SVIDs (DER), sent in the `crl` fields (issue #23);
   * none when the agent has not fetched them (or has no such resolver).
   */
  crls?(): readonly Uint8Array[];
  /** `change`: identities, SVIDs or bundles changed (rotation, entry change, bundle update). */
  on(event: 'change', listener: () => void): unknown;
  off(event: 'change', listener: () => void): unknown;
}

/** Attests the caller of one RPC; throws to deny. */
export type WorkloadAttestor = (peer: PeerCredentials | undefined, peerError: Error | undefined) => Promise<Selector[]>;

// ---------------------------------------------------------------------------------------------
// Messages (spec field names, as protobufjs decodes them with keepCase)

export interface X509SVIDMessage {
  spiffe_id: string;
  x509_svid: Uint8Array;
  x509_svid_key: Uint8Array;
  bundle: Uint8Array;
  hint: string;
}
export interface X509SVIDResponseMessage {
  svids: X509SVIDMessage[];
  crl: Uint8Array[];
  federated_bundles: Record<string, Uint8Array>;
}
export interface X509BundlesResponseMessage {
  crl: Uint8Array[];
  bundles: Record<string, Uint8Array>;
}
export interface JWTSVIDRequestMessage {
  audience: string[];
  spiffe_id: string;
}
export interface JWTSVIDResponseMessage {
  svids: { spiffe_id: string; svid: string; hint: string }[];
}
export interface JWTBundlesResponseMessage {
  bundles: Record<string, Uint8Array>;
}
export interface ValidateJWTSVIDRequestMessage {
  audience: string;
  svid: string;
}
/** `google.protobuf.Struct` as protobufjs encodes it. */
export interface StructMessage {
  fields: Record<string, ValueMessage>;
}
export type ValueMessage =
  | { nullValue: 0 }
  | { numberValue: number }
  | { stringValue: string }
  | { boolValue: boolean }
  | { structValue: StructMessage }
  | { listValue: { values: ValueMessage[] } };
export interface ValidateJWTSVIDResponseMessage {
  spiffe_id: string;
  claims: StructMessage;
}
export type Empty = Record<string, never>;

/** JSON → `google.protobuf.Struct`. Non-JSON values (undefined, functions) are dropped. */
export function toStruct(obj: Record<string, unknown>): StructMessage {
  const fields: Record<string, ValueMessage> = {};
  for (const [k, v] of Object.entries(obj)) {
    const val = toValue(v);
    if (val) fields[k] = val;
  }
  return { fields };
}

function toValue(v: unknown): ValueMessage | undefined {
  if (v === null) return { nullValue: 0 };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map((x) => toValue(x) ?? { nullValue: 0 }) } };
  if (typeof v === 'object') return { structValue: toStruct(v as Record<string, unknown>) };
  return undefined;
}

/** The Workload API's method definitions, encoded and decoded with protobufjs from `proto/workloadapi.proto`. */
export interface WorkloadApiCodec {
  root: protobuf.Root;
  FetchX509SVID: MethodDefinition<Empty, X509SVIDResponseMessage>;
  FetchX509Bundles: MethodDefinition<Empty, X509BundlesResponseMessage>;
  FetchJWTSVID: MethodDefinition<JWTSVIDRequestMessage, JWTSVIDResponseMessage>;
  FetchJWTBundles: MethodDefinition<Empty, JWTBundlesResponseMessage>;
  ValidateJWTSVID: MethodDefinition<ValidateJWTSVIDRequestMessage, ValidateJWTSVIDResponseMessage>;
}

let codec: WorkloadApiCodec | undefined;

/**
 * Loads `proto/workloadapi.proto` once and returns the five method definitions.
 *
 * @example
 * ```ts
 * const { FetchJWTSVID } = workloadApiCodec();
 * FetchJWTSVID.path; // '/SpiffeWorkloadAPI/FetchJWTSVID'
 * ```
 */
export function workloadApiCodec(): WorkloadApiCodec {
  if (codec) return codec;
  const root = new protobuf.Root().loadSync(workloadProtoPath(), { keepCase: true });
  const service = root.lookupService('SpiffeWorkloadAPI');
  const make = <Req, Res>(name: string): MethodDefinition<Req, Res> => {
    const m = service.methods[name];
    if (!m) throw new Error(`workloadapi.proto has no method ${name}`);
    const req = root.lookupType(m.requestType);
    const res = root.lookupType(m.responseType);
    return {
      path: `/SpiffeWorkloadAPI/${name}`,
      decode: (bytes) => req.toObject(req.decode(bytes), { defaults: true, arrays: true, objects: true }) as Req,
      encode: (msg) => res.encode(msg as unknown as Record<string, unknown>).finish(),
    };
  };
  codec = {
    root,
    FetchX509SVID: make('FetchX509SVID'),
    FetchX509Bundles: make('FetchX509Bundles'),
    FetchJWTSVID: make('FetchJWTSVID'),
    FetchJWTBundles: make('FetchJWTBundles'),
    ValidateJWTSVID: make('ValidateJWTSVID'),
  };
  return codec;
}

// ---------------------------------------------------------------------------------------------
// Handlers (transport-independent: served by GrpcServer here, by grpc-js in the benchmark)

/** What the handlers need from a call, whatever the transport. */
export interface WorkloadCall {
  readonly metadata: Readonly<Record<string, string>>;
  readonly peer: PeerCredentials | undefined;
  readonly peerError: Error | undefined;
  readonly signal: AbortSignal;
}
export interface WorkloadStreamCall<Res> extends WorkloadCall {
  send(message: Res): Promise<void>;
}

export interface WorkloadApiHandlersOptions {
  resolver: WorkloadResolver;
  /** Default: a {@link UnixAttestor} on the peer's SO_PEERCRED (no peer credentials → denied). */
  attest?: WorkloadAttestor;
}

/**
 * The five Workload API RPCs as plain async functions. {@link WorkloadApiServer} serves them; they
 * are exported so that another transport can serve the very same logic.
 *
 * @example
 * ```ts
 * const h = new WorkloadApiHandlers({ resolver });
 * await h.fetchJwtSvid({ audience: ['payments'], spiffe_id: '' }, call);
 * ```
 */
export class WorkloadApiHandlers {
  private readonly resolver: WorkloadResolver;
  private readonly attestFn: WorkloadAttestor;
  // One resolver listener fans out to every open stream, so thousands of streams do not pile
  // listeners (and MaxListenersExceeded warnings) onto the agent's emitter.
  private readonly watchers = new Set<() => void>();
  private readonly onResolverChange = () => {
    for (const w of [...this.watchers]) w();
  };

  constructor(opts: WorkloadApiHandlersOptions) {
    this.resolver = opts.resolver;
    if (opts.attest) this.attestFn = opts.attest;
    else {
      const unix = new UnixAttestor();
      this.attestFn = async (peer, peerError) => {
        if (!peer) throw peerError ?? new Error('no peer credentials');
        return unix.attest(peer);
      };
    }
  }

  /** The security header (spec: checked before anything else). */
  private checkHeader(call: WorkloadCall): void {
    if (call.metadata[WORKLOAD_API_HEADER] !== 'true') {
      throw new GrpcError(
        Status.INVALID_ARGUMENT,
        `security header missing from request (${WORKLOAD_API_HEADER}: true)`,
      );
    }
  }

  /** Security header, then attestation; returns the caller's selectors. */
  private async admit(call: WorkloadCall): Promise<Selector[]> {
    this.checkHeader(call);
    try {
      return await this.attestFn(call.peer, call.peerError);
    } catch (e) {
      throw new GrpcError(Status.PERMISSION_DENIED, `the caller could not be attested: ${(e as Error).message}`);
    }
  }

  private async identities(selectors: readonly Selector[]): Promise<readonly WorkloadIdentity[]> {
    const ids = await this.resolver.identitiesFor(selectors);
    if (ids.length === 0) throw new GrpcError(Status.PERMISSION_DENIED, 'no identity issued');
    return ids;
  }

  /** The caller's bundles: its identities' trust domains, then their federated domains. */
  private bundlesFor(ids: readonly WorkloadIdentity[]): {
    own: Map<string, TrustBundle>;
    federated: Map<string, TrustBundle>;
  } {
    const all = new Map(this.resolver.bundles().map((b) => [b.trustDomain.name, b]));
    const own = new Map<string, TrustBundle>();
    const federated = new Map<string, TrustBundle>();
    for (const id of ids) {
      const td = trustDomainOf(id.spiffeId);
      const b = all.get(td);
      if (b) own.set(td, b);
    }
    for (const id of ids) {
      for (const td of id.federatesWith ?? []) {
        const b = all.get(td);
        if (b && !own.has(td)) federated.set(td, b);
      }
    }
    return { own, federated };
  }

  private async x509SvidResponse(selectors: readonly Selector[]): Promise<X509SVIDResponseMessage> {
    const ids = await this.identities(selectors);
    const { own, federated } = this.bundlesFor(ids);
    const svids: X509SVIDMessage[] = [];
    for (const id of ids) {
      const bundle = own.get(trustDomainOf(id.spiffeId));
      // Without its trust domain's bundle an SVID cannot be validated by anyone: withhold it.
      if (!bundle) continue;
      svids.push({
        spiffe_id: id.spiffeId,
        x509_svid: Buffer.concat(id.x509Chain),
        x509_svid_key: id.privateKeyPkcs8,
        bundle: bundle.toDer(),
        hint: id.hint ?? '',
      });
    }
    if (svids.length === 0) throw new GrpcError(Status.UNAVAILABLE, "no trust bundle yet for the caller's identities");
    const federated_bundles: Record<string, Uint8Array> = {};
    for (const [td, b] of federated) federated_bundles[`spiffe://${td}`] = b.toDer();
    return { svids, crl: [...(this.resolver.crls?.() ?? [])], federated_bundles };
  }

  private async x509BundlesResponse(selectors: readonly Selector[]): Promise<X509BundlesResponseMessage> {
    const { own, federated } = this.bundlesFor(await this.identities(selectors));
    const bundles: Record<string, Uint8Array> = {};
    for (const [td, b] of [...own, ...federated]) bundles[`spiffe://${td}`] = b.toDer();
    return { crl: [...(this.resolver.crls?.() ?? [])], bundles };
  }

  private async jwtBundlesResponse(selectors: readonly Selector[]): Promise<JWTBundlesResponseMessage> {
    const { own, federated } = this.bundlesFor(await this.identities(selectors));
    const bundles: Record<string, Uint8Array> = {};
    for (const [td, b] of [...own, ...federated])
      bundles[`spiffe://${td}`] = Buffer.from(JSON.stringify(jwtOnly(b).toJwks()));
    return { bundles };
  }

  /** FetchX509SVID: the caller's X.509-SVIDs now and on every change. */
  async fetchX509Svid(_req: Empty, call: WorkloadStreamCall<X509SVIDResponseMessage>): Promise<void> {
    const selectors = await this.admit(call);
    await this.streamState(call, () => this.x509SvidResponse(selectors), x509Fingerprint);
  }

  /** FetchX509Bundles: the caller's X.509 bundles now and on every change. */
  async fetchX509Bundles(_req: Empty, call: WorkloadStreamCall<X509BundlesResponseMessage>): Promise<void> {
    const selectors = await this.admit(call);
    await this.streamState(
      call,
      () => this.x509BundlesResponse(selectors),
      (m) => `${mapFingerprint(m.bundles)}#${m.crl.map((c) => b64(c)).join(';')}`,
    );
  }

  /** FetchJWTBundles: the caller's JWT bundles (JWKS) now and on every change. */
  async fetchJwtBundles(_req: Empty, call: WorkloadStreamCall<JWTBundlesResponseMessage>): Promise<void> {
    const selectors = await this.admit(call);
    await this.streamState(
      call,
      () => this.jwtBundlesResponse(selectors),
      (m) => mapFingerprint(m.bundles),
    );
  }

  /** FetchJWTSVID: a JWT-SVID per entitled identity (or only `spiffe_id`) for the audiences. */
  async fetchJwtSvid(req: JWTSVIDRequestMessage, call: WorkloadCall): Promise<JWTSVIDResponseMessage> {
    this.checkHeader(call);
    const audience = req.audience ?? [];
    if (audience.length === 0 || audience.some((a) => a.length === 0)) {
      throw new GrpcError(Status.INVALID_ARGUMENT, 'audience must be specified');
    }
    let wanted: SpiffeId | undefined;
    if (req.spiffe_id) {
      try {
        wanted = parseSpiffeId(req.spiffe_id);
      } catch (e) {
        const why = e instanceof SpiffeIdError ? e.message : String(e);
        throw new GrpcError(Status.INVALID_ARGUMENT, `spiffe_id is not a SPIFFE ID: ${why}`);
      }
    }
    const ids = await this.identities(await this.admit(call));
    const chosen = wanted ? ids.filter((i) => i.spiffeId === wanted.toString()) : ids;
    if (chosen.length === 0) {
      throw new GrpcError(Status.PERMISSION_DENIED, `the caller is not entitled to ${req.spiffe_id}`);
    }
    const svids = await Promise.all(
      chosen.map(async (id) => {
        let svid: string;
        try {
          svid = await this.resolver.mintJwtSvid(id.spiffeId, audience);
        } catch (e) {
          throw new GrpcError(
            Status.UNAVAILABLE,
            `could not mint a JWT-SVID for ${id.spiffeId}: ${(e as Error).message}`,
          );
        }
        return { spiffe_id: id.spiffeId, svid, hint: id.hint ?? '' };
      }),
    );
    return { svids };
  }

  /** ValidateJWTSVID: validates with `src/spiffe` against the caller's JWT bundles. */
  async validateJwtSvid(
    req: ValidateJWTSVIDRequestMessage,
    call: WorkloadCall,
  ): Promise<ValidateJWTSVIDResponseMessage> {
    this.checkHeader(call);
    if (!req.audience) throw new GrpcError(Status.INVALID_ARGUMENT, 'audience must be specified');
    if (!req.svid) throw new GrpcError(Status.INVALID_ARGUMENT, 'svid must be specified');
    const { own, federated } = this.bundlesFor(await this.identities(await this.admit(call)));
    try {
      const v = await validateJwtSvid(req.svid, bundleSet(...own.values(), ...federated.values()), req.audience);
      return { spiffe_id: v.spiffeId.toString(), claims: toStruct(v.claims as JWTPayload & Record<string, unknown>) };
    } catch (e) {
      if (e instanceof JwtSvidError) throw new GrpcError(Status.INVALID_ARGUMENT, e.message);
      throw e;
    }
  }

  private watch(f: () => void): void {
    if (this.watchers.size === 0) this.resolver.on('change', this.onResolverChange);
    this.watchers.add(f);
  }

  private unwatch(f: () => void): void {
    this.watchers.delete(f);
    if (this.watchers.size === 0) this.resolver.off('change', this.onResolverChange);
  }

  /** Open streams (each watches the resolver for changes). */
  get openStreams(): number {
    return this.watchers.size;
  }

  /**
   * Sends `build()` now and after every resolver change that alters it, until the client goes away.
   * A build error (PERMISSION_DENIED when the caller's last identity is gone) ends the stream.
   */
  private async streamState<T>(
    call: WorkloadStreamCall<T>,
    build: () => Promise<T>,
    fingerprint: (m: T) => string,
  ): Promise<void> {
    let dirty = false;
    let wake: (() => void) | undefined;
    const onChange = () => {
      dirty = true;
      wake?.();
    };
    this.watch(onChange);
    const onAbort = () => wake?.();
    call.signal.addEventListener('abort', onAbort);
    try {
      let last: string | undefined;
      for (;;) {
        dirty = false;
        const msg = await build();
        const fp = fingerprint(msg);
        if (fp !== last) {
          await call.send(msg);
          last = fp;
        }
        if (!dirty) {
          await new Promise<void>((r) => {
            wake = r;
            if (call.signal.aborted) r();
          });
          wake = undefined;
        }
        if (call.signal.aborted) return;
      }
    } finally {
      this.unwatch(onChange);
      call.signal.removeEventListener('abort', onAbort);
    }
  }
}

function trustDomainOf(spiffeId: string): string {
  return parseSpiffeId(spiffeId).trustDomain.name;
}

function jwtOnly(b: TrustBundle): TrustBundle {
  const init: ConstructorParameters<typeof TrustBundle>[0] = {
    trustDomain: b.trustDomain,
    jwtAuthorities: b.jwtAuthorities,
  };
  if (b.sequence !== undefined) init.sequence = b.sequence;
  if (b.refreshHintSeconds !== undefined) init.refreshHintSeconds = b.refreshHintSeconds;
  return new TrustBundle(init);
}

function b64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
}

function mapFingerprint(m: Record<string, Uint8Array>): string {
  return Object.keys(m)
    .sort()
    .map((k) => `${k}=${b64(m[k] as Uint8Array)}`)
    .join(';');
}

function x509Fingerprint(m: X509SVIDResponseMessage): string {
  return (
    m.svids
      .map((s) => `${s.spiffe_id}|${b64(s.x509_svid)}|${b64(s.x509_svid_key)}|${b64(s.bundle)}|${s.hint}`)
      .join(';') +
    '#' +
    mapFingerprint(m.federated_bundles) +
    '#' +
    m.crl.map((c) => b64(c)).join(';')
  );
}

// ---------------------------------------------------------------------------------------------
// Server

export interface WorkloadApiServerOptions extends WorkloadApiHandlersOptions {
  /** Unix socket path, e.g. `<data-dir>/agent.sock` (or `address`). */
  socketPath?: string;
  /** `unix:///path` or `tcp://127.0.0.1:port` (TCP has no peer credentials: the default attestor denies). */
  address?: string;
  /** Largest request message; default 4 MiB. */
  maxMessageBytes?: number;
  /** Unexpected handler errors (they reach clients as INTERNAL). */
  onError?: (err: unknown, method: string) => void;
  /** Open connections per uid; see {@link GrpcServerOptions.maxConnectionsPerPeer}. */
  maxConnectionsPerPeer?: number;
  /** Calls in flight per uid; see {@link GrpcServerOptions.maxCallsPerPeer}. */
  maxCallsPerPeer?: number;
  /** Time to the first request; see {@link GrpcServerOptions.handshakeTimeoutMs}. */
  handshakeTimeoutMs?: number;
  /** A connection or call refused by those limits (for the log). */
  onLimit?: (reason: string) => void;
}

/**
 * The SPIFFE Workload API on a Unix socket, over {@link GrpcServer}.
 *
 * @example
 * ```ts
 * const api = new WorkloadApiServer({ socketPath: join(dataDir, 'agent.sock'), resolver });
 * await api.start();   // export SPIFFE_ENDPOINT_SOCKET=unix://<data-dir>/agent.sock
 * // …
 * await api.close();
 * ```
 */
export class WorkloadApiServer {
  readonly handlers: WorkloadApiHandlers;
  private readonly grpc: GrpcServer;
  private readonly target: string;

  constructor(opts: WorkloadApiServerOptions) {
    const target = opts.address ?? (opts.socketPath ? `unix://${opts.socketPath}` : undefined);
    if (!target) throw new Error('WorkloadApiServer needs socketPath or address');
    this.target = target;
    this.handlers = new WorkloadApiHandlers(opts);
    const grpcOpts: ConstructorParameters<typeof GrpcServer>[0] = { socketMode: 0o777 };
    if (opts.maxMessageBytes !== undefined) grpcOpts.maxReceiveMessageBytes = opts.maxMessageBytes;
    if (opts.onError) grpcOpts.onHandlerError = opts.onError;
    if (opts.maxConnectionsPerPeer !== undefined) grpcOpts.maxConnectionsPerPeer = opts.maxConnectionsPerPeer;
    if (opts.maxCallsPerPeer !== undefined) grpcOpts.maxCallsPerPeer = opts.maxCallsPerPeer;
    if (opts.handshakeTimeoutMs !== undefined) grpcOpts.handshakeTimeoutMs = opts.handshakeTimeoutMs;
    if (opts.onLimit) grpcOpts.onLimit = opts.onLimit;
    this.grpc = new GrpcServer(grpcOpts);
    const c = workloadApiCodec();
    const h = this.handlers;
    this.grpc
      .addServerStream(c.FetchX509SVID, (req, call) => h.fetchX509Svid(req, call))
      .addServerStream(c.FetchX509Bundles, (req, call) => h.fetchX509Bundles(req, call))
      .addServerStream(c.FetchJWTBundles, (req, call) => h.fetchJwtBundles(req, call))
      .addUnary(c.FetchJWTSVID, (req, ctx: CallContext) => h.fetchJwtSvid(req, ctx))
      .addUnary(c.ValidateJWTSVID, (req, ctx: CallContext) => h.validateJwtSvid(req, ctx));
  }

  /**
   * Creates the socket's directory (0755) if needed, checks that it is ours and not writable by
   * others, and listens (socket mode 0777).
   *
   * @throws {Error} for an unsafe socket directory or a socket another server is using
   */
  async start(): Promise<ListenAddress> {
    if (this.target.startsWith('unix:')) {
      const path = this.target.replace(/^unix:(\/\/)?/, '');
      const dir = dirname(path);
      mkdirSync(dir, { recursive: true, mode: 0o755 });
      const st = statSync(dir);
      const uid = process.getuid?.();
      if ((uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0) {
        throw new Error(
          `the Workload API socket directory ${dir} must be owned by the agent (uid ${uid}) and not group/world-writable`,
        );
      }
    }
    return this.grpc.listen(this.target);
  }

  /** Ends running streams with UNAVAILABLE (clients reconnect) and removes the socket. */
  close(): Promise<void> {
    return this.grpc.close();
  }

  get address(): ListenAddress | undefined {
    return this.grpc.address;
  }
}
