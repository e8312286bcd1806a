/**
 * The audit event: one versioned shape for every decision and administrative action, with field
 * names in the spirit of OCSF and the Kubernetes audit log. Secrets never go in: known secret fields
 * are dropped and secret-looking values (JWTs, PEM keys, bearer credentials) redacted before an event
 * is hashed or stored, and the paths that were removed are listed in `redacted`.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { isSecretKey, REDACTED } from '../util/secret-keys.js';
import { AuditEventError, AuditEventTooLargeError } from './errors.js';

/** Version of the stored event shape; bumped on any incompatible change. */
export const AUDIT_SCHEMA_VERSION = 1;

/** Largest canonical event accepted, in bytes. */
export const DEFAULT_MAX_EVENT_BYTES = 16 * 1024;

/** The kinds nevertrust itself writes; other dotted lowercase names are accepted for extensions. */
export const AUDIT_KINDS = [
  'access.decision',
  'svid.issued',
  'jwt.issued',
  'agent.attested',
  'entry.changed',
  'policy.changed',
  'admin.action',
  'revocation',
  'anomaly',
] as const;

export const OUTCOMES = ['allow', 'deny', 'step_up', 'error'] as const;
export type Outcome = (typeof OUTCOMES)[number];

const shortText = z.string().max(256);
const text = z.string().max(2048);
const idText = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9._:@/+=-]+$/, 'use letters, digits and . _ : @ / + = - only');

const sourceSchema = z.strictObject({
  spiffe_id: text.optional(),
  user: shortText.optional(),
  device_id: shortText.optional(),
  ip: z.string().max(64).optional(),
  service: shortText.optional(),
  namespace: shortText.optional(),
});

const targetSchema = z.strictObject({
  spiffe_id: text.optional(),
  service: shortText.optional(),
  namespace: shortText.optional(),
  host: shortText.optional(),
  port: z.number().int().min(0).max(65535).optional(),
  method: z.string().max(32).optional(),
  path: text.optional(),
  resource: text.optional(),
});

const timeInput = z.union([
  z.number().int().min(0).max(8.64e15),
  z.iso.datetime({ offset: true }).transform((s) => Date.parse(s)),
]);

/** What a caller passes to `record()` or POSTs to the ingestion endpoint. */
export const auditEventInputSchema = z.strictObject({
  schema_version: z.literal(AUDIT_SCHEMA_VERSION).optional(),
  id: idText.optional(),
  time: timeInput.optional(),
  kind: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$/, 'a kind is dotted lowercase, e.g. access.decision'),
  decision_id: idText.optional(),
  request_id: idText.optional(),
  trace_id: idText.optional(),
  source: sourceSchema.optional(),
  target: targetSchema.optional(),
  outcome: z.enum(OUTCOMES).optional(),
  reason: text.optional(),
  policy: shortText.optional(),
  rule: shortText.optional(),
  enforcer: shortText.optional(),
  latency_us: z.number().nonnegative().max(1e12).optional(),
  details: z.record(z.string(), z.unknown()).optional(),
});

export type AuditEventInput = z.input<typeof auditEventInputSchema>;
export type AuditSource = z.output<typeof sourceSchema>;
export type AuditTarget = z.output<typeof targetSchema>;

/** A normalized event, as hashed and stored (before the log assigns `seq`). */
export interface AuditEvent {
  schema_version: typeof AUDIT_SCHEMA_VERSION;
  id: string;
  /** Epoch milliseconds. */
  time: number;
  kind: string;
  decision_id?: string;
  request_id?: string;
  trace_id?: string;
  source?: AuditSource;
  target?: AuditTarget;
  outcome?: Outcome;
  reason?: string;
  policy?: string;
  rule?: string;
  enforcer?: string;
  latency_us?: number;
  details?: Record<string, unknown>;
  /** Paths of fields that were removed or redacted because they looked like secrets. */
  redacted?: string[];
}

/** A stored event: the normalized event plus its leaf index in the Merkle tree. */
export interface StoredAuditEvent extends AuditEvent {
  /** Leaf index (0-based), part of the hashed bytes so that moving a row is evident. */
  seq: number;
}

const SECRET_VALUE = [
  /^(Bearer|Basic|Negotiate)\s+\S+/i,
  /\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/,
  /-----BEGIN [A-Z ]*PRIVATE KEY-----/,
];

