/**
 * Microsegmentation manifests from the same policies: Kubernetes NetworkPolicies (a default-deny
 * per namespace plus one allow per permitted edge) and Istio AuthorizationPolicies. What a target
 * format cannot express is skipped and reported in `warnings`, never silently widened.
 */
import { spiffeParts } from './identity.js';
import { formatStringMatcher, type Policy, type StringMatcher } from './model.js';

export interface ExportOptions {
  /** Pod label that carries the service-account name (default `app`, as the request derivation). */
  podLabel?: string;
}

export interface ExportResult {
  manifests: Record<string, unknown>[];
  warnings: string[];
}

const MANAGED = { 'app.kubernetes.io/managed-by': 'nevertrust' };

function dnsName(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/, '');
}

/** ns/sa of an exact `spiffe://td/ns/<ns>/sa/<sa>` matcher (target form or principal form). */
function nsSa(m: StringMatcher, principalForm: boolean): { ns: string; sa: string } | undefined {
  if (m.kind !== 'exact') return undefined;
  const p = spiffeParts(principalForm ? `spiffe://${m.value}` : m.value);
  return p?.namespace !== undefined && p.service !== undefined && /\/ns\/[^/]+\/sa\/[^/]+$/.test(p.path)
    ? { ns: p.namespace, sa: p.service }
    : undefined;
}

/**
 * Kubernetes NetworkPolicies: default-deny ingress in every namespace that has a policy target,
 * plus one ingress allow per (source workload → target workload) edge of an enforced ALLOW rule.
 *
 * @example
 * const { manifests } = exportNetworkPolicies(snapshot.policies);
 * process.stdout.write(manifests.map((m) => YAML.stringify(m)).join('---\n'));
 */
export function exportNetworkPolicies(policies: readonly Policy[], opts: ExportOptions = {}): ExportResult {
  const label = opts.podLabel ?? 'app';
  const warnings: string[] = [];
  const namespaces = new Set<string>();
  const edges = new Map<string, Record<string, unknown>>();
  for (const p of policies) {
    const targets = (p.target.spiffeIds ?? []).map((m) => nsSa(m, false));
    for (const t of targets) if (t) namespaces.add(t.ns);
    if (p.action !== 'ALLOW' || p.dryRun) continue;
    if (!p.target.spiffeIds || targets.some((t) => !t)) {
      warnings.push(`${p.id}: target is not an exact spiffe://…/ns/<ns>/sa/<sa> ID; no NetworkPolicy emitted`);
      continue;
    }
    for (const r of p.rules ?? []) {
      const srcs = (r.from ?? []).flatMap((s) => (s.principals ?? []).map((m) => ({ m, ok: nsSa(m, true) })));
      if (!r.from || srcs.length === 0 || srcs.some((s) => !s.ok)) {
        warnings.push(
          `${p.id}/${r.id}: sources are not exact ns/sa principals; no NetworkPolicy emitted (L3/L4 cannot express it)`,
        );
        continue;
      }
      const ports = [...new Set((r.to ?? []).flatMap((o) => o.ports ?? []))];
      for (const t of targets) {
        if (!t) continue;
        for (const { ok: s } of srcs) {
          if (!s) continue;
          const name = dnsName(`allow-${s.ns}-${s.sa}-to-${t.sa}`);
          const key = `${t.ns}/${name}/${ports.join(',')}`;
          if (edges.has(key)) continue;
          const ingress: Record<string, unknown> = {
            from: [
              {
                namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': s.ns } },
                podSelector: { matchLabels: { [label]: s.sa } },
              },
            ],
          };
          if (ports.length > 0) ingress.ports = ports.map((port) => ({ protocol: 'TCP', port }));
          edges.set(key, {
            apiVersion: 'networking.k8s.io/v1',
            kind: 'NetworkPolicy',
            metadata: {
              name,
              namespace: t.ns,
              labels: MANAGED,
              annotations: { 'nevertrust.dev/policy': p.id, 'nevertrust.dev/rule': r.id },
            },
            spec: { podSelector: { matchLabels: { [label]: t.sa } }, policyTypes: ['Ingress'], ingress: [ingress] },
          });
        }
      }
    }
  }
  const manifests: Record<string, unknown>[] = [...namespaces].sort().map((ns) => ({
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: 'default-deny-ingress', namespace: ns, labels: MANAGED },
    spec: { podSelector: {}, policyTypes: ['Ingress'] },
  }));
  manifests.push(...edges.values());
  return { manifests, warnings };
}

const strs = (ms: readonly StringMatcher[] | undefined) => ms?.map(formatStringMatcher);

