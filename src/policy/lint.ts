/**
 * Static checks over a policy set: shadowed rules, ALLOW rules a DENY always overrides,
 * principals outside the trust domain, allow-everyone on sensitive paths, stale dry-runs, path
 * prefixes without a `/` boundary, STEP_UP rules that no second factor can end (one that shows a
 * second factor, or one on device posture alone).
 * Subsumption is decided conservatively: a finding is reported only when it is certain.
 */
import type { Cidr, Condition, OperationMatch, Policy, Rule, SourceMatch, StringMatcher, Target } from './model.js';
import { formatStringMatcher } from './model.js';
import { isMfa } from './step-up.js';

export interface LintFinding {
  severity: 'error' | 'warning';
  code:
    | 'shadowed-rule'
    | 'allow-overridden-by-deny'
    | 'foreign-principal'
    | 'allow-everyone-sensitive'
    | 'stale-dry-run'
    | 'path-prefix-without-slash'
    | 'step-up-unsatisfiable';
  file: string;
  line: number;
  column: number;
  policy: string;
  rule?: string;
  message: string;
}

export interface LintOptions {
  /** Trust domain principals must belong to; default: the most common one among target SPIFFE IDs. */
  trustDomain?: string;
  /** Path prefixes that must never be open to everyone (default /admin, /internal, /debug). */
  sensitivePaths?: string[];
  /** Clock for the dry-run age check (epoch ms). */
  now?: number;
  /** Dry-run policies older than this are flagged (default 7 days). */
  maxDryRunDays?: number;
}

/** Does matcher `a` match every string `b` matches? */
function covers(a: StringMatcher, b: StringMatcher): boolean {
  if (a.kind === 'presence') return true;
  if (b.kind === 'presence') return false;
  if (a.kind === 'exact') return b.kind === 'exact' && a.value === b.value && a.value !== '';
  if (a.kind === 'prefix') return (b.kind === 'exact' || b.kind === 'prefix') && b.value.startsWith(a.value);
  return (b.kind === 'exact' || b.kind === 'suffix') && b.value.endsWith(a.value);
}

/** Field-level subsumption: `a` (a positive list, absent = anything) admits everything `b` admits. */
function listCovers(a: readonly StringMatcher[] | undefined, b: readonly StringMatcher[] | undefined): boolean {
  if (!a) return true;
  if (!b) return false;
  return b.every((mb) => a.some((ma) => covers(ma, mb)));
}

const sameList = <T>(a: readonly T[] | undefined, b: readonly T[] | undefined) =>
  JSON.stringify(a) === JSON.stringify(b);
const cidrText = (cs: readonly Cidr[] | undefined) => cs?.map((c) => c.text);

function sourceCovers(a: SourceMatch, b: SourceMatch): boolean {
  // Negative and IP fields are only compared for equality: enough to be certain, cheap to check.
  return (
    listCovers(a.principals, b.principals) &&
    listCovers(a.requestPrincipals, b.requestPrincipals) &&
    listCovers(a.namespaces, b.namespaces) &&
    listCovers(a.services, b.services) &&
    (!a.notPrincipals || sameList(a.notPrincipals, b.notPrincipals)) &&
    (!a.notRequestPrincipals || sameList(a.notRequestPrincipals, b.notRequestPrincipals)) &&
    (!a.notNamespaces || sameList(a.notNamespaces, b.notNamespaces)) &&
    (!a.notServices || sameList(a.notServices, b.notServices)) &&
    (!a.ipBlocks || sameList(cidrText(a.ipBlocks), cidrText(b.ipBlocks))) &&
    (!a.notIpBlocks || sameList(cidrText(a.notIpBlocks), cidrText(b.notIpBlocks))) &&
    (!a.remoteIpBlocks || sameList(cidrText(a.remoteIpBlocks), cidrText(b.remoteIpBlocks))) &&
    (!a.notRemoteIpBlocks || sameList(cidrText(a.notRemoteIpBlocks), cidrText(b.notRemoteIpBlocks)))
  );
}

