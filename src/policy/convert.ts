/**
 * Field converters shared by the native and Istio parsers: raw YAML values (already
 * structurally checked by zod) into model values, reporting semantic mistakes with positions.
 */
import type { z } from 'zod';
import { parseConditionKey, timeFormatter } from './conditions.js';
import { parseCidr } from './match.js';
import { type Cidr, type Condition, type OperationMatch, parseStringMatcher, type StringMatcher } from './model.js';
import { KNOWN_METHODS, normalizePath, type PathOptions } from './path.js';
import type { DocContext } from './yamldoc.js';

type Path = readonly PropertyKey[];

/** Reports every zod issue at its YAML position; unknown fields point at the key itself. */
export function reportZodIssues(ctx: DocContext, issues: readonly z.core.$ZodIssue[], base: Path = []): void {
  for (const i of issues) {
    const path = [...base, ...i.path];
    if (i.code === 'unrecognized_keys')
      for (const k of i.keys) ctx.error(path, `unknown field ${JSON.stringify(k)}`, k);
    else ctx.error(path, i.message);
  }
}

export function matchers(
  ctx: DocContext,
  path: Path,
  vals: readonly string[] | undefined,
  lower = false,
): StringMatcher[] | undefined {
  if (!vals || vals.length === 0) return undefined;
  return vals.map((v, i) => {
    if (v === '') ctx.error([...path, i], 'empty string never matches; use "*" for presence');
    return parseStringMatcher(lower ? v.toLowerCase() : v);
  });
}

export function cidrs(ctx: DocContext, path: Path, vals: readonly string[] | undefined): Cidr[] | undefined {
  if (!vals || vals.length === 0) return undefined;
  const out: Cidr[] = [];
  vals.forEach((v, i) => {
    const c = parseCidr(v);
    if (typeof c === 'string') ctx.error([...path, i], c);
    else out.push(c);
  });
  return out;
}

export function ports(
  ctx: DocContext,
  path: Path,
  vals: readonly (string | number)[] | undefined,
): number[] | undefined {
  if (!vals || vals.length === 0) return undefined;
  return vals.map((v, i) => {
    const n = typeof v === 'number' ? v : /^[0-9]{1,5}$/.test(v) ? Number(v) : Number.NaN;
    if (!Number.isInteger(n) || n < 0 || n > 65535)
      ctx.error([...path, i], `invalid port ${JSON.stringify(v)} (exact port numbers only)`);
    return n;
  });
}

/** Methods must be upper-case known tokens: a lower-case method in a policy would never match. */
export function methods(ctx: DocContext, path: Path, vals: readonly string[] | undefined): StringMatcher[] | undefined {
  const ms = matchers(ctx, path, vals);
  ms?.forEach((m, i) => {
    if (m.kind === 'exact' && !KNOWN_METHODS.has(m.value)) {
      ctx.error([...path, i], `unknown or non-upper-case method ${JSON.stringify(m.value)}`);
    }
  });
  return ms;
}

/**
 * Rule paths must be what request normalization makes of a path (with the policy set's
 * `pathOptions`), or no request could ever match them: a DENY rule on `/v1//admin` would silently
 * never deny, since request paths have `//` merged. Such a path is refused, naming what it would
 * have to be. A prefix is checked as the start of a longer path (`/v1/charges/.*` may match
 * `/v1/charges/.well-known`), a suffix as the end of one.
 */
