/**
 * Loads the configuration: defaults < YAML file < NEVERTRUST_* environment < command-line flags.
 * Every problem is reported with where it came from (file:line:column, variable or flag) and the
 * field path, and nothing starts until the whole configuration is valid.
 */
import { existsSync, readFileSync } from 'node:fs';
import { isMap, isScalar, LineCounter, type Node, parseDocument, type YAMLMap } from 'yaml';
import type { ZodType, z } from 'zod';
import { type ConfigProblem, ConfigError } from './errors.js';
import { type Config, configSchema } from './schema.js';

export interface LoadConfigOptions {
  /** Explicit file (`--config`). When absent, `./nevertrust.yaml` is used if it exists. */
  file?: string;
  /** Environment to read NEVERTRUST_* overrides from (default: process.env). */
  env?: NodeJS.ProcessEnv;
  /** Values from flags, as nested partial config; `flagNames` says which flag set which field. */
  overrides?: Record<string, unknown>;
  flagNames?: Record<string, string>;
  cwd?: string;
}

export const DEFAULT_CONFIG_FILE = 'nevertrust.yaml';
export const ENV_PREFIX = 'NEVERTRUST_';
/** Variables with the prefix that are not config keys (read elsewhere). */
const RESERVED_ENV = new Set(['NEVERTRUST_KEK', 'NEVERTRUST_CONFIG', 'NEVERTRUST_ADMIN_TOKEN']);

type Origin = { kind: 'env'; name: string } | { kind: 'flag'; name: string };

/** Leaf paths of the schema (`server.port`, …), used to map env names and suggest fixes for typos. */
function objectShape(schema: ZodType): Record<string, ZodType> | undefined {
  let s: ZodType = schema;
  // Unwrap default/prefault/optional wrappers to reach the object, if any.
  for (let i = 0; i < 5; i++) {
    const def = (
      s as unknown as { _zod: { def: { type: string; innerType?: ZodType; shape?: Record<string, ZodType> } } }
    )._zod.def;
    if (def.type === 'object') return def.shape;
    if (def.innerType) s = def.innerType;
    else return undefined;
  }
  return undefined;
}

export function configLeafPaths(schema: ZodType = configSchema, prefix: string[] = []): string[][] {
  const shape = objectShape(schema);
  if (!shape) return [prefix];
  return Object.entries(shape).flatMap(([k, v]) => configLeafPaths(v, [...prefix, k]));
}

function keysAt(path: (string | number)[]): string[] {
  let s: ZodType | undefined = configSchema;
  for (const p of path) {
    const shape: Record<string, ZodType> | undefined = s ? objectShape(s) : undefined;
    s = shape?.[String(p)];
  }
  return s ? Object.keys(objectShape(s) ?? {}) : [];
}

function levenshtein(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0] ?? 0;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j] ?? 0;
      d[j] = Math.min((d[j] ?? 0) + 1, (d[j - 1] ?? 0) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length] ?? 0;
}

function suggest(unknown: string, known: string[]): string | undefined {
  const best = known.map((k) => ({ k, d: levenshtein(unknown.toLowerCase(), k) })).sort((x, y) => x.d - y.d)[0];
  if (best && best.d <= Math.max(2, Math.floor(best.k.length / 3))) return `did you mean "${best.k}"?`;
  return known.length ? `known keys here: ${known.join(', ')}` : undefined;
}

/** Sets `value` at `path` inside nested plain objects, creating them as needed. */
export function setIn(target: Record<string, unknown>, path: string[], value: unknown): void {
  let cur = target;
  for (const p of path.slice(0, -1)) {
    const next = cur[p];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) cur[p] = {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[path[path.length - 1] as string] = value;
}

function deepMerge(base: unknown, over: unknown): unknown {
  if (typeof base !== 'object' || base === null || Array.isArray(base)) return over;
  if (typeof over !== 'object' || over === null || Array.isArray(over)) return over;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(over as Record<string, unknown>)) out[k] = deepMerge(out[k], v);
  return out;
}

/** Parses an env value as a YAML scalar so `8181` is a number and `true` a boolean, as in the file. */
function envValue(raw: string): unknown {
  try {
    const doc = parseDocument(raw);
    return doc.errors.length ? raw : doc.toJS();
  } catch {
    return raw;
  }
}

export function envOverrides(env: NodeJS.ProcessEnv): {
  values: Record<string, unknown>;
  origins: Map<string, Origin>;
} {
  const byName = new Map(configLeafPaths().map((p) => [ENV_PREFIX + p.join('_').toUpperCase(), p]));
  const values: Record<string, unknown> = {};
  const origins = new Map<string, Origin>();
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || raw === undefined || RESERVED_ENV.has(name)) continue;
    const path = byName.get(name);
    if (!path) continue;
    setIn(values, path, envValue(raw));
    origins.set(path.join('.'), { kind: 'env', name });
  }
  return { values, origins };
}