// Secret field names are found by isSecretKey, the logger's predicate too (src/util/secret-keys.ts).
export { REDACTED };

function looksSecret(v: string): boolean {
  // Cheap screen first: this runs on every string of every event.
  if (v.length < 12) return false;
  if (!(v.includes('eyJ') || v.includes('-----BEGIN') || /^\s*(Bearer|Basic|Negotiate)\s/i.test(v))) return false;
  for (const re of SECRET_VALUE) if (re.test(v)) return true;
  return false;
}

// Random hex digits, refilled 4 KiB at a time: one randomBytes call per ~400 ids, no Buffer per id.
let hexPool = '';
let hexPos = 0;
let lastMs = -1;
let counter = 0;
let lastMsHex = '';
const VARIANT = '89ab';

function randomHex(n: number): string {
  if (hexPos + n > hexPool.length) {
    hexPool = randomBytes(4096).toString('hex');
    hexPos = 0;
  }
  const h = hexPool.slice(hexPos, hexPos + n);
  hexPos += n;
  return h;
}

/**
 * A UUIDv7 (RFC 9562): time-ordered, so the unique index on ids grows at its right edge instead of
 * splitting random pages: this matters for append throughput. Within one millisecond a 12-bit
 * counter (started at a random value below 2^11) keeps ids ordered.
 *
 * @example
 * newEventId() // '019aa8c1-7c2e-7a3b-9f10-4b5c6d7e8f90'
 */
export function newEventId(now = Date.now()): string {
  if (now === lastMs) counter = (counter + 1) & 0xfff;
  else {
    lastMs = now;
    lastMsHex = now.toString(16).padStart(12, '0');
    counter = Number.parseInt(randomHex(3), 16) & 0x7ff;
  }
  const r = randomHex(16);
  const variant = VARIANT[Number.parseInt(r[0] as string, 16) & 3] as string;
  return `${lastMsHex.slice(0, 8)}-${lastMsHex.slice(8)}-7${counter.toString(16).padStart(3, '0')}-${variant}${r.slice(1, 4)}-${r.slice(4)}`;
}

/** Removes secret fields and values from `v` (a JSON-like value), recording what it removed. */
function scrub(v: unknown, path: string, removed: string[], depth: number): unknown {
  if (depth > 16) throw new AuditEventError('details are nested more than 16 levels deep', path);
  if (typeof v === 'string') {
    if (looksSecret(v)) {
      removed.push(path);
      return REDACTED;
    }
    return v;
  }
  if (v === null || typeof v === 'number' || typeof v === 'boolean') {
    if (typeof v === 'number' && !Number.isFinite(v)) throw new AuditEventError('numbers must be finite', path);
    return v;
  }
  if (Array.isArray(v)) return v.map((x, i) => scrub(x, `${path}[${i}]`, removed, depth + 1));
  if (typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (x === undefined) continue;
      if (isSecretKey(k)) {
        removed.push(path ? `${path}.${k}` : k);
        continue;
      }
      out[k] = scrub(x, path ? `${path}.${k}` : k, removed, depth + 1);
    }
    return out;
  }
  throw new AuditEventError(`unsupported value of type ${typeof v}`, path);
}

function firstIssue(err: z.ZodError): AuditEventError {
  const issue = err.issues[0];
  const path = issue?.path.join('.') ?? '';
  const what = issue?.code === 'unrecognized_keys' ? `unknown field(s) ${issue.keys.join(', ')}` : issue?.message;
  return new AuditEventError(`invalid audit event${path ? ` at ${path}` : ''}: ${what ?? 'malformed'}`, path);
}

export interface NormalizeOptions {
  /** Limit on the canonical size in bytes (default 16 KiB). */
  maxBytes?: number;
  /** Time for events without one (default now). */
  now?: number;
  /** Use the hand-written fast path for plain events (default true; tests compare it with zod). */
  fastPath?: boolean;
}

