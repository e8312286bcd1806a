/**
 * Who may call whom: edges from ALLOW rules (source principal or service → target), rendered
 * as JSON, Graphviz dot or Mermaid.
 */
import { formatStringMatcher, type Policy, type StringMatcher } from './model.js';

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

/**
 * Builds the call graph of enforced ALLOW rules.
 *
 * @example
 * toDot(policyGraph(snapshot.policies)) // 'digraph policy { … }'
 */
export function policyGraph(policies: readonly Policy[]): PolicyGraph {
  const edges: GraphEdge[] = [];
  for (const p of policies) {
    if (p.action !== 'ALLOW' || p.dryRun) continue;
    const to = targetLabel(p);
    for (const r of p.rules ?? []) {
      const sources = r.from
        ? r.from.flatMap((s) => {
            if (s.principals)
              return s.principals.map((m) => (m.kind === 'presence' ? '*' : `spiffe://${formatStringMatcher(m)}`));
            if (s.services) return fmt(s.services);
            if (s.namespaces) return fmt(s.namespaces).map((n) => `ns:${n}`);
            if (s.requestPrincipals) return fmt(s.requestPrincipals).map((n) => `jwt:${n}`);
            return ['*'];
          })
        : ['*'];
      const operations = r.to
        ? r.to.flatMap((o) => fmt(o.methods).flatMap((m) => fmt(o.paths).map((pa) => `${m} ${pa}`)))
        : ['*'];
      for (const from of [...new Set(sources)])
        edges.push({ from, to, policy: p.id, rule: r.id, operations, conditional: r.when.length > 0 });
    }
  }
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