function opCovers(a: OperationMatch, b: OperationMatch): boolean {
  return (
    listCovers(a.methods, b.methods) &&
    listCovers(a.paths, b.paths) &&
    listCovers(a.hosts, b.hosts) &&
    (!a.ports || (!!b.ports && b.ports.every((p) => a.ports?.includes(p)))) &&
    (!a.notMethods || sameList(a.notMethods, b.notMethods)) &&
    (!a.notPaths || sameList(a.notPaths, b.notPaths)) &&
    (!a.notHosts || sameList(a.notHosts, b.notHosts)) &&
    (!a.notPorts || sameList(a.notPorts, b.notPorts))
  );
}

/** Rule `a` matches every request rule `b` matches (for the same target). */
export function ruleCovers(a: Rule, b: Rule): boolean {
  if (a.when.length > 0 && JSON.stringify(a.when) !== JSON.stringify(b.when)) return false;
  if (a.from && !b.from?.every((sb) => a.from?.some((sa) => sourceCovers(sa, sb)))) return false;
  if (a.to && !b.to?.every((ob) => a.to?.some((oa) => opCovers(oa, ob)))) return false;
  return true;
}

/**
 * An MFA condition that holds *because* of a second factor: in a STEP_UP rule it steps up the
 * people who passed one, and passing another cannot end it (a step-up loop).
 */
function holdsAfterMfa(c: Condition): boolean {
  if (c.kind === 'bool') return c.attr === 'auth.mfa' && c.value;
  if (c.kind === 'number') return c.attr === 'auth.mfa_age' && (c.op === 'lt' || c.op === 'lte' || c.op === 'eq');
  return c.kind === 'string' && c.attr.type === 'field' && c.attr.name === 'auth.methods' && c.values !== undefined;
}

/** Target `a` selects every workload `b` selects. */
function targetCovers(a: Target, b: Target): boolean {
  if (a.namespace !== undefined && a.namespace !== b.namespace) return false;
  for (const [k, v] of Object.entries(a.labels ?? {})) if (b.labels?.[k] !== v) return false;
  return listCovers(a.spiffeIds, b.spiffeIds) && listCovers(a.services, b.services);
}

function trustDomainOf(m: StringMatcher): string | undefined {
  if (m.kind !== 'exact' && m.kind !== 'prefix') return undefined;
  const i = m.value.indexOf('/');
  return i > 0 ? m.value.slice(0, i) : m.kind === 'exact' ? m.value : undefined;
}

/**
 * Lints a policy set (in evaluation order).
 *
 * @example
 * for (const f of lintPolicies(snapshot.policies, { trustDomain: 'example.org' })) console.log(`${f.file}:${f.line}: ${f.message}`);
 */