const ID_RE = /^[A-Za-z0-9._:@/+=-]+$/;
const KIND_RE = /^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$/;
const TOP_KEYS = new Set([
  'schema_version',
  'id',
  'time',
  'kind',
  'decision_id',
  'request_id',
  'trace_id',
  'source',
  'target',
  'outcome',
  'reason',
  'policy',
  'rule',
  'enforcer',
  'latency_us',
  'details',
]);
/** Longest strings the schema takes in `source` and `target` (UTF-16 units), and in `reason`. */
export const SOURCE_LIMITS = {
  spiffe_id: 2048,
  user: 256,
  device_id: 256,
  ip: 64,
  service: 256,
  namespace: 256,
} as const satisfies Record<string, number>;
export const TARGET_LIMITS = {
  spiffe_id: 2048,
  service: 256,
  namespace: 256,
  host: 256,
  method: 32,
  path: 2048,
  resource: 2048,
} as const satisfies Record<string, number>;
export const REASON_MAX = 2048;
/** Longest `policy`, `rule` and `enforcer` the schema takes. */
export const SHORT_TEXT_MAX = 256;
const OUTCOME_SET = new Set<string>(OUTCOMES);

function plainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function okText(v: unknown, max: number): boolean {
  return v === undefined || (typeof v === 'string' && v.length <= max && !looksSecret(v));
}

function okId(v: unknown): boolean {
  return v === undefined || (typeof v === 'string' && v.length >= 1 && v.length <= 128 && ID_RE.test(v));
}

function fastPart(
  v: unknown,
  limits: Record<string, number>,
  port: boolean,
): Record<string, unknown> | false | undefined {
  if (v === undefined) return undefined;
  if (!plainObject(v)) return false;
  const out: Record<string, unknown> = {};
  for (const k in v) {
    const x = v[k];
    if (x === undefined) continue;
    if (port && k === 'port') {
      if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > 65535) return false;
      out[k] = x;
      continue;
    }
    // Own keys only: `constructor` or `toString` are not fields (the lookup would find Object's).
    const max = Object.hasOwn(limits, k) ? limits[k] : undefined;
    if (max === undefined || typeof x !== 'string' || x.length > max || looksSecret(x)) return false;
    out[k] = x;
  }
  return out;
}

/**
 * `details` as the fast path takes it: a flat object of strings, finite numbers, booleans and nulls
 * with nothing secret-looking (what enforcement points record with a decision). Anything else —
 * nesting, arrays, a secret-looking key or value, `__proto__` — returns false: zod and the scrubber
 * then decide, and explain.
 */
function fastDetails(v: unknown): Record<string, unknown> | false {
  if (!plainObject(v)) return false;
  const out: Record<string, unknown> = {};
  for (const k in v) {
    const x = v[k];
    if (x === undefined) continue;
    if (k === '__proto__' || isSecretKey(k)) return false;
    if (typeof x === 'string') {
      if (looksSecret(x)) return false;
    } else if (typeof x === 'number') {
      if (!Number.isFinite(x)) return false;
    } else if (x !== null && typeof x !== 'boolean') return false;
    out[k] = x;
  }
  return out;
}

/**
 * The common case, checked by hand: a plain event with at most flat `details`, no ISO times and
 * nothing that needs scrubbing. Returns undefined when the event must go through zod (which also
 * explains errors). Accepts exactly what the schema accepts for such events (a property test holds
 * them together).
 */
