/**
 * The access request of design.md: one shape for every enforcement point, as a zod schema
 * (for untrusted JSON), a TypeScript type, and the derivations that let short inputs work.
 * `normalizeRequest` is on the hot path, so it is hand-written rather than zod-driven.
 */
import { z } from 'zod';
import { NevertrustError } from '../errors.js';
import { SpiffeIdError } from '../spiffe/id.js';
import { istioPrincipal, spiffePartsOrError } from './identity.js';
import { parseIp } from './match.js';
import { checkMethod, isPath, normalizePathText, type PathOptions } from './path.js';

const DeviceSchema = z
  .object({
    id: z.string().optional(),
    managed: z.boolean().optional(),
    encrypted: z.boolean().optional(),
    os_patched: z.boolean().optional(),
    edr_active: z.boolean().optional(),
    posture_age_s: z.number().nonnegative().optional(),
    owner_is_user: z.boolean().optional(),
    unknown_reason: z.string().max(256).optional(),
  })
  .strict();

const FullRequestSchema = z
  .object({
    source: z
      .object({
        spiffe_id: z.string().optional(),
        service: z.string().optional(),
        namespace: z.string().optional(),
        ip: z.string().optional(),
        remote_ip: z.string().optional(),
        user: z.string().optional(),
        claims: z.record(z.string(), z.unknown()).optional(),
        mfa: z.boolean().optional(),
        /** When the person last authenticated at their provider (seconds since the epoch; OIDC `auth_time`). */
        auth_time: z.number().int().nonnegative().optional(),
        /**
         * When the person last passed a second factor (seconds since the epoch): at the provider, or
         * a step-up at the access proxy. Policy reads it as `auth.mfa_age`.
         */
        mfa_time: z.number().int().nonnegative().optional(),
        /** RFC 8176 methods the session has used (`pwd`, `otp`, `hwk`, `swk`, `user`…): `auth.methods`. */
        amr: z.array(z.string().max(64)).max(32).optional(),
        risk_score: z.number().min(0).max(1).optional(),
        device: DeviceSchema.optional(),
      })
      .strict()
      .optional(),
    target: z
      .object({
        spiffe_id: z.string().optional(),
        service: z.string().optional(),
        namespace: z.string().optional(),
        labels: z.record(z.string(), z.string()).optional(),
        host: z.string().optional(),
        port: z.number().int().min(0).max(65535).optional(),
        ip: z.string().optional(),
        sni: z.string().optional(),
      })
      .strict()
      .optional(),
    request: z
      .object({
        method: z.string().optional(),
        path: z.string().optional(),
        headers: z.record(z.string(), z.string()).optional(),
        time: z.iso.datetime({ offset: true }).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

/** The flat shape OPA clients send. */
const FlatRequestSchema = z
  .object({
    source_service: z.string().optional(),
    target_service: z.string().optional(),
    method: z.string().optional(),
    path: z.string().optional(),
  })
  .strict();

/** zod schema of the access request: the full shape or OPA's flat shape. */
export const AccessRequestSchema = z.union([FullRequestSchema, FlatRequestSchema]);

/** The access request (full shape); every field optional. */
export type AccessRequest = z.infer<typeof FullRequestSchema>;
/** OPA's flat request shape. */
export type FlatAccessRequest = z.infer<typeof FlatRequestSchema>;

/**
 * The JSON schema (draft 2020-12) of the access request, for clients and docs.
 *
 * @example
 * writeFileSync('access-request.schema.json', JSON.stringify(accessRequestJsonSchema(), null, 2));
 */
export function accessRequestJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(AccessRequestSchema) as Record<string, unknown>;
}

/** Maps the flat OPA shape to the full shape; full requests pass through. */
export function fromFlat(input: AccessRequest | FlatAccessRequest): AccessRequest {
  if (!('source_service' in input || 'target_service' in input || 'method' in input || 'path' in input)) {
    return input as AccessRequest;
  }
  const f = input as FlatAccessRequest;
  const out: AccessRequest = {};
  if (f.source_service !== undefined) out.source = { service: f.source_service };
  if (f.target_service !== undefined) out.target = { service: f.target_service };
  if (f.method !== undefined || f.path !== undefined) out.request = { method: f.method, path: f.path };
  return out;
}

/**
 * Validates untrusted JSON as an access request (either shape). Throws {@link AccessRequestError} naming the field.
 *
 * @example
 * parseAccessRequest({ source_service: 'api-gateway', target_service: 'payment-service', method: 'POST', path: '/v1/charges' })
 */
export function parseAccessRequest(input: unknown): AccessRequest {
  const r = AccessRequestSchema.safeParse(input);
  if (!r.success) {
    // Report against the full shape unless the input clearly is the flat one.
    const flat =
      typeof input === 'object' &&
      input !== null &&
      ['source_service', 'target_service', 'method', 'path'].some((k) => k in input);
    const again = (flat ? FlatRequestSchema : FullRequestSchema).safeParse(input);
    const issue = again.success ? r.error.issues[0] : again.error.issues[0];
    const field = issue ? issue.path.join('.') || '(root)' : '(root)';
    throw new AccessRequestError(field, issue?.message ?? 'invalid');
  }
  return fromFlat(r.data);
}

/**
 * An access request that does not fit the schema: a 400 (`invalid_request`) naming the first wrong
 * field (`source.device.managed`, or `(root)`) in its message and in `field`.
 */
export class AccessRequestError extends NevertrustError<'ERR_ACCESS_REQUEST_INVALID'> {
  override readonly name = 'AccessRequestError';
  readonly code = 'ERR_ACCESS_REQUEST_INVALID';
  constructor(
    readonly field: string,
    readonly problem: string,
  ) {
    super(`invalid access request: ${field}: ${problem}`, { status: 400 });
  }

  override get reason(): string {
    return 'invalid_request';
  }

  override get details(): Record<string, unknown> {
    return { field: this.field };
  }
}

/** The attributes rules read, derived once per decision. */
export interface NormalizedRequest {
  sourceSpiffeId?: string;
  /** Istio principal form: the SPIFFE ID without `spiffe://`. */
  sourcePrincipal?: string;
  sourceNamespace?: string;
  sourceService?: string;
  sourceIp?: { family: 4 | 6; value: bigint };
  remoteIp?: { family: 4 | 6; value: bigint };
  user?: string;
  claims?: Record<string, unknown>;
  /** `<iss>/<sub>` from the claims. */
  requestPrincipal?: string;
  audiences?: string[];
  presenter?: string;
  mfa?: boolean;
  /** Epoch seconds of the last second factor (`auth.mfa_age` is measured from it). */
  mfaTime?: number;
  /** RFC 8176 authentication methods (`auth.methods`). */
  amr?: readonly string[];
  riskScore?: number;
  device?: z.infer<typeof DeviceSchema>;
  targetSpiffeId?: string;
  targetService?: string;
  targetNamespace?: string;
  targetLabels: Record<string, string>;
  /**
   * @internal The target ID's entry in the ID table of the snapshot the request was derived for,
   * so that the evaluator reuses that lookup (it checks that the entry belongs to its snapshot
   * and that no attribute was overridden before trusting it).
   */
  targetInfo?: IdInfo;
  host?: string;
  port?: number;
  destinationIp?: { family: 4 | 6; value: bigint };
  sni?: string;
  method?: string;
  /** Normalized path. */
  path?: string;
  /** Lower-case header names. */
  headers: Record<string, string>;
  /** Epoch milliseconds. */
  time?: number;
}

export type NormalizeResult = { ok: true; req: NormalizedRequest } | { ok: false; reason: string };

const EMPTY: Record<string, string> = Object.freeze({}) as Record<string, string>;

/**
 * What a SPIFFE ID gives a request: its Istio principal, namespace, service and default labels.
 * @internal
 */
export interface IdInfo {
  /** The SPIFFE ID itself. */
  readonly id: string;
  readonly principal: string;
  readonly namespace: string | undefined;
  readonly service: string | undefined;
  /** `{ app: service }`, shared and frozen: the default target labels, built once per ID. */
  readonly labels: Record<string, string> | undefined;
  /**
   * Set in a compiled snapshot's ID table (see plan.ts): the candidates for a request whose
   * target is this ID and whose attributes all derive from it. `null` in the module cache.
   */
  readonly plan: PlanRef | null;
}

/**
 * A compiled snapshot's plan for a target ID (plan.ts's `TargetPlan`), opaque at this layer: a
 * request only carries it from the snapshot's ID table to the decision, and the request layer
 * stays below the compiled one. `owner` is the index of the snapshot that built it.
 * @internal
 */
export interface PlanRef {
  readonly owner: object;
}

/**
 * Derives {@link IdInfo} from a SPIFFE ID, or the {@link SpiffeIdError} naming the rule it breaks.
 * Used for the module cache below and, at compile time, for a snapshot's ID table, so both derive
 * exactly alike.
 * @internal
 */
export function deriveIdInfo(id: string, plan: PlanRef | null = null): IdInfo | SpiffeIdError {
  const p = spiffePartsOrError(id);
  if (p instanceof SpiffeIdError) return p;
  return {
    id,
    principal: istioPrincipal(id),
    namespace: p.namespace,
    service: p.service,
    labels: p.service === undefined ? undefined : (Object.freeze({ app: p.service }) as Record<string, string>),
    plan,
  };
}

// Workload IDs repeat endlessly on the hot path: remember their derivations (bounded, reset when full).
const idCache = new Map<string, IdInfo | SpiffeIdError>();
const ID_CACHE_MAX = 65_536;

function idInfo(id: string, known: ReadonlyMap<string, IdInfo> | undefined): IdInfo | SpiffeIdError {
  // IDs named by the snapshot's policies come from its table, which also holds their plans.
  const k = known?.get(id);
  if (k !== undefined) return k;
  let v = idCache.get(id);
  if (v === undefined) {
    v = deriveIdInfo(id);
    if (idCache.size >= ID_CACHE_MAX) idCache.clear();
    idCache.set(id, v);
  }
  return v;
}

/** The deny reason for an invalid SPIFFE ID: which one, and the rule it breaks. */
function invalidId(side: 'source' | 'target', id: unknown, e: SpiffeIdError): string {
  return `${side}.spiffe_id is not a valid SPIFFE ID (${e.code}: ${e.message}): ${JSON.stringify(id).slice(0, 256)}`;
}

/**
 * A request with every attribute present (as `undefined` when absent), always initialized in
 * this one order: every normalized request then shares one hidden class, so the property loads
 * of the matchers stay monomorphic instead of degrading with each optional field a request sets.
 */
export function blankRequest(): NormalizedRequest {
  return {
    sourceSpiffeId: undefined,
    sourcePrincipal: undefined,
    sourceNamespace: undefined,
    sourceService: undefined,
    sourceIp: undefined,
    remoteIp: undefined,
    user: undefined,
    claims: undefined,
    requestPrincipal: undefined,
    audiences: undefined,
    presenter: undefined,
    mfa: undefined,
    mfaTime: undefined,
    amr: undefined,
    riskScore: undefined,
    device: undefined,
    targetSpiffeId: undefined,
    targetService: undefined,
    targetNamespace: undefined,
    targetLabels: EMPTY,
    targetInfo: undefined,
    host: undefined,
    port: undefined,
    destinationIp: undefined,
    sni: undefined,
    method: undefined,
    path: undefined,
    headers: EMPTY,
    time: undefined,
  };
}

/**
 * Puts `o` back to {@link blankRequest}'s state, property by property (its shape stays the same),
 * so that the decision hot path can derive every request into one reused object.
 * @internal
 */
export function resetRequest(o: NormalizedRequest): void {
  o.sourceSpiffeId = undefined;
  o.sourcePrincipal = undefined;
  o.sourceNamespace = undefined;
  o.sourceService = undefined;
  o.sourceIp = undefined;
  o.remoteIp = undefined;
  o.user = undefined;
  o.claims = undefined;
  o.requestPrincipal = undefined;
  o.audiences = undefined;
  o.presenter = undefined;
  o.mfa = undefined;
  o.mfaTime = undefined;
  o.amr = undefined;
  o.riskScore = undefined;
  o.device = undefined;
  o.targetSpiffeId = undefined;
  o.targetService = undefined;
  o.targetNamespace = undefined;
  o.targetLabels = EMPTY;
  o.targetInfo = undefined;
  o.host = undefined;
  o.port = undefined;
  o.destinationIp = undefined;
  o.sni = undefined;
  o.method = undefined;
  o.path = undefined;
  o.headers = EMPTY;
  o.time = undefined;
}

/**
 * Derives the attributes rules read: namespace and service from SPIFFE IDs, the `app` label from
 * the target service, the Istio principal, the request principal `<iss>/<sub>`; normalizes the
 * path and checks the method. Returns a reason instead of attributes when the request must be denied.
 *
 * @example
 * normalizeRequest({ source: { spiffe_id: 'spiffe://example.org/ns/payments/sa/api-gateway' },
 *                    request: { method: 'POST', path: '/v1/charges' } })
 * // { ok: true, req: { sourceNamespace: 'payments', sourceService: 'api-gateway', … } }
 */
export function normalizeRequest(input: AccessRequest, pathOptions?: PathOptions): NormalizeResult {
  const r = deriveRequest(input, pathOptions, undefined);
  return typeof r === 'string' ? { ok: false, reason: r } : { ok: true, req: r };
}

/**
 * {@link normalizeRequest} for the decision hot path: the request, or the reason to deny it,
 * without a result object; SPIFFE IDs are looked up in `known` (a snapshot's ID table) first.
 * With `into`, the request is derived into that object (reset first) instead of a new one.
 * @internal
 */
export function deriveRequest(
  input: AccessRequest,
  pathOptions: PathOptions | undefined,
  known: ReadonlyMap<string, IdInfo> | undefined,
  into?: NormalizedRequest,
): NormalizedRequest | string {
  let out: NormalizedRequest;
  if (into === undefined) out = blankRequest();
  else {
    out = into;
    resetRequest(out);
  }
  const src = input.source;
  if (src) {
    if (src.spiffe_id !== undefined) {
      const p = idInfo(src.spiffe_id, known);
      if (p instanceof SpiffeIdError) return invalidId('source', src.spiffe_id, p);
      out.sourceSpiffeId = src.spiffe_id;
      out.sourcePrincipal = p.principal;
      out.sourceNamespace = p.namespace;
      out.sourceService = p.service;
    }
    if (src.namespace !== undefined) out.sourceNamespace = src.namespace;
    if (src.service !== undefined) out.sourceService = src.service;
    if (src.ip !== undefined) {
      out.sourceIp = parseIp(src.ip);
      if (!out.sourceIp) return `source.ip is not an IP address: ${JSON.stringify(src.ip)}`;
    }
    // Without a proxy in front, the remote address is the peer address.
    if (src.remote_ip !== undefined) {
      out.remoteIp = parseIp(src.remote_ip);
      if (!out.remoteIp) return `source.remote_ip is not an IP address: ${JSON.stringify(src.remote_ip)}`;
    } else out.remoteIp = out.sourceIp;
    out.user = src.user;
    if (src.claims) {
      const c = src.claims;
      out.claims = c;
      if (typeof c.iss === 'string' && typeof c.sub === 'string') out.requestPrincipal = `${c.iss}/${c.sub}`;
      if (typeof c.aud === 'string') out.audiences = [c.aud];
      else if (Array.isArray(c.aud)) out.audiences = c.aud.filter(isString);
      if (typeof c.azp === 'string') out.presenter = c.azp;
    }
    out.mfa = src.mfa;
    out.mfaTime = src.mfa_time;
    out.amr = src.amr;
    out.riskScore = src.risk_score;
    out.device = src.device;
  }
  const tgt = input.target;
  if (tgt) {
    let idLabels: Record<string, string> | undefined;
    if (tgt.spiffe_id !== undefined) {
      const p = idInfo(tgt.spiffe_id, known);
      if (p instanceof SpiffeIdError) return invalidId('target', tgt.spiffe_id, p);
      out.targetSpiffeId = tgt.spiffe_id;
      out.targetNamespace = p.namespace;
      out.targetService = p.service;
      if (p.plan !== null) out.targetInfo = p;
      idLabels = p.labels;
    }
    if (tgt.namespace !== undefined) out.targetNamespace = tgt.namespace;
    if (tgt.service !== undefined) {
      out.targetService = tgt.service;
      idLabels = undefined;
    }
    if (tgt.labels) out.targetLabels = tgt.labels;
    else if (idLabels !== undefined) out.targetLabels = idLabels;
    else if (out.targetService !== undefined) out.targetLabels = { app: out.targetService };
    // Istio matches hosts case-insensitively; matchers are lower-cased at load time.
    out.host = tgt.host?.toLowerCase();
    out.port = tgt.port;
    if (tgt.ip !== undefined) {
      out.destinationIp = parseIp(tgt.ip);
      if (!out.destinationIp) return `target.ip is not an IP address: ${JSON.stringify(tgt.ip)}`;
    }
    out.sni = tgt.sni;
  }
  const rq = input.request;
  if (rq) {
    if (rq.method !== undefined) {
      const bad = checkMethod(rq.method);
      if (bad) return bad;
      out.method = rq.method;
    }
    if (rq.path !== undefined) {
      const np = normalizePathText(rq.path, pathOptions);
      if (!isPath(np)) return np;
      out.path = np;
    }
    if (rq.headers) {
      const h: Record<string, string> = {};
      for (const k of Object.keys(rq.headers)) h[k.toLowerCase()] = rq.headers[k] as string;
      out.headers = h;
    }
    if (rq.time !== undefined) {
      const t = Date.parse(rq.time);
      if (Number.isNaN(t)) return `request.time is not a date-time: ${JSON.stringify(rq.time)}`;
      out.time = t;
    }
  }
  return out;
}

function isString(a: unknown): a is string {
  return typeof a === 'string';
}
