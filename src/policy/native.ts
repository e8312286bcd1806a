/**
 * The native policy format (`apiVersion: nevertrust.dev/v1`, `kind: AccessPolicy`); see
 * docs/policy-language.md. Structure is checked by zod (unknown fields are errors), meaning
 * (SPIFFE IDs, CIDRs, methods, paths, condition keys) by the converters.
 */
import { z } from 'zod';
import { condition, ipBlockFields, matchers, operationFields, reportZodIssues } from './convert.js';
import { istioPrincipal, spiffeParts } from './identity.js';
import type { Condition, OperationMatch, Policy, Rule, SourceMatch, StringMatcher, Target } from './model.js';
import { istioSourceShape, operationSchema } from './match-schema.js';
import type { PathOptions } from './path.js';
import type { DocContext } from './yamldoc.js';

export const NATIVE_API_VERSION = 'nevertrust.dev/v1';

const strs = z.array(z.string()).min(1);
const portList = z.array(z.union([z.number(), z.string()])).min(1);

const SourceSchema = z
  .object({
    ...istioSourceShape(strs),
    services: strs.optional(),
    notServices: strs.optional(),
  })
  .strict();

const OperationSchema = operationSchema(strs, portList);

const ConditionSchema = z
  .object({
    key: z.string(),
    values: strs.optional(),
    notValues: strs.optional(),
    equals: z.union([z.boolean(), z.number()]).optional(),
    gt: z.number().optional(),
    gte: z.number().optional(),
    lt: z.number().optional(),
    lte: z.number().optional(),
    timeZone: z.string().optional(),
    weekdays: strs.optional(),
    between: z.array(z.string()).optional(),
  })
  .strict();

const RuleSchema = z
  .object({
    name: z.string().min(1).optional(),
    from: z.array(SourceSchema).min(1).optional(),
    to: z.array(OperationSchema).min(1).optional(),
    when: z.array(ConditionSchema).min(1).optional(),
  })
  .strict();

export const NativePolicySchema = z
  .object({
    apiVersion: z.literal(NATIVE_API_VERSION),
    kind: z.literal('AccessPolicy'),
    metadata: z
      .object({
        name: z.string().regex(/^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$/, 'lower-case letters, digits, ".", "-", "_"'),
        description: z.string().optional(),
        labels: z.record(z.string(), z.string()).optional(),
      })
      .strict(),
    spec: z
      .object({
        action: z.enum(['ALLOW', 'DENY', 'STEP_UP', 'AUDIT']),
        target: z
          .object({
            spiffeIds: strs.optional(),
            services: strs.optional(),
            namespace: z.string().min(1).optional(),
            selector: z
              .object({ matchLabels: z.record(z.string(), z.string()) })
              .strict()
              .optional(),
          })
          .strict(),
        dryRun: z.boolean().optional(),
        dryRunSince: z.iso.date().optional(),
        rules: z.array(RuleSchema).optional(),
      })
      .strict(),
  })
  .strict();

export type NativePolicyDocument = z.infer<typeof NativePolicySchema>;

/** Principals are SPIFFE IDs (`spiffe://…`, with `*` patterns) and held in Istio form. */
function principals(
  ctx: DocContext,
  path: readonly PropertyKey[],
  vals: readonly string[] | undefined,
): StringMatcher[] | undefined {
  if (!vals) return undefined;
  const stripped = vals.map((v, i) => {
    if (v === '*' || v.startsWith('*')) return v;
    if (!v.startsWith('spiffe://')) {
      ctx.error(
        [...path, i],
        `principal ${JSON.stringify(v)} must be a SPIFFE ID or pattern (spiffe://…, *suffix or *)`,
      );
      return v;
    }
    if (!v.endsWith('*') && !spiffeParts(v)) ctx.error([...path, i], `invalid SPIFFE ID ${JSON.stringify(v)}`);
    return istioPrincipal(v);
  });
  return matchers(ctx, path, stripped);
}