function fastNormalize(input: Record<string, unknown>, now: number): AuditEvent | undefined {
  if (!plainObject(input)) return undefined;
  for (const k in input) if (!TOP_KEYS.has(k)) return undefined;
  const i = input as Record<string, unknown> & { kind?: unknown; time?: unknown; latency_us?: unknown };
  if (i.schema_version !== undefined && i.schema_version !== AUDIT_SCHEMA_VERSION) return undefined;
  if (typeof i.kind !== 'string' || i.kind.length > 64 || !KIND_RE.test(i.kind)) return undefined;
  if (!(okId(i.id) && okId(i.decision_id) && okId(i.request_id) && okId(i.trace_id))) return undefined;
  if (
    i.time !== undefined &&
    !(typeof i.time === 'number' && Number.isInteger(i.time) && i.time >= 0 && i.time <= 8.64e15)
  )
    return undefined;
  if (i.outcome !== undefined && !(typeof i.outcome === 'string' && OUTCOME_SET.has(i.outcome))) return undefined;
  if (!(okText(i.reason, REASON_MAX) && okText(i.policy, 256) && okText(i.rule, 256) && okText(i.enforcer, 256)))
    return undefined;
  if (
    i.latency_us !== undefined &&
    !(typeof i.latency_us === 'number' && Number.isFinite(i.latency_us) && i.latency_us >= 0 && i.latency_us <= 1e12)
  )
    return undefined;
  const source = fastPart(i.source, SOURCE_LIMITS, false);
  const target = fastPart(i.target, TARGET_LIMITS, true);
  if (source === false || target === false) return undefined;
  const details = i.details === undefined ? undefined : fastDetails(i.details);
  if (details === false) return undefined;
  const e: AuditEvent = {
    schema_version: AUDIT_SCHEMA_VERSION,
    id: (i.id as string | undefined) ?? newEventId(),
    time: (i.time as number | undefined) ?? now,
    kind: i.kind,
  };
  if (i.decision_id !== undefined) e.decision_id = i.decision_id as string;
  if (i.request_id !== undefined) e.request_id = i.request_id as string;
  if (i.trace_id !== undefined) e.trace_id = i.trace_id as string;
  if (source !== undefined) e.source = source as AuditSource;
  if (target !== undefined) e.target = target as AuditTarget;
  if (i.outcome !== undefined) e.outcome = i.outcome as Outcome;
  if (i.reason !== undefined) e.reason = i.reason as string;
  if (i.policy !== undefined) e.policy = i.policy as string;
  if (i.rule !== undefined) e.rule = i.rule as string;
  if (i.enforcer !== undefined) e.enforcer = i.enforcer as string;
  if (i.latency_us !== undefined) e.latency_us = i.latency_us;
  if (details !== undefined) e.details = details;
  return e;
}

/**
 * Validates and normalizes an event: secrets removed, `id` and `time` filled in, size checked.
 * Throws {@link AuditEventError} (malformed) or {@link AuditEventTooLargeError}.
 *
 * @example
 * const e = normalizeEvent({ kind: 'access.decision', outcome: 'deny', source: { spiffe_id: 'spiffe://example.org/a' } });
 * // e.id is a UUID, e.time is now, e.schema_version is 1
 */
export function normalizeEvent(input: unknown, opts: NormalizeOptions = {}): AuditEvent {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new AuditEventError('an audit event must be a JSON object');
  }
  if (opts.fastPath !== false) {
    const fast = fastNormalize(input as Record<string, unknown>, opts.now ?? Date.now());
    if (fast) {
      const limit = opts.maxBytes ?? DEFAULT_MAX_EVENT_BYTES;
      const within = plainSizeWithin(fast, limit);
      if (within !== true) throw new AuditEventTooLargeError(within, limit);
      return fast;
    }
  }
  const removed: string[] = [];
  // Scrub first so that a secret field is dropped (and noted) rather than rejected as unknown.
  const scrubbed = scrub(input, '', removed, 0) as Record<string, unknown>;
  const parsed = auditEventInputSchema.safeParse(scrubbed);
  if (!parsed.success) throw firstIssue(parsed.error);
  const p = parsed.data;
  const e: AuditEvent = {
    schema_version: AUDIT_SCHEMA_VERSION,
    id: p.id ?? newEventId(),
    time: p.time ?? opts.now ?? Date.now(),
    kind: p.kind,
  };
  if (p.decision_id !== undefined) e.decision_id = p.decision_id;
  if (p.request_id !== undefined) e.request_id = p.request_id;
  if (p.trace_id !== undefined) e.trace_id = p.trace_id;
  if (p.source !== undefined) e.source = p.source;
  if (p.target !== undefined) e.target = p.target;
  if (p.outcome !== undefined) e.outcome = p.outcome;
  if (p.reason !== undefined) e.reason = p.reason;
  if (p.policy !== undefined) e.policy = p.policy;
  if (p.rule !== undefined) e.rule = p.rule;
  if (p.enforcer !== undefined) e.enforcer = p.enforcer;
  if (p.latency_us !== undefined) e.latency_us = p.latency_us;
  if (p.details !== undefined) e.details = p.details;
  const prior = (input as { redacted?: unknown }).redacted;
  if (prior !== undefined) throw new AuditEventError('"redacted" is set by the log, not by callers', 'redacted');
  if (removed.length > 0) e.redacted = removed;
  const size = canonicalSize(e);
  const limit = opts.maxBytes ?? DEFAULT_MAX_EVENT_BYTES;
  if (size > limit) throw new AuditEventTooLargeError(size, limit);
  return e;
}

