/**
 * The policy benchmarks' workload: 10 rules on each of 1,000 services (caller, method and path
 * prefix derived deterministically, so every engine gets the same rules) and a fixed request mix —
 * 70 % allowed, 30 % denied with a `..` path. Shared by policy-decision and policy-hot-path.
 */
export const SERVICES = 1000;
export const RULES_PER_SERVICE = 10;
export const TD = 'example.org';
export const ns = (i: number) => `ns-${i % 20}`;
export const svc = (i: number) => `svc-${i}`;
export const id = (i: number) => `spiffe://${TD}/ns/${ns(i)}/sa/${svc(i)}`;
// Caller k of service i, and what it may do: deterministic so every engine gets the same rules.
export const caller = (i: number, k: number) => (i * 31 + k * 97 + 1) % SERVICES;
export const method = (k: number) => (k % 3 === 0 ? 'GET' : 'POST');
export const pathPrefix = (k: number) => `/v1/r${k}/`;

export interface Edge {
  target: number;
  source: number;
  method: string;
  prefix: string;
}

export function edges(services: number, perService: number): Edge[] {
  const out: Edge[] = [];
  for (let i = 0; i < services; i++) {
    for (let k = 0; k < perService; k++)
      out.push({ target: i, source: caller(i, k) % services, method: method(k), prefix: pathPrefix(k) });
  }
  return out;
}

export function nativeYaml(es: Edge[]): string {
  const byTarget = new Map<number, Edge[]>();
  for (const e of es) byTarget.set(e.target, [...(byTarget.get(e.target) ?? []), e]);
  const docs: string[] = [];
  for (const [t, list] of byTarget) {
    const rules = list
      .map(
        (e, k) =>
          `    - name: r${k}\n      from: [{ principals: [${id(e.source)}] }]\n      to: [{ methods: [${e.method}], paths: ['${e.prefix}*'] }]`,
      )
      .join('\n');
    docs.push(
      `apiVersion: nevertrust.dev/v1\nkind: AccessPolicy\nmetadata: { name: ${svc(t)}-ingress }\nspec:\n  action: ALLOW\n  target: { spiffeIds: [${id(t)}] }\n  rules:\n${rules}\n`,
    );
  }
  return docs.join('---\n');
}

export const CASBIN_MODEL = `
[request_definition]
r = sub, obj, act, path
[policy_definition]
p = sub, obj, act, path
[policy_effect]
e = some(where (p.eft == allow))
[matchers]
m = r.sub == p.sub && r.obj == p.obj && r.act == p.act && keyMatch(r.path, p.path)
`;

export interface Req {
  source: number;
  target: number;
  method: string;
  path: string;
}

export function requests(n: number): Req[] {
  const out: Req[] = [];
  let seed = 42;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  for (let j = 0; j < n; j++) {
    const target = Math.floor(rnd() * SERVICES);
    const k = Math.floor(rnd() * RULES_PER_SERVICE);
    if (rnd() < 0.7)
      out.push({ source: caller(target, k), target, method: method(k), path: `${pathPrefix(k)}item-${j}` });
    else
      out.push({
        source: Math.floor(rnd() * SERVICES),
        target,
        method: rnd() < 0.5 ? 'DELETE' : 'POST',
        path: `/v1/r${k}/../admin/${j}`,
      });
  }
  return out;
}