interface FileSource {
  file: string;
  doc: ReturnType<typeof parseDocument>;
  lines: LineCounter;
}

function locate(src: FileSource, node: Node | null | undefined): Pick<ConfigProblem, 'line' | 'column'> {
  const offset = node?.range?.[0];
  if (offset === undefined) return {};
  const { line, col } = src.lines.linePos(offset);
  return { line, column: col };
}

function readFile(file: string): { src: FileSource; value: unknown } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'file not found' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
    throw new ConfigError([{ where: file, file, field: '', message: `cannot read config: ${why}` }]);
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const src: FileSource = { file, doc, lines };
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((err) => {
        const pos = err.linePos?.[0] ?? lines.linePos(err.pos[0]);
        return {
          where: pos ? `${file}:${pos.line}:${pos.col}` : file,
          file,
          line: pos?.line,
          column: pos?.col,
          field: '',
          message: `invalid YAML: ${err.message.split('\n')[0]}`,
          hint: 'check indentation and that each key is followed by ": "',
        };
      }),
    );
  }
  const value = doc.toJS() ?? {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError([
      {
        where: `${file}:1:1`,
        file,
        line: 1,
        column: 1,
        field: '',
        message: 'the config file must be a YAML mapping (key: value)',
      },
    ]);
  }
  return { src, value };
}

/** Loads, merges and validates; throws ConfigError listing every problem. */
export function loadConfig(opts: LoadConfigOptions = {}): Config {
  const env = opts.env ?? process.env;
  const explicit = opts.file ?? env.NEVERTRUST_CONFIG;
  const file = explicit ?? (existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : undefined);
  let src: FileSource | undefined;
  let raw: unknown = {};
  if (file !== undefined) ({ src, value: raw } = readFile(file));

  const fromEnv = envOverrides(env);
  const origins = new Map(fromEnv.origins);
  for (const [field, flag] of Object.entries(opts.flagNames ?? {})) origins.set(field, { kind: 'flag', name: flag });
  raw = deepMerge(deepMerge(raw, fromEnv.values), opts.overrides ?? {});

  const parsed = configSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  throw new ConfigError(parsed.error.issues.flatMap((issue) => toProblems(issue, src, origins)));
}

function toProblems(
  issue: z.core.$ZodIssue,
  src: FileSource | undefined,
  origins: Map<string, Origin>,
): ConfigProblem[] {
  const path = issue.path.map(String);
  const unknownKeys = issue.code === 'unrecognized_keys' ? issue.keys : [undefined];
  return unknownKeys.map((key) => {
    const fieldPath = key === undefined ? path : [...path, key];
    const field = fieldPath.join('.');
    const known = keysAt(path);
    const message = key === undefined ? issue.message : `unknown key "${key}"`;
    const hint = key !== undefined ? suggest(key, known) : hintFor(issue);
    for (let i = fieldPath.length; i > 0; i--) {
      const origin = origins.get(fieldPath.slice(0, i).join('.'));
      if (origin) {
        const where = origin.kind === 'env' ? `environment variable ${origin.name}` : `flag ${origin.name}`;
        return { where, field, message, hint };
      }
    }
    if (src) {
      let node: Node | null | undefined;
      if (key !== undefined) {
        const parent = path.length ? src.doc.getIn(path, true) : src.doc.contents;
        if (isMap(parent)) {
          const pair = (parent as YAMLMap).items.find((p) => isScalar(p.key) && String(p.key.value) === key);
          node = pair?.key as Node | undefined;
        }
      } else {
        // The field itself, or the nearest ancestor present in the file (for a missing required field).
        for (let i = path.length; i >= 0 && !node; i--) {
          const n = i === 0 ? src.doc.contents : src.doc.getIn(path.slice(0, i), true);
          if (n && typeof n === 'object') node = n as Node;
        }
      }
      const pos = locate(src, node);
      const where = pos.line ? `${src.file}:${pos.line}:${pos.column}` : src.file;
      return { where, file: src.file, ...pos, field, message, hint };
    }
    return { where: 'defaults', field, message, hint };
  });
}

function hintFor(issue: z.core.$ZodIssue): string | undefined {
  if (issue.code === 'invalid_type' && issue.expected === 'number') return 'write a number without quotes, e.g. 8181';
  if (issue.code === 'invalid_value') return `one of: ${issue.values.map(String).join(', ')}`;
  if (issue.code === 'too_big' || issue.code === 'too_small') return undefined;
  return undefined;
}
