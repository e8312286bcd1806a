import { compile, type CompileOptions, decide, type Decision, parsePolicyText } from '../../src/policy/index.js';

/** Compiles YAML text (native and/or Istio documents). */
export function snap(yaml: string, opts: CompileOptions = {}) {
  return compile(parsePolicyText(yaml, 'test.yaml'), opts);
}

export const ID = (ns: string, sa: string) => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;

/** A request from `from` (ns/sa) to workload `app` in `ns`. */
export function req(
  to: { ns: string; app: string; labels?: Record<string, string> },
  op: { method?: string; path?: string; port?: number; host?: string } = {},
  from?: { ns: string; sa: string; claims?: Record<string, unknown>; ip?: string; headers?: Record<string, string> },
) {
  return {
    source: from ? { spiffe_id: ID(from.ns, from.sa), claims: from.claims, ip: from.ip } : undefined,
    target: { spiffe_id: ID(to.ns, to.app), labels: to.labels, port: op.port, host: op.host },
    request: { method: op.method ?? 'GET', path: op.path ?? '/', headers: from?.headers },
  };
}

export const d = (s: ReturnType<typeof snap>, r: Parameters<typeof decide>[1]): Decision['decision'] =>
  decide(s, r).decision;