export function paths(
  ctx: DocContext,
  path: Path,
  vals: readonly string[] | undefined,
  pathOptions?: PathOptions,
): StringMatcher[] | undefined {
  const ms = matchers(ctx, path, vals);
  ms?.forEach((m, i) => {
    if (m.kind === 'presence') return;
    if (m.kind !== 'suffix' && !m.value.startsWith('/')) {
      ctx.error([...path, i], `path ${JSON.stringify(vals?.[i])} must begin with / (or be a *suffix pattern)`);
      return;
    }
    // A sentinel segment character after a prefix, and a root before a suffix, make them whole paths.
    const whole = m.kind === 'prefix' ? `${m.value}x` : m.kind === 'suffix' ? `/x${m.value}` : m.value;
    const n = normalizePath(whole, pathOptions);
    if (n.ok && n.path === whole) return;
    // What to write instead: the normalized path, or for a refused one what lenient mode makes of it.
    const fixed = n.ok ? n : normalizePath(whole, { ...pathOptions, strict: false });
    const write =
      fixed.ok && fixed.path !== whole
        ? ` (write ${JSON.stringify(m.kind === 'prefix' ? `${fixed.path.slice(0, -1)}*` : m.kind === 'suffix' ? `*${fixed.path.slice(2)}` : fixed.path)})`
        : '';
    const shown = JSON.stringify(vals?.[i]);
    ctx.error(
      [...path, i],
      n.ok
        ? `path ${shown} is not normalized: requests are normalized before matching, so it can never match${write}`
        : `path ${shown} can never match a request: ${n.reason}${write}`,
    );
  });
  return ms;
}

export interface RawCondition {
  key: string;
  values?: string[];
  notValues?: string[];
  equals?: boolean | number;
  gt?: number;
  gte?: number;
  lt?: number;
  lte?: number;
  timeZone?: string;
  weekdays?: string[];
  between?: string[];
}

const DAYS: Record<string, number> = { Sun: 0, Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6 };

function hhmm(s: string): number | undefined {
  const m = /^([01][0-9]|2[0-3]):([0-5][0-9])$/.exec(s);
  return m ? Number(m[1]) * 60 + Number(m[2]) : s === '24:00' ? 1440 : undefined;
}

/** Converts one `when` entry. Unknown keys are errors (Istio would silently ignore them). */
export function condition(
  ctx: DocContext,
  path: Path,
  c: RawCondition,
  dialect: 'istio' | 'native',
): Condition | undefined {
  const k = parseConditionKey(c.key, dialect);
  if (typeof k === 'string') {
    ctx.error([...path, 'key'], k);
    return undefined;
  }
  const used = (Object.keys(c) as (keyof RawCondition)[]).filter((f) => f !== 'key' && c[f] !== undefined);
  const allow = (fields: (keyof RawCondition)[]): boolean => {
    const bad = used.filter((f) => !fields.includes(f));
    for (const f of bad)
      ctx.error(path, `field ${JSON.stringify(f)} does not apply to key ${JSON.stringify(c.key)}`, f);
    return bad.length === 0;
  };
  switch (k.kind) {
    case 'string':
    case 'ip': {
      if (!allow(['values', 'notValues'])) return undefined;
      if (!c.values?.length && !c.notValues?.length) {
        ctx.error(path, `condition ${JSON.stringify(c.key)} needs values or notValues`);
        return undefined;
      }
      if (k.kind === 'ip') {
        return {
          kind: 'ip',
          key: c.key,
          attr: k.attr,
          values: cidrs(ctx, [...path, 'values'], c.values),
          notValues: cidrs(ctx, [...path, 'notValues'], c.notValues),
        };
      }
      const values = matchers(ctx, [...path, 'values'], c.values);
      const notValues = matchers(ctx, [...path, 'notValues'], c.notValues);
      if (k.attr.type === 'field' && k.attr.name === 'destination.port') {
        // Istio: destination.port supports exact match only.
        for (const [f, ms] of [
          ['values', values],
          ['notValues', notValues],
        ] as const) {
          ms?.forEach((m, i) => {
            if (m.kind !== 'exact' || !/^[0-9]{1,5}$/.test(m.value))
              ctx.error([...path, f, i], 'destination.port takes exact port numbers');
          });
        }
      }
      return { kind: 'string', key: c.key, attr: k.attr, values, notValues };
    }
    case 'bool':
      if (!allow(['equals'])) return undefined;
      if (typeof c.equals !== 'boolean') {
        ctx.error(path, `condition ${JSON.stringify(c.key)} needs equals: true|false`);
        return undefined;
      }
      return { kind: 'bool', key: c.key, attr: k.attr, value: c.equals };
    case 'number': {
      if (!allow(['equals', 'gt', 'gte', 'lt', 'lte'])) return undefined;
      if (used.length !== 1) {
        ctx.error(path, `condition ${JSON.stringify(c.key)} needs exactly one of equals, gt, gte, lt, lte`);
        return undefined;
      }
      const op = used[0] as 'equals' | 'gt' | 'gte' | 'lt' | 'lte';
      const value = c[op];
      if (typeof value !== 'number') {
        ctx.error([...path, op], 'expected a number');
        return undefined;
      }
      return { kind: 'number', key: c.key, attr: k.attr, op: op === 'equals' ? 'eq' : op, value };
    }
    case 'time': {
      if (!allow(['timeZone', 'weekdays', 'between'])) return undefined;
      if (!c.timeZone) {
        ctx.error(path, 'request.time needs a timeZone (IANA name, e.g. Europe/Berlin)');
        return undefined;
      }
      try {
        timeFormatter(c.timeZone);
      } catch {
        ctx.error([...path, 'timeZone'], `unknown time zone ${JSON.stringify(c.timeZone)}`);
        return undefined;
      }
      if (!c.weekdays && !c.between) {
        ctx.error(path, 'request.time needs weekdays and/or between');
        return undefined;
      }
      const weekdays = c.weekdays?.map((d, i) => {
        const n = DAYS[d];
        if (n === undefined)
          ctx.error(
            [...path, 'weekdays', i],
            `unknown weekday ${JSON.stringify(d)} (Mon, Tue, Wed, Thu, Fri, Sat, Sun)`,
          );
        return n ?? -1;
      });
      let between: [number, number] | undefined;
      if (c.between) {
        const a = hhmm(c.between[0] ?? '');
        const b = hhmm(c.between[1] ?? '');
        if (c.between.length !== 2 || a === undefined || b === undefined) {
          ctx.error([...path, 'between'], 'between takes two times ["HH:MM", "HH:MM"]');
          return undefined;
        }
        between = [a, b];
      }
      return { kind: 'time', key: 'request.time', timeZone: c.timeZone, weekdays, between };
    }
  }
}

