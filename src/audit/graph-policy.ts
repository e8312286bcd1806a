/**
 * The policy overlay of the service graph: whether an ALLOW rule of the snapshot in force covers an
 * observed (source key, target key) pair, and which concrete allowed pairs saw no call at all.
 *
 * An observed edge names its ends by the audit log's keys (a SPIFFE ID, a person's user name, a
 * service name), which is less than the request that was decided: `unknown` says the names cannot
 * tell (a rule on JWT principals, on labels other than `app`, on a SPIFFE ID when the event names
 * the target by its service). DENY policies are not drawn: the overlay shows what policy allows,
 * the edge's counts show what was decided. A rule with conditions counts as allowing.
 */
import { matchString } from '../policy/match.js';
import { type AllowEdge, allowEdges } from '../policy/graph.js';
import { istioPrincipal, type SpiffeParts, spiffeParts } from '../policy/identity.js';
import type { Policy, StringMatcher, Target } from '../policy/model.js';

export type PolicyVerdict = 'allowed' | 'not_allowed' | 'unknown';
type Match = 'yes' | 'no' | 'maybe';
/** What a node is, as far as the graph knows (see src/api/graph.ts). */
export type NodeKind = 'workload' | 'person' | 'other';

/** A key with what the policy engine would derive from it. */
interface Key {
  value: string;
  kind: NodeKind;
  parts: SpiffeParts | undefined;
}

const yes = (b: boolean): Match => (b ? 'yes' : 'no');

function both(a: Match, b: Match): Match {
  if (a === 'no' || b === 'no') return 'no';
  return a === 'maybe' || b === 'maybe' ? 'maybe' : 'yes';
}

function matchSource(e: AllowEdge, k: Key): Match {
  const s = e.source;
  switch (s.by) {
    case 'any':
      return 'yes';
    case 'principal':
      return k.parts ? yes(matchString(s.match, istioPrincipal(k.value))) : 'no';
    case 'namespace':
      return k.parts ? yes(matchString(s.match, k.parts.namespace)) : 'no';
    case 'service':
      if (k.parts) return yes(matchString(s.match, k.parts.service));
      return k.kind === 'person' ? 'no' : yes(matchString(s.match, k.value));
    case 'request_principal':
      return 'maybe';
  }
}

/** A plain target name against SPIFFE ID matchers: only a rule naming that service's ID might be it. */
function nameAgainstIds(ms: readonly StringMatcher[], name: string): Match {
  for (const m of ms) {
    if (m.kind !== 'exact' || spiffeParts(m.value)?.service === name) return 'maybe';
  }
  return 'no';
}

function matchTarget(t: Target, k: Key): Match {
  let r: Match = 'yes';
  const service = k.parts ? k.parts.service : k.value;
  if (t.spiffeIds)
    r = both(r, k.parts ? yes(t.spiffeIds.some((m) => matchString(m, k.value))) : nameAgainstIds(t.spiffeIds, k.value));
  if (t.services) r = both(r, yes(t.services.some((m) => matchString(m, service))));
  if (t.namespace !== undefined) r = both(r, k.parts ? yes(k.parts.namespace === t.namespace) : 'maybe');
  if (t.labels) {
    // Without labels in the request, the engine derives `app: <service>` and nothing else.
    for (const [label, value] of Object.entries(t.labels))
      r = both(r, label === 'app' ? yes(value === service) : 'maybe');
  }
  return r;
}

/** The node id a concrete allowed end stands for, or undefined for a pattern. */
function sourceId(e: AllowEdge): string | undefined {
  const s = e.source;
  if (s.by === 'any' || s.match.kind !== 'exact') return undefined;
  if (s.by === 'principal') return `spiffe://${s.match.value}`;
  return s.by === 'service' ? s.match.value : undefined;
}

function targetId(t: Target): string | undefined {
  if (t.namespace !== undefined || t.labels) return undefined;
  const only = (ms: readonly StringMatcher[] | undefined, other: unknown) =>
    ms?.length === 1 && other === undefined && ms[0]?.kind === 'exact' ? ms[0].value : undefined;
  return only(t.spiffeIds, t.services) ?? only(t.services, t.spiffeIds);
}

/** An allowed pair no call used in the window. */
export interface UnusedEdge {
  source: string;
  target: string;
}

/**
 * The allow edges of a snapshot, indexed by what an observed source can be looked up by, so that a
 * graph of 1,500 edges against 1,500 rules is not 2 million comparisons.
 */
export class PolicyOverlay {
  private readonly byPrincipal = new Map<string, AllowEdge[]>();
  private readonly byService = new Map<string, AllowEdge[]>();
  private readonly rest: AllowEdge[] = [];
  private readonly edges: AllowEdge[];

  /** The overlay of `policies` (the snapshot in force). */
  constructor(policies: readonly Policy[]) {
    this.edges = allowEdges(policies);
    for (const e of this.edges) {
      const s = e.source;
      if (s.by === 'principal' && s.match.kind === 'exact') push(this.byPrincipal, s.match.value, e);
      else if (s.by === 'service' && s.match.kind === 'exact') push(this.byService, s.match.value, e);
      else this.rest.push(e);
    }
  }

  private candidates(src: Key): AllowEdge[] {
    const out = [...this.rest];
    if (src.parts) out.push(...(this.byPrincipal.get(istioPrincipal(src.value)) ?? []));
    const service = src.parts ? src.parts.service : src.kind === 'person' ? undefined : src.value;
    if (service !== undefined) out.push(...(this.byService.get(service) ?? []));
    return out;
  }

  /**
   * Whether an ALLOW rule covers calls from `source` to `target` (node ids and kinds as the graph
   * has them); `used` is told every allow edge that might.
   */
  verdict(
    source: string,
    sourceKind: NodeKind,
    target: string,
    targetKind: NodeKind,
    used?: Set<AllowEdge>,
  ): PolicyVerdict {
    const s = keyOf(source, sourceKind);
    const t = keyOf(target, targetKind);
    let best: PolicyVerdict = 'not_allowed';
    for (const e of this.candidates(s)) {
      const m = both(matchSource(e, s), matchTarget(e.target, t));
      if (m === 'no') continue;
      used?.add(e);
      if (m === 'yes') best = 'allowed';
      else if (best === 'not_allowed') best = 'unknown';
    }
    return best;
  }

  /** Concrete allowed pairs (an exact source and an exact target) none of whose allow edges is in `used`. */
  unused(used: ReadonlySet<AllowEdge>): UnusedEdge[] {
    const pairs = new Map<string, UnusedEdge & { used: boolean }>();
    for (const e of this.edges) {
      const source = sourceId(e);
      const target = targetId(e.target);
      if (source === undefined || target === undefined) continue;
      // A pair two rules allow is used when either rule's edge is.
      const k = JSON.stringify([source, target]);
      const p = pairs.get(k) ?? { source, target, used: false };
      p.used ||= used.has(e);
      pairs.set(k, p);
    }
    return [...pairs.values()].filter((p) => !p.used).map(({ source, target }) => ({ source, target }));
  }
}

function keyOf(value: string, kind: NodeKind): Key {
  return { value, kind, parts: value.startsWith('spiffe://') ? spiffeParts(value) : undefined };
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}