export function lintPolicies(policies: readonly Policy[], opts: LintOptions = {}): LintFinding[] {
  const out: LintFinding[] = [];
  const at = (
    p: Policy,
    r: Rule | undefined,
    severity: LintFinding['severity'],
    code: LintFinding['code'],
    message: string,
  ) => out.push({ severity, code, ...(r ? r.loc : p.loc), policy: p.id, ...(r ? { rule: r.id } : {}), message });
  const sensitive = opts.sensitivePaths ?? ['/admin', '/internal', '/debug'];
  const now = opts.now ?? Date.now();
  const maxDays = opts.maxDryRunDays ?? 7;

  let td = opts.trustDomain;
  if (!td) {
    const count = new Map<string, number>();
    for (const p of policies) {
      for (const m of p.target.spiffeIds ?? []) {
        const d = m.kind === 'presence' ? undefined : /^spiffe:\/\/([^/]+)/.exec(m.value)?.[1];
        if (d) count.set(d, (count.get(d) ?? 0) + 1);
      }
    }
    td = [...count.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
  }

  const live = policies.filter((p) => !p.dryRun);
  for (const p of policies) {
    const rules = p.rules ?? [];
    rules.forEach((r, i) => {
      // Shadowed: an earlier rule of the same policy already matches everything this one does.
      const earlier = rules.slice(0, i).find((e) => ruleCovers(e, r));
      if (earlier)
        at(
          p,
          r,
          'warning',
          'shadowed-rule',
          `rule ${JSON.stringify(r.id)} is shadowed by earlier rule ${JSON.stringify(earlier.id)} of the same policy`,
        );
      if (td) {
        for (const s of r.from ?? []) {
          for (const m of [...(s.principals ?? []), ...(s.notPrincipals ?? [])]) {
            const d = trustDomainOf(m);
            if (d !== undefined && d !== td) {
              at(
                p,
                r,
                'warning',
                'foreign-principal',
                `principal ${formatStringMatcher(m)} is outside the trust domain ${td}`,
              );
            }
          }
        }
      }
      // `/v1/charges*` is a literal prefix: it also matches `/v1/chargesadmin`, rarely what was meant.
      for (const o of r.to ?? []) {
        for (const m of [...(o.paths ?? []), ...(o.notPaths ?? [])]) {
          if (m.kind !== 'prefix' || m.value.endsWith('/')) continue;
          at(
            p,
            r,
            'warning',
            'path-prefix-without-slash',
            `path ${JSON.stringify(formatStringMatcher(m))} also matches ${JSON.stringify(`${m.value}admin`)}: a prefix * that does not follow "/" is a literal prefix; for the path and what is under it write ${JSON.stringify(m.value)} and ${JSON.stringify(`${m.value}/*`)}`,
          );
        }
      }
      if (p.action === 'STEP_UP') {
        const c = r.when.find(holdsAfterMfa);
        const device = r.when.find((x) => x.key.startsWith('device.'));
        if (c)
          at(
            p,
            r,
            'warning',
            'step-up-unsatisfiable',
            `rule ${JSON.stringify(r.id)} steps up when ${c.key} shows a second factor, so passing one cannot end it (for "needs MFA" write auth.mfa equals false, auth.mfa_age gt N or auth.methods notValues [...])`,
          );
        else if (device && !r.when.some(isMfa))
          at(
            p,
            r,
            'warning',
            'step-up-unsatisfiable',
            `rule ${JSON.stringify(r.id)} steps up on ${device.key} alone: a second factor does not change the device, so passing one cannot end it (add auth.mfa equals false to step up once per session, or make the policy DENY)`,
          );
      }
      if (p.action === 'ALLOW' && !p.dryRun) {
        const everyone =
          !r.from ||
          r.from.some(
            (s) =>
              Object.keys(s).length === 0 ||
              (s.principals?.some((m) => m.kind === 'presence') && Object.keys(s).length === 1),
          );
        const hits = sensitive.filter(
          (sp) =>
            !r.to ||
            r.to.some(
              (o) =>
                !o.paths ||
                o.paths.some(
                  (m) =>
                    m.kind === 'presence' ||
                    (m.kind !== 'suffix' && (m.value.startsWith(sp) || sp.startsWith(m.value))),
                ),
            ),
        );
        if (everyone && r.when.length === 0 && hits.length > 0) {
          at(
            p,
            r,
            'error',
            'allow-everyone-sensitive',
            `rule ${JSON.stringify(r.id)} allows every caller on sensitive path ${hits.join(', ')}`,
          );
        }
        const deny = live.find(
          (d) =>
            d.action === 'DENY' && targetCovers(d.target, p.target) && (d.rules ?? []).some((dr) => ruleCovers(dr, r)),
        );
        if (deny)
          at(
            p,
            r,
            'warning',
            'allow-overridden-by-deny',
            `rule ${JSON.stringify(r.id)} can never allow: DENY policy ${JSON.stringify(deny.id)} always overrides it`,
          );
      }
    });
    if (p.dryRun) {
      const since = p.dryRunSince ? Date.parse(p.dryRunSince) : Number.NaN;
      if (Number.isNaN(since))
        at(
          p,
          undefined,
          'warning',
          'stale-dry-run',
          `dry-run policy ${JSON.stringify(p.id)} has no dryRunSince date; it cannot be aged`,
        );
      else if (now - since > maxDays * 86_400_000) {
        at(
          p,
          undefined,
          'warning',
          'stale-dry-run',
          `dry-run policy ${JSON.stringify(p.id)} has been in dry-run since ${p.dryRunSince} (more than ${maxDays} days): enforce it or remove it`,
        );
      }
    }
  }
  return out;
}
