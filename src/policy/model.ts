/**
 * The internal policy model. Native YAML and Istio AuthorizationPolicy documents both
 * parse into these types; the compiler, the evaluators and the analysis tools only ever
 * see this model, so there is one set of matching semantics.
 */

/** What a policy does when one of its rules matches. CUSTOM exists only for Istio documents. */
export type Action = 'ALLOW' | 'DENY' | 'STEP_UP' | 'AUDIT' | 'CUSTOM';

/** Where a policy element came from, for errors, lint findings and explanations. */
export interface SourceLocation {
  file: string;
  line: number;
  column: number;
}

/**
 * Istio's four string forms: `abc` exact, `abc*` prefix, `*abc` suffix, `*` presence (non-empty).
 */
export type StringMatcher =
  | { readonly kind: 'exact' | 'prefix' | 'suffix'; readonly value: string }
  | { readonly kind: 'presence' };

/** A parsed CIDR block; IPv4 and IPv6 addresses are held as bigints of their family's width. */
export interface Cidr {
  readonly family: 4 | 6;
  readonly network: bigint;
  readonly prefix: number;
  /** As written, for explanations and export. */
  readonly text: string;
}

/** `from[].source`: every present field must match (AND); values of one field are ORed. */
export interface SourceMatch {
  readonly principals?: readonly StringMatcher[];
  readonly notPrincipals?: readonly StringMatcher[];
  readonly requestPrincipals?: readonly StringMatcher[];
  readonly notRequestPrincipals?: readonly StringMatcher[];
  readonly namespaces?: readonly StringMatcher[];
  readonly notNamespaces?: readonly StringMatcher[];
  /** Native only: the caller's service name. */
  readonly services?: readonly StringMatcher[];
  readonly notServices?: readonly StringMatcher[];
  readonly ipBlocks?: readonly Cidr[];
  readonly notIpBlocks?: readonly Cidr[];
  readonly remoteIpBlocks?: readonly Cidr[];
  readonly notRemoteIpBlocks?: readonly Cidr[];
}

/** `to[].operation`. Hosts match case-insensitively, as in Istio. */
export interface OperationMatch {
  readonly hosts?: readonly StringMatcher[];
  readonly notHosts?: readonly StringMatcher[];
  readonly ports?: readonly number[];
  readonly notPorts?: readonly number[];
  readonly methods?: readonly StringMatcher[];
  readonly notMethods?: readonly StringMatcher[];
  readonly paths?: readonly StringMatcher[];
  readonly notPaths?: readonly StringMatcher[];
}

/** Attributes that string conditions read. */
export type StringAttr =
  | { readonly type: 'claim'; readonly path: readonly string[] }
  | { readonly type: 'header'; readonly name: string }
  | {
      readonly type: 'field';
      readonly name:
        | 'request.auth.principal'
        | 'request.auth.audiences'
        | 'request.auth.presenter'
        | 'source.namespace'
        | 'source.principal'
        | 'source.service'
        | 'source.user'
        | 'auth.methods'
        | 'device.id'
        | 'destination.port'
        | 'connection.sni';
    };

export type BoolAttr =
  | 'auth.mfa'
  | 'device.managed'
  | 'device.encrypted'
  | 'device.os_patched'
  | 'device.edr_active'
  /** Whether the device's enrolled owner is the session's user. */
  | 'device.owner_is_user';
/** `auth.mfa_age`: seconds since the last second factor, at `request.time` or the decision's clock. */
export type NumberAttr = 'risk.score' | 'device.posture_age' | 'auth.mfa_age' | 'destination.port';
export type IpAttr = 'source.ip' | 'remote.ip' | 'destination.ip';

/** One `when` entry. Every condition of a rule must hold. */
export type Condition =
  | {
      readonly kind: 'string';
      readonly key: string;
      readonly attr: StringAttr;
      readonly values?: readonly StringMatcher[];
      readonly notValues?: readonly StringMatcher[];
    }
  | {
      readonly kind: 'ip';
      readonly key: string;
      readonly attr: IpAttr;
      readonly values?: readonly Cidr[];
      readonly notValues?: readonly Cidr[];
    }
  | { readonly kind: 'bool'; readonly key: string; readonly attr: BoolAttr; readonly value: boolean }
  | {
      readonly kind: 'number';
      readonly key: string;
      readonly attr: NumberAttr;
      readonly op: 'gt' | 'gte' | 'lt' | 'lte' | 'eq';
      readonly value: number;
    }
  | {
      readonly kind: 'time';
      readonly key: 'request.time';
      readonly timeZone: string;
      /** 0 = Sunday … 6 = Saturday; absent = any day. */
      readonly weekdays?: readonly number[];
      /** Minutes after midnight, [start, end); start > end wraps past midnight. */
      readonly between?: readonly [number, number];
    };

export interface Rule {
  /** Name given in the document, else its index (`0`, `1`, …). */
  readonly id: string;
  readonly loc: SourceLocation;
  /** Absent: any source. Present: at least one must match. */
  readonly from?: readonly SourceMatch[];
  /** Absent: any operation. Present: at least one must match. */
  readonly to?: readonly OperationMatch[];
  readonly when: readonly Condition[];
}

/**
 * Which workloads a policy applies to. Every present field must hold. An empty target applies
 * to every workload (an Istio policy in the root namespace without selector).
 */
export interface Target {
  readonly namespace?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly spiffeIds?: readonly StringMatcher[];
  readonly services?: readonly StringMatcher[];
}

export interface Policy {
  /** Unique in a snapshot: `name` (native) or `namespace/name` (Istio). */
  readonly id: string;
  readonly origin: 'native' | 'istio';
  readonly action: Action;
  /** CUSTOM only: the extension provider name. */
  readonly provider?: string;
  readonly target: Target;
  /** `undefined`: the document has no rules and therefore matches nothing. */
  readonly rules?: readonly Rule[];
  readonly dryRun: boolean;
  /** ISO date from which the policy has been in dry-run, for lint. */
  readonly dryRunSince?: string;
  readonly loc: SourceLocation;
}

/** Turns `abc`, `abc*`, `*abc`, `*` into a matcher. */
export function parseStringMatcher(s: string): StringMatcher {
  if (s === '*') return { kind: 'presence' };
  if (s.length > 1 && s.endsWith('*')) return { kind: 'prefix', value: s.slice(0, -1) };
  if (s.length > 1 && s.startsWith('*')) return { kind: 'suffix', value: s.slice(1) };
  return { kind: 'exact', value: s };
}

/** The inverse of {@link parseStringMatcher}, for explanations and export. */
export function formatStringMatcher(m: StringMatcher): string {
  switch (m.kind) {
    case 'presence':
      return '*';
    case 'prefix':
      return `${m.value}*`;
    case 'suffix':
      return `*${m.value}`;
    default:
      return m.value;
  }
}