const str = JSON.stringify;

function objectFields(o: Record<string, unknown>, keys: readonly string[]): string {
  let out = '{';
  for (const k of keys) {
    const v = o[k];
    if (v === undefined) continue;
    out += `${out.length > 1 ? ',' : ''}"${k}":${typeof v === 'string' ? str(v) : canonicalJson(v)}`;
  }
  return `${out}}`;
}

const SOURCE_KEYS = ['device_id', 'ip', 'namespace', 'service', 'spiffe_id', 'user'] as const;
const TARGET_KEYS = ['host', 'method', 'namespace', 'path', 'port', 'resource', 'service', 'spiffe_id'] as const;

/**
 * Canonical JSON of a normalized event (optionally with its `seq`), the exact bytes that are hashed
 * and stored: the same as {@link canonicalJson} of the event. Built once per event, at append.
 *
 * @example
 * canonicalEvent(e, 41) === canonicalJson({ ...e, seq: 41 }) // true
 */
export function canonicalEvent(e: AuditEvent, seq?: number): string {
  return e.details === undefined ? canonicalPlain(e, seq) : canonicalWithDetails(e, seq);
}

/**
 * Without `details` every key is known, so an object literal with its keys in sorted order gives
 * the canonical form through JSON.stringify (which drops undefined fields): native, and a flat
 * string, where concatenation leaves a tree of string pieces for the garbage collector (measured:
 * several µs per event). Not for `details`: JSON.stringify puts integer-like keys first, whatever
 * the order they were added in.
 */
function canonicalPlain(e: AuditEvent, seq: number | undefined): string {
  const s = e.source;
  const t = e.target;
  return JSON.stringify({
    decision_id: e.decision_id,
    enforcer: e.enforcer,
    id: e.id,
    kind: e.kind,
    latency_us: e.latency_us,
    outcome: e.outcome,
    policy: e.policy,
    reason: e.reason,
    redacted: e.redacted,
    request_id: e.request_id,
    rule: e.rule,
    schema_version: e.schema_version,
    seq,
    source:
      s === undefined
        ? undefined
        : {
            device_id: s.device_id,
            ip: s.ip,
            namespace: s.namespace,
            service: s.service,
            spiffe_id: s.spiffe_id,
            user: s.user,
          },
    target:
      t === undefined
        ? undefined
        : {
            host: t.host,
            method: t.method,
            namespace: t.namespace,
            path: t.path,
            port: t.port,
            resource: t.resource,
            service: t.service,
            spiffe_id: t.spiffe_id,
          },
    time: e.time,
    trace_id: e.trace_id,
  });
}

/** The canonical form of an event with `details`, field by field in key order. */
function canonicalWithDetails(e: AuditEvent, seq: number | undefined): string {
  // `id`, `kind`, `schema_version` and `time` are always present, so every later field is
  // preceded by a comma.
  let out = '{';
  if (e.decision_id !== undefined) out += `"decision_id":${str(e.decision_id)},`;
  if (e.details !== undefined) out += `"details":${canonicalJson(e.details)},`;
  if (e.enforcer !== undefined) out += `"enforcer":${str(e.enforcer)},`;
  out += `"id":${str(e.id)},"kind":${str(e.kind)}`;
  if (e.latency_us !== undefined) out += `,"latency_us":${canonicalJson(e.latency_us)}`;
  if (e.outcome !== undefined) out += `,"outcome":${str(e.outcome)}`;
  if (e.policy !== undefined) out += `,"policy":${str(e.policy)}`;
  if (e.reason !== undefined) out += `,"reason":${str(e.reason)}`;
  if (e.redacted !== undefined) out += `,"redacted":${canonicalJson(e.redacted)}`;
  if (e.request_id !== undefined) out += `,"request_id":${str(e.request_id)}`;
  if (e.rule !== undefined) out += `,"rule":${str(e.rule)}`;
  out += `,"schema_version":${e.schema_version}`;
  if (seq !== undefined) out += `,"seq":${seq}`;
  if (e.source !== undefined) out += `,"source":${objectFields(e.source, SOURCE_KEYS)}`;
  if (e.target !== undefined) out += `,"target":${objectFields(e.target, TARGET_KEYS)}`;
  out += `,"time":${canonicalJson(e.time)}`;
  if (e.trace_id !== undefined) out += `,"trace_id":${str(e.trace_id)}`;
  return `${out}}`;
}