function clean(o: Record<string, unknown>): Record<string, unknown> {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

/**
 * Istio AuthorizationPolicies (`security.istio.io/v1`) equivalent to the policies. Native
 * STEP_UP policies and access-context conditions (device, MFA, risk, time) have no Istio
 * equivalent: such rules are skipped with a warning.
 *
 * @example
 * const { manifests, warnings } = exportIstio(snapshot.policies);
 */
export function exportIstio(policies: readonly Policy[], opts: ExportOptions = {}): ExportResult {
  const label = opts.podLabel ?? 'app';
  const warnings: string[] = [];
  const manifests: Record<string, unknown>[] = [];
  for (const p of policies) {
    if (p.action === 'STEP_UP') {
      warnings.push(`${p.id}: STEP_UP has no Istio equivalent; skipped`);
      continue;
    }
    // Each exported document selects one workload: Istio has no "list of workloads" selector.
    const selectors: { ns?: string; labels?: Record<string, string> }[] = [];
    if (p.target.spiffeIds) {
      for (const m of p.target.spiffeIds) {
        const t = nsSa(m, false);
        if (t) selectors.push({ ns: t.ns, labels: { [label]: t.sa } });
        else warnings.push(`${p.id}: target ${formatStringMatcher(m)} is not an exact ns/sa SPIFFE ID; skipped`);
      }
    } else if (p.target.services) {
      for (const m of p.target.services) {
        if (m.kind === 'exact')
          selectors.push({ ns: p.target.namespace, labels: { ...p.target.labels, [label]: m.value } });
        else warnings.push(`${p.id}: service pattern ${formatStringMatcher(m)} cannot be a selector; skipped`);
      }
    } else selectors.push({ ns: p.target.namespace, labels: p.target.labels });
    const rules: Record<string, unknown>[] = [];
    let skipped = false;
    for (const r of p.rules ?? []) {
      if (
        r.when.some(
          (c) =>
            c.kind === 'bool' ||
            c.kind === 'number' ||
            c.kind === 'time' ||
            (c.kind === 'string' &&
              c.attr.type === 'field' &&
              (c.attr.name === 'source.service' ||
                c.attr.name === 'source.user' ||
                c.attr.name === 'auth.methods' ||
                c.attr.name === 'device.id')),
        )
      ) {
        warnings.push(`${p.id}/${r.id}: conditions without an Istio equivalent; rule skipped`);
        skipped = true;
        continue;
      }
      if (r.from?.some((s) => s.services || s.notServices)) {
        warnings.push(`${p.id}/${r.id}: source services have no Istio equivalent (use principals); rule skipped`);
        skipped = true;
        continue;
      }
      rules.push(
        clean({
          from: r.from?.map((s) => ({
            source: clean({
              principals: strs(s.principals),
              notPrincipals: strs(s.notPrincipals),
              requestPrincipals: strs(s.requestPrincipals),
              notRequestPrincipals: strs(s.notRequestPrincipals),
              namespaces: strs(s.namespaces),
              notNamespaces: strs(s.notNamespaces),
              ipBlocks: s.ipBlocks?.map((c) => c.text),
              notIpBlocks: s.notIpBlocks?.map((c) => c.text),
              remoteIpBlocks: s.remoteIpBlocks?.map((c) => c.text),
              notRemoteIpBlocks: s.notRemoteIpBlocks?.map((c) => c.text),
            }),
          })),
          to: r.to?.map((o) => ({
            operation: clean({
              hosts: strs(o.hosts),
              notHosts: strs(o.notHosts),
              ports: o.ports?.map(String),
              notPorts: o.notPorts?.map(String),
              methods: strs(o.methods),
              notMethods: strs(o.notMethods),
              paths: strs(o.paths),
              notPaths: strs(o.notPaths),
            }),
          })),
          when:
            r.when.length > 0
              ? r.when.map((c) =>
                  clean({
                    key: c.key,
                    values:
                      c.kind === 'string' ? strs(c.values) : c.kind === 'ip' ? c.values?.map((x) => x.text) : undefined,
                    notValues:
                      c.kind === 'string'
                        ? strs(c.notValues)
                        : c.kind === 'ip'
                          ? c.notValues?.map((x) => x.text)
                          : undefined,
                  }),
                )
              : undefined,
        }),
      );
    }
    // A DENY with dropped rules denies less than the original: say so rather than widen silently.
    if (skipped && p.action === 'DENY')
      warnings.push(`${p.id}: DENY policy exported with fewer rules than the original; review before applying`);
    const baseName = p.origin === 'istio' ? (p.id.split('/')[1] ?? p.id) : p.id;
    selectors.forEach((sel, i) => {
      const spec: Record<string, unknown> = {};
      if (sel.labels && Object.keys(sel.labels).length > 0) spec.selector = { matchLabels: sel.labels };
      if (p.action !== 'ALLOW') spec.action = p.action;
      if (p.provider) spec.provider = { name: p.provider };
      if (rules.length > 0) spec.rules = rules;
      const annotations: Record<string, string> = { 'nevertrust.dev/policy': p.id };
      if (p.dryRun) annotations['istio.io/dry-run'] = 'true';
      manifests.push({
        apiVersion: 'security.istio.io/v1',
        kind: 'AuthorizationPolicy',
        metadata: clean({
          name: dnsName(selectors.length > 1 ? `${baseName}-${i}` : baseName),
          namespace: sel.ns ?? 'istio-system',
          labels: MANAGED,
          annotations,
        }),
        spec,
      });
    });
  }
  return { manifests, warnings };
}