type Strs = readonly string[] | undefined;

/** A `to` operation as both formats write it (already structurally checked). */
export interface RawOperation {
  hosts?: Strs;
  notHosts?: Strs;
  ports?: readonly (string | number)[];
  notPorts?: readonly (string | number)[];
  methods?: Strs;
  notMethods?: Strs;
  paths?: Strs;
  notPaths?: Strs;
}

/** The operation fields into the model, the same for the native and Istio formats (before `strip`). */
export function operationFields(
  ctx: DocContext,
  p: Path,
  o: RawOperation,
  pathOptions: PathOptions | undefined,
): OperationMatch {
  return {
    hosts: matchers(ctx, [...p, 'hosts'], o.hosts, true),
    notHosts: matchers(ctx, [...p, 'notHosts'], o.notHosts, true),
    ports: ports(ctx, [...p, 'ports'], o.ports),
    notPorts: ports(ctx, [...p, 'notPorts'], o.notPorts),
    methods: methods(ctx, [...p, 'methods'], o.methods),
    notMethods: methods(ctx, [...p, 'notMethods'], o.notMethods),
    paths: paths(ctx, [...p, 'paths'], o.paths, pathOptions),
    notPaths: paths(ctx, [...p, 'notPaths'], o.notPaths, pathOptions),
  };
}

/** The four IP-block fields of a source, the same in both formats. */
export function ipBlockFields(
  ctx: DocContext,
  p: Path,
  s: { ipBlocks?: Strs; notIpBlocks?: Strs; remoteIpBlocks?: Strs; notRemoteIpBlocks?: Strs },
) {
  return {
    ipBlocks: cidrs(ctx, [...p, 'ipBlocks'], s.ipBlocks),
    notIpBlocks: cidrs(ctx, [...p, 'notIpBlocks'], s.notIpBlocks),
    remoteIpBlocks: cidrs(ctx, [...p, 'remoteIpBlocks'], s.remoteIpBlocks),
    notRemoteIpBlocks: cidrs(ctx, [...p, 'notRemoteIpBlocks'], s.notRemoteIpBlocks),
  };
}
