/**
 * Who may call whom: edges from ALLOW rules (source principal or service → target), rendered
 * as JSON, Graphviz dot or Mermaid.
 */
import { formatStringMatcher, type Policy, type Rule, type StringMatcher, type Target } from './model.js';

export interface GraphEdge {
  from: string;
  to: string;
  policy: string;
  rule: string;
  /** `POST /v1/charges`-style operations; `*` when any. */
  operations: string[];
  conditional: boolean;
}

export interface PolicyGraph {
  nodes: string[];
  edges: GraphEdge[];
}

const fmt = (ms: readonly StringMatcher[] | undefined) => (ms ? ms.map(formatStringMatcher) : ['*']);

function targetLabel(p: Policy): string {
  const t = p.target;
  if (t.spiffeIds) return t.spiffeIds.map(formatStringMatcher).join(' | ');
  if (t.services) return t.services.map(formatStringMatcher).join(' | ');
  const parts: string[] = [];
  if (t.namespace !== undefined) parts.push(`ns:${t.namespace}`);
  if (t.labels) parts.push(...Object.entries(t.labels).map(([k, v]) => `${k}=${v}`));
  return parts.length ? parts.join(',') : '*';
}

/** What an allowed caller is matched on, as the rule says it. Principals are Istio principals (no `spiffe://`). */
export type AllowSource =
  | { readonly by: 'principal' | 'service' | 'namespace' | 'request_principal'; readonly match: StringMatcher }
  | { readonly by: 'any' };

/** One (source, target) an enforced ALLOW rule permits, as matchers: for matching observed calls. */
export interface AllowEdge {
  /** The edge's `from` in {@link GraphEdge} form (`spiffe://…`, a service, `ns:…`, `jwt:…`, `*`). */
  from: string;
  source: AllowSource;
  /** The edge's `to` in {@link GraphEdge} form. */
  to: string;
  /** The policy's target: every present field must hold. */
  target: Target;
  policy: Policy;
  rule: Rule;
}

/**
 * The (source, target) pairs of enforced ALLOW rules (dry-run policies left out), one per
 * distinct source of each rule; {@link policyGraph} draws them, the console's service graph
 * matches observed calls against them.
 */
export function allowEdges(policies: readonly Policy[]): AllowEdge[] {
  const edges: AllowEdge[] = [];
  for (const p of policies) {
    if (p.action !== 'ALLOW' || p.dryRun) continue;
    const to = targetLabel(p);
    for (const rule of p.rules ?? []) {
      const sources = new Map<string, AllowSource>();
      for (const s of rule.from ?? [{}]) {
        if (s.principals)
          for (const m of s.principals)
            sources.set(m.kind === 'presence' ? '*' : `spiffe://${formatStringMatcher(m)}`, {
              by: 'principal',
              match: m,
            });
        else if (s.services)
          for (const m of s.services) sources.set(formatStringMatcher(m), { by: 'service', match: m });
        else if (s.namespaces)
          for (const m of s.namespaces) sources.set(`ns:${formatStringMatcher(m)}`, { by: 'namespace', match: m });
        else if (s.requestPrincipals)
          for (const m of s.requestPrincipals)
            sources.set(`jwt:${formatStringMatcher(m)}`, { by: 'request_principal', match: m });
        else sources.set('*', { by: 'any' });
      }
      for (const [from, source] of sources) edges.push({ from, source, to, target: p.target, policy: p, rule });
    }
  }
  return edges;
}

/**
 * Builds the call graph of enforced ALLOW rules.
 *
 * @example
 * toDot(policyGraph(snapshot.policies)) // 'digraph policy { … }'
 */
export function policyGraph(policies: readonly Policy[]): PolicyGraph {
  const edges: GraphEdge[] = allowEdges(policies).map(({ from, to, policy, rule }) => ({
    from,
    to,
    policy: policy.id,
    rule: rule.id,
    operations: rule.to
      ? rule.to.flatMap((o) => fmt(o.methods).flatMap((m) => fmt(o.paths).map((pa) => `${m} ${pa}`)))
      : ['*'],
    conditional: rule.when.length > 0,
  }));
  const nodes = [...new Set(edges.flatMap((e) => [e.from, e.to]))].sort();
  return { nodes, edges };
}

const q = (s: string) => JSON.stringify(s);

/** Graphviz dot. */
export function toDot(g: PolicyGraph): string {
  const lines = ['digraph policy {', '  rankdir=LR;', '  node [shape=box];'];
  for (const n of g.nodes) lines.push(`  ${q(n)};`);
  for (const e of g.edges)
    lines.push(
      `  ${q(e.from)} -> ${q(e.to)} [label=${q(e.operations.join('\\n'))}${e.conditional ? ', style=dashed' : ''}];`,
    );
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

/** Mermaid flowchart. */
export function toMermaid(g: PolicyGraph): string {
  const id = new Map(g.nodes.map((n, i) => [n, `n${i}`]));
  const esc = (s: string) => s.replace(/"/g, '#quot;');
  const lines = ['flowchart LR'];
  for (const n of g.nodes) lines.push(`  ${id.get(n)}["${esc(n)}"]`);
  for (const e of g.edges)
    lines.push(
      `  ${id.get(e.from)} ${e.conditional ? '-.->' : '-->'}|"${esc(e.operations.join(', '))}"| ${id.get(e.to)}`,
    );
  return `${lines.join('\n')}\n`;
}
