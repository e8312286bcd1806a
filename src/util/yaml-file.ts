/**
 * A YAML config file checked against a zod schema, with the first problem located in the file:
 * `file:line:column: field: message`. The sidecar's, the access proxy's and the provider's config
 * files read through here (the main config and policy files have richer loaders of their own).
 */
import { LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';

/** The first thing wrong with a config file, and where. */
export interface YamlFileProblem {
  file: string;
  line: number;
  column: number;
  /** Dotted path of the field (`inbound.access_proxies.0`), or `(root)`. */
  field: string;
  message: string;
}

/** `file:line:column: field: message`. */
export const formatYamlProblem = (p: YamlFileProblem): string =>
  `${p.file}:${p.line}:${p.column}: ${p.field}: ${p.message}`;

/**
 * Parses `text` (the contents of `file`) and validates it with `schema`.
 *
 * @example
 * ```ts
 * const r = parseYamlFile('sidecar.yaml', readFileSync('sidecar.yaml', 'utf8'), SidecarConfigSchema);
 * if (!r.ok) throw new SidecarConfigError(formatYamlProblem(r.problem));
 * ```
 */
export function parseYamlFile<S extends z.ZodType>(
  file: string,
  text: string,
  schema: S,
): { ok: true; data: z.output<S> } | { ok: false; problem: YamlFileProblem } {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines });
  const bad = doc.errors[0];
  if (bad) {
    const at = bad.linePos?.[0] ?? lines.linePos(bad.pos[0]);
    return {
      ok: false,
      problem: {
        file,
        line: at.line,
        column: at.col,
        field: '(yaml)',
        message: bad.message.split('\n')[0] ?? 'bad YAML',
      },
    };
  }
  const r = schema.safeParse(doc.toJS());
  if (r.success) return { ok: true, data: r.data };
  const issue = r.error.issues[0];
  const path = (issue?.path ?? []) as (string | number)[];
  // The deepest node of the path that exists in the file (a missing field points at its parent).
  let at = { line: 1, col: 1 };
  for (let n = path.length; n >= 0; n--) {
    const node = (n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true)) as { range?: [number, number] } | null;
    if (node?.range) {
      at = lines.linePos(node.range[0]);
      break;
    }
  }
  const message =
    issue?.code === 'unrecognized_keys' ? `unknown field(s): ${issue.keys.join(', ')}` : (issue?.message ?? 'invalid');
  return {
    ok: false,
    problem: { file, line: at.line, column: at.col, field: path.map(String).join('.') || '(root)', message },
  };
}
