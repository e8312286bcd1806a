/**
 * Istio AuthorizationPolicy (`security.istio.io/v1` and `v1beta1`) with Istio's semantics.
 * Differences, all towards safety: unknown `when` keys, lower-case methods, unnormalized paths,
 * and `targetRef(s)` (which need gateway context we do not have) are rejected instead of ignored.
 */
import { z } from 'zod';
import { condition, ipBlockFields, matchers, operationFields, reportZodIssues } from './convert.js';
import type { Condition, OperationMatch, Policy, Rule, SourceMatch, Target } from './model.js';
import { strip } from './native.js';
import { istioSourceShape, operationSchema } from './match-schema.js';
import type { PathOptions } from './path.js';
import type { DocContext } from './yamldoc.js';

export const ISTIO_API_VERSIONS = ['security.istio.io/v1', 'security.istio.io/v1beta1'] as const;

// Istio uses proto3: an empty list is the same as an absent one, so lists may be empty here.
const strs = z.array(z.string());
const portList = z.array(z.union([z.string(), z.number()]));

const SourceSchema = z.object(istioSourceShape(strs)).strict();

const OperationSchema = operationSchema(strs, portList);

const RuleSchema = z
  .object({
    from: z.array(z.object({ source: SourceSchema.optional() }).strict()).optional(),
    to: z.array(z.object({ operation: OperationSchema.optional() }).strict()).optional(),
    when: z
      .array(z.object({ key: z.string(), values: strs.optional(), notValues: strs.optional() }).strict())
      .optional(),
  })
  .strict();

export const IstioPolicySchema = z
  .object({
    apiVersion: z.enum(ISTIO_API_VERSIONS),
    kind: z.literal('AuthorizationPolicy'),
    // Kubernetes adds many metadata fields (uid, resourceVersion, …): only the ones we read are checked.
    metadata: z.looseObject({
      name: z.string().min(1),
      namespace: z.string().min(1).optional(),
      annotations: z.record(z.string(), z.string()).optional(),
    }),
    spec: z
      .object({
        selector: z
          .object({ matchLabels: z.record(z.string(), z.string()).optional() })
          .strict()
          .optional(),
        targetRef: z.unknown().optional(),
        targetRefs: z.unknown().optional(),
        action: z.enum(['ALLOW', 'DENY', 'AUDIT', 'CUSTOM']).optional(),
        provider: z
          .object({ name: z.string().min(1) })
          .strict()
          .optional(),
        rules: z.array(RuleSchema).optional(),
      })
      .strict()
      .optional(),
    status: z.unknown().optional(),
  })
  .strict();

export interface IstioOptions {
  /** Policies in this namespace apply to every namespace (default `istio-system`). */
  rootNamespace?: string;
  /** Namespace of documents without `metadata.namespace` (default `default`, as kubectl would). */
  defaultNamespace?: string;
}

const nonEmpty = <T>(a: readonly T[] | undefined): a is readonly T[] => a !== undefined && a.length > 0;

/**
 * Parses one AuthorizationPolicy document into a policy; problems go to `ctx`.
 *
 * @example
 * const p = parseIstioDocument(ctx, doc.toJS(), { rootNamespace: 'istio-system' });
 */
export function parseIstioDocument(
  ctx: DocContext,
  raw: unknown,
  opts: IstioOptions = {},
  pathOptions?: PathOptions,
): Policy | undefined {
  const r = IstioPolicySchema.safeParse(raw);
  if (!r.success) {
    reportZodIssues(ctx, r.error.issues);
    return undefined;
  }
  const d = r.data;
  const spec = d.spec ?? {};
  if (spec.targetRef !== undefined) ctx.error(['spec'], 'targetRef is not supported (use selector)', 'targetRef');
  if (spec.targetRefs !== undefined) ctx.error(['spec'], 'targetRefs is not supported (use selector)', 'targetRefs');
  const action = spec.action ?? 'ALLOW';
  if (action === 'CUSTOM' && !spec.provider) ctx.error(['spec'], 'CUSTOM action needs provider.name');
  if (action !== 'CUSTOM' && spec.provider)
    ctx.error(['spec', 'provider'], 'provider is only valid with action CUSTOM');
  const ns = d.metadata.namespace ?? opts.defaultNamespace ?? 'default';
  const root = opts.rootNamespace ?? 'istio-system';
  const labels = spec.selector?.matchLabels;
  const target: Target = strip({
    namespace: ns === root ? undefined : ns,
    labels: labels && Object.keys(labels).length > 0 ? labels : undefined,
  });
  const rules: Rule[] | undefined = spec.rules?.map((rule, ri) => {
    const rp = ['spec', 'rules', ri];
    const from = rule.from?.map((f, i): SourceMatch => {
      const p = [...rp, 'from', i, 'source'];
      const s = f.source ?? {};
      return strip({
        principals: matchers(ctx, [...p, 'principals'], s.principals),
        notPrincipals: matchers(ctx, [...p, 'notPrincipals'], s.notPrincipals),
        requestPrincipals: matchers(ctx, [...p, 'requestPrincipals'], s.requestPrincipals),
        notRequestPrincipals: matchers(ctx, [...p, 'notRequestPrincipals'], s.notRequestPrincipals),
        namespaces: matchers(ctx, [...p, 'namespaces'], s.namespaces),
        notNamespaces: matchers(ctx, [...p, 'notNamespaces'], s.notNamespaces),
        ...ipBlockFields(ctx, p, s),
      });
    });
    const to = rule.to?.map((t, i): OperationMatch => {
      const p = [...rp, 'to', i, 'operation'];
      const o = t.operation ?? {};
      return strip(operationFields(ctx, p, o, pathOptions));
    });
    const when = (rule.when ?? [])
      .map((c, i) => condition(ctx, [...rp, 'when', i], c, 'istio'))
      .filter((c): c is Condition => c !== undefined);
    return strip({
      id: String(ri),
      loc: ctx.locate(rp),
      from: nonEmpty(from) ? from : undefined,
      to: nonEmpty(to) ? to : undefined,
      when,
    });
  });
  const dryRun = d.metadata.annotations?.['istio.io/dry-run'] === 'true';
  return strip({
    id: `${ns}/${d.metadata.name}`,
    origin: 'istio' as const,
    action,
    provider: spec.provider?.name,
    target,
    rules: nonEmpty(rules) ? rules : undefined,
    dryRun,
    loc: ctx.locate([]),
  });
}