function targetIds(
  ctx: DocContext,
  path: readonly PropertyKey[],
  vals: readonly string[] | undefined,
): StringMatcher[] | undefined {
  vals?.forEach((v, i) => {
    if (v.startsWith('*')) return;
    if (!v.startsWith('spiffe://'))
      ctx.error([...path, i], `target SPIFFE ID ${JSON.stringify(v)} must start with spiffe://`);
    else if (!v.endsWith('*') && !spiffeParts(v)) ctx.error([...path, i], `invalid SPIFFE ID ${JSON.stringify(v)}`);
  });
  return matchers(ctx, path, vals);
}

/**
 * Parses one native document (already read from YAML) into a policy; problems go to `ctx`.
 * Rule paths are checked against the request normalization `pathOptions` of the policy set.
 *
 * @example
 * const p = parseNativeDocument(ctx, doc.toJS());
 */
export function parseNativeDocument(ctx: DocContext, raw: unknown, pathOptions?: PathOptions): Policy | undefined {
  const r = NativePolicySchema.safeParse(raw);
  if (!r.success) {
    reportZodIssues(ctx, r.error.issues);
    return undefined;
  }
  const d = r.data;
  const s = d.spec;
  const t: Target = {
    ...(s.target.spiffeIds ? { spiffeIds: targetIds(ctx, ['spec', 'target', 'spiffeIds'], s.target.spiffeIds) } : {}),
    ...(s.target.services ? { services: matchers(ctx, ['spec', 'target', 'services'], s.target.services) } : {}),
    ...(s.target.namespace !== undefined ? { namespace: s.target.namespace } : {}),
    ...(s.target.selector ? { labels: s.target.selector.matchLabels } : {}),
  };
  const rules: Rule[] | undefined = s.rules?.map((rule, ri) => {
    const rp = ['spec', 'rules', ri];
    const from = rule.from?.map((f, i): SourceMatch => {
      const p = [...rp, 'from', i];
      return strip({
        principals: principals(ctx, [...p, 'principals'], f.principals),
        notPrincipals: principals(ctx, [...p, 'notPrincipals'], f.notPrincipals),
        requestPrincipals: matchers(ctx, [...p, 'requestPrincipals'], f.requestPrincipals),
        notRequestPrincipals: matchers(ctx, [...p, 'notRequestPrincipals'], f.notRequestPrincipals),
        namespaces: matchers(ctx, [...p, 'namespaces'], f.namespaces),
        notNamespaces: matchers(ctx, [...p, 'notNamespaces'], f.notNamespaces),
        services: matchers(ctx, [...p, 'services'], f.services),
        notServices: matchers(ctx, [...p, 'notServices'], f.notServices),
        ...ipBlockFields(ctx, p, f),
      });
    });
    const to = rule.to?.map((o, i): OperationMatch => {
      const p = [...rp, 'to', i];
      return strip(operationFields(ctx, p, o, pathOptions));
    });
    const when = (rule.when ?? [])
      .map((c, i) => condition(ctx, [...rp, 'when', i], c, 'native'))
      .filter((c): c is Condition => c !== undefined);
    return strip({ id: rule.name ?? String(ri), loc: ctx.locate(rp), from, to, when });
  });
  if (s.dryRunSince !== undefined && !s.dryRun) ctx.error(['spec', 'dryRunSince'], 'dryRunSince needs dryRun: true');
  const names = new Set<string>();
  rules?.forEach((r, i) => {
    if (names.has(r.id)) ctx.error(['spec', 'rules', i, 'name'], `duplicate rule name ${JSON.stringify(r.id)}`);
    names.add(r.id);
  });
  return strip({
    id: d.metadata.name,
    origin: 'native' as const,
    action: s.action,
    target: t,
    rules: rules && rules.length > 0 ? rules : undefined,
    dryRun: s.dryRun ?? false,
    dryRunSince: s.dryRunSince,
    loc: ctx.locate([]),
  });
}

/** Drops `undefined` fields so that the model (and its content hash) holds only what was written. */
export function strip<T extends object>(o: T): T {
  // Copy rather than `delete`: deleting turns objects into slow dictionary mode on the hot path.
  const out = {} as T;
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] !== undefined) out[k] = o[k];
  return out;
}