/** UTF-8 length of `canonicalEvent(e)` (without `seq`). */
export function canonicalSize(e: AuditEvent): number {
  return Buffer.byteLength(canonicalEvent(e));
}

// Upper bounds for the size check of plain events (flat details, no redacted list): every key and
// punctuation of the canonical form fits in 512 bytes, a number in 24, and a string of n UTF-16
// units in 6n + 2 bytes (each unit is at most a six-byte \uXXXX escape; unescaped units take at
// most 3 bytes of UTF-8, a surrogate pair 4 for two units).
const PLAIN_OVERHEAD = 512;
const NUMBER_MAX = 24;

function stringsLength(o: object | undefined): number {
  let n = 0;
  if (o === undefined) return 0;
  for (const v of Object.values(o)) n += typeof v === 'string' ? v.length : 0;
  return n;
}

/** Upper bound of flat `details`' share of the canonical size: per entry its key, value and punctuation. */
function detailsBound(d: Record<string, unknown> | undefined): number {
  if (d === undefined) return 0;
  let n = 0;
  for (const k in d) {
    const v = d[k];
    n += 6 * k.length + 4 + (typeof v === 'string' ? 6 * v.length + 2 : NUMBER_MAX);
  }
  return n;
}

/**
 * Whether a plain event's canonical size is within `limit`, without encoding it when a cheap upper
 * bound already says so (the common case: events are far below the limit); exact otherwise.
 */
function plainSizeWithin(e: AuditEvent, limit: number): number | true {
  const chars =
    e.id.length +
    e.kind.length +
    (e.decision_id?.length ?? 0) +
    (e.request_id?.length ?? 0) +
    (e.trace_id?.length ?? 0) +
    (e.outcome?.length ?? 0) +
    (e.reason?.length ?? 0) +
    (e.policy?.length ?? 0) +
    (e.rule?.length ?? 0) +
    (e.enforcer?.length ?? 0) +
    stringsLength(e.source) +
    stringsLength(e.target);
  if (PLAIN_OVERHEAD + 4 * NUMBER_MAX + 6 * chars + detailsBound(e.details) <= limit) return true;
  const size = canonicalSize(e);
  return size <= limit ? true : size;
}

/**
 * Canonical JSON: object keys sorted by UTF-16 code units, no whitespace, `undefined` omitted.
 * The same event always gives the same bytes, on every engine and in every process.
 *
 * @example
 * canonicalJson({ b: 1, a: [true, null] }) // '{"a":[true,null],"b":1}'
 */
export function canonicalJson(v: unknown): string {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      if (!Number.isFinite(v)) throw new AuditEventError('numbers must be finite');
      return JSON.stringify(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object': {
      if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : canonicalJson(x))).join(',')}]`;
      const obj = v as Record<string, unknown>;
      const keys = Object.keys(obj).sort();
      let out = '{';
      let first = true;
      for (const k of keys) {
        const x = obj[k];
        if (x === undefined) continue;
        out += `${first ? '' : ','}${JSON.stringify(k)}:${canonicalJson(x)}`;
        first = false;
      }
      return `${out}}`;
    }
    default:
      throw new AuditEventError(`cannot encode a ${typeof v}`);
  }
}

/** The principal an event is about, for indexing: SPIFFE ID, else user, else service name, else IP. */
export function sourceKey(e: Pick<AuditEvent, 'source'>): string {
  const s = e.source;
  return s?.spiffe_id ?? s?.user ?? s?.service ?? s?.ip ?? '';
}

/**
 * The source key as logs written before service names were keyed had it (a caller known only by
 * a service name was indexed by its IP). `verify` accepts either for such events.
 */
export function legacySourceKey(e: Pick<AuditEvent, 'source'>): string {
  return e.source?.spiffe_id ?? e.source?.user ?? e.source?.ip ?? '';
}

/** The target an event is about, for indexing: service name, else SPIFFE ID, else host. */
export function targetKey(e: Pick<AuditEvent, 'target'>): string {
  return e.target?.service ?? e.target?.spiffe_id ?? e.target?.host ?? '';
}
