/**
 * `when` conditions: parsing of condition keys and three-valued evaluation. A condition whose
 * attribute is missing from the request is *unknown* (`undefined`), which the evaluator turns
 * into "no match" for ALLOW/AUDIT and into "match" (fail closed) for native DENY/STEP_UP rules.
 */
import { cidrAny, matchAnyOf } from './match.js';
import type { BoolAttr, Condition, IpAttr, NumberAttr, StringAttr } from './model.js';
import type { NormalizedRequest } from './request.js';

/** Condition keys Istio defines (exactly these; anything else is rejected, not ignored). */
const ISTIO_FIELDS = new Set([
  'request.auth.principal',
  'request.auth.audiences',
  'request.auth.presenter',
  'source.namespace',
  'source.principal',
  'destination.port',
  'connection.sni',
]);
const IP_KEYS = new Set<IpAttr>(['source.ip', 'remote.ip', 'destination.ip']);
const BOOL_KEYS = new Set<BoolAttr>([
  'auth.mfa',
  'device.managed',
  'device.encrypted',
  'device.os_patched',
  'device.edr_active',
  'device.owner_is_user',
]);
const NUMBER_KEYS = new Set<NumberAttr>(['risk.score', 'device.posture_age', 'auth.mfa_age']);

/**
 * How far (seconds) a second factor may lie ahead of the decision's clock and still count, as
 * age 0: proxies' clocks differ a little. Further ahead is not a plausible MFA time, so the age is
 * unknown (fails closed in DENY/STEP_UP rules, never allows).
 */
export const MFA_CLOCK_SKEW_S = 60;

export type ParsedKey =
  | { kind: 'string'; attr: StringAttr }
  | { kind: 'ip'; attr: IpAttr }
  | { kind: 'bool'; attr: BoolAttr }
  | { kind: 'number'; attr: NumberAttr }
  | { kind: 'time' };

/**
 * Parses a condition key. `dialect` `istio` accepts only Istio's keys; `native` adds the
 * access-context keys (`auth.mfa`, `auth.mfa_age`, `auth.methods`, `device.*` (`device.id` a string), `risk.score`, `request.time`,
 * `source.service`, `source.user`).
 * Returns an error message for an unknown key.
 *
 * @example
 * parseConditionKey('request.auth.claims[groups][0]', 'istio') // { kind: 'string', attr: { type: 'claim', path: ['groups', '0'] } }
 */
export function parseConditionKey(key: string, dialect: 'istio' | 'native'): ParsedKey | string {
  const claims = /^request\.auth\.claims((?:\[[^\][]+\])+)$/.exec(key);
  if (claims) {
    const path = (claims[1] as string).slice(1, -1).split('][');
    return { kind: 'string', attr: { type: 'claim', path } };
  }
  const header = /^request\.headers\[([^\][]+)\]$/.exec(key);
  if (header) return { kind: 'string', attr: { type: 'header', name: (header[1] as string).toLowerCase() } };
  if (IP_KEYS.has(key as IpAttr)) return { kind: 'ip', attr: key as IpAttr };
  if (ISTIO_FIELDS.has(key)) return { kind: 'string', attr: { type: 'field', name: key as 'source.namespace' } };
  if (dialect === 'native') {
    if (key === 'source.service' || key === 'source.user' || key === 'auth.methods' || key === 'device.id')
      return { kind: 'string', attr: { type: 'field', name: key } };
    if (BOOL_KEYS.has(key as BoolAttr)) return { kind: 'bool', attr: key as BoolAttr };
    if (NUMBER_KEYS.has(key as NumberAttr)) return { kind: 'number', attr: key as NumberAttr };
    if (key === 'request.time') return { kind: 'time' };
  }
  if (key.startsWith('request.auth.claims') || key.startsWith('request.headers')) {
    return `malformed condition key ${JSON.stringify(key)}: use request.auth.claims[name] or request.headers[name]`;
  }
  // Istio documents cannot read the access context (device posture, MFA, risk): say where it can be written.
  if (dialect === 'istio' && typeof parseConditionKey(key, 'native') !== 'string')
    return `unknown condition key ${JSON.stringify(key)} in an Istio AuthorizationPolicy: it is a nevertrust key, write the rule in an AccessPolicy (apiVersion nevertrust.dev/v1)`;
  return `unknown condition key ${JSON.stringify(key)}`;
}

function claimValues(claims: Record<string, unknown> | undefined, path: readonly string[]): string[] | undefined {
  let cur: unknown = claims;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  if (typeof cur === 'string') return [cur];
  if (typeof cur === 'number' || typeof cur === 'boolean') return [String(cur)];
  // List claims (`groups`) match when any element matches; a space-separated `scope` too.
  if (Array.isArray(cur)) return cur.filter((x) => typeof x === 'string' || typeof x === 'number').map(String);
  return undefined;
}

/** The string values an attribute has on this request; `undefined` when absent. */
export function stringAttrValues(attr: StringAttr, r: NormalizedRequest): readonly string[] | undefined {
  switch (attr.type) {
    case 'claim':
      return claimValues(r.claims, attr.path);
    case 'header': {
      const v = r.headers[attr.name];
      return v === undefined ? undefined : [v];
    }
    case 'field': {
      let v: string | undefined;
      switch (attr.name) {
        case 'request.auth.principal':
          v = r.requestPrincipal;
          break;
        case 'request.auth.audiences':
          return r.audiences;
        case 'request.auth.presenter':
          v = r.presenter;
          break;
        case 'source.namespace':
          v = r.sourceNamespace;
          break;
        case 'source.principal':
          v = r.sourcePrincipal;
          break;
        case 'source.service':
          v = r.sourceService;
          break;
        case 'source.user':
          v = r.user;
          break;
        case 'device.id':
          v = r.device?.id;
          break;
        case 'auth.methods':
          // A list, like a list claim: `values` match when any method does, `notValues` when none does.
          return r.amr;
        case 'destination.port':
          v = r.port === undefined ? undefined : String(r.port);
          break;
        case 'connection.sni':
          v = r.sni;
          break;
      }
      return v === undefined ? undefined : [v];
    }
  }
}

function boolAttr(attr: BoolAttr, r: NormalizedRequest): boolean | undefined {
  if (attr === 'auth.mfa') return r.mfa;
  const d = r.device;
  if (!d) return undefined;
  switch (attr) {
    case 'device.managed':
      return d.managed;
    case 'device.encrypted':
      return d.encrypted;
    case 'device.os_patched':
      return d.os_patched;
    case 'device.owner_is_user':
      return d.owner_is_user;
    default:
      return d.edr_active;
  }
}

/**
 * Seconds since the last second factor at `request.time`, else at `now` (epoch ms); `undefined`
 * without one, or when it lies more than {@link MFA_CLOCK_SKEW_S} ahead of that time (or `now`
 * was not read: NaN).
 */
export function mfaAge(r: NormalizedRequest, now: number): number | undefined {
  if (r.mfaTime === undefined) return undefined;
  const age = (r.time ?? now) / 1000 - r.mfaTime;
  if (!(age >= -MFA_CLOCK_SKEW_S)) return undefined;
  return age < 0 ? 0 : age;
}

/** Whether evaluating `c` may need the clock (a request without `request.time` is measured at now). */
export function readsClock(c: Condition): boolean {
  return c.kind === 'time' || (c.kind === 'number' && c.attr === 'auth.mfa_age');
}

function numberAttr(attr: NumberAttr, r: NormalizedRequest, now: number): number | undefined {
  if (attr === 'risk.score') return r.riskScore;
  if (attr === 'device.posture_age') return r.device?.posture_age_s;
  if (attr === 'auth.mfa_age') return mfaAge(r, now);
  return r.port;
}

const formatters = new Map<string, Intl.DateTimeFormat>();
const WEEKDAYS: Record<string, number> = { Sun: 0, Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6 };

/** Throws RangeError for an unknown IANA time zone; caches the formatter for evaluation. */
export function timeFormatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      weekday: 'short',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** Weekday (0 = Sunday) and minutes after midnight of `epochMs` in `timeZone`. */
export function localTime(epochMs: number, timeZone: string): { weekday: number; minutes: number } {
  let weekday = 0;
  let hour = 0;
  let minute = 0;
  for (const p of timeFormatter(timeZone).formatToParts(epochMs)) {
    if (p.type === 'weekday') weekday = WEEKDAYS[p.value] ?? 0;
    else if (p.type === 'hour') hour = Number(p.value);
    else if (p.type === 'minute') minute = Number(p.value);
  }
  return { weekday, minutes: hour * 60 + minute };
}

/**
 * Evaluates one condition: `true`, `false`, or `undefined` when the attribute it reads is absent.
 * `now` (epoch ms) stands in for a missing `request.time` (`request.time` and `auth.mfa_age`
 * conditions read it: see {@link readsClock}).
 *
 * @example
 * evalCondition({ kind: 'number', key: 'risk.score', attr: 'risk.score', op: 'gt', value: 0.8 }, req, Date.now())
 */
export function evalCondition(c: Condition, r: NormalizedRequest, now: number): boolean | undefined {
  switch (c.kind) {
    case 'string': {
      const vs = stringAttrValues(c.attr, r);
      if (vs === undefined) return undefined;
      if (c.values && !matchAnyOf(c.values, vs)) return false;
      if (c.notValues && matchAnyOf(c.notValues, vs)) return false;
      return true;
    }
    case 'ip': {
      const ip = c.attr === 'source.ip' ? r.sourceIp : c.attr === 'remote.ip' ? r.remoteIp : r.destinationIp;
      if (!ip) return undefined;
      if (c.values && !cidrAny(c.values, ip)) return false;
      if (c.notValues && cidrAny(c.notValues, ip)) return false;
      return true;
    }
    case 'bool': {
      const v = boolAttr(c.attr, r);
      return v === undefined ? undefined : v === c.value;
    }
    case 'number': {
      const v = numberAttr(c.attr, r, now);
      if (v === undefined) return undefined;
      switch (c.op) {
        case 'gt':
          return v > c.value;
        case 'gte':
          return v >= c.value;
        case 'lt':
          return v < c.value;
        case 'lte':
          return v <= c.value;
        default:
          return v === c.value;
      }
    }
    case 'time': {
      const t = localTime(r.time ?? now, c.timeZone);
      if (c.weekdays && !c.weekdays.includes(t.weekday)) return false;
      if (c.between) {
        const [a, b] = c.between;
        const inside = a <= b ? t.minutes >= a && t.minutes < b : t.minutes >= a || t.minutes < b;
        if (!inside) return false;
      }
      return true;
    }
  }
}
