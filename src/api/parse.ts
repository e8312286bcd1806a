/**
 * The one way a received wire message becomes a typed value: `parseWire(schema, value, what)`
 * validates it and, when it does not fit, throws {@link WireFormatError} naming the first field that
 * is wrong. Used by both ends: the server on requests, the agent and the CLI on the server's answers,
 * so nothing is ever cast blindly.
 */
import type { z } from 'zod';
import { NevertrustError } from '../errors.js';

/**
 * A message does not have the shape of its contract. `field` is the dotted path of the first problem
 * (`entries.0.spiffe_id`, or `(root)`). Status 502: when it answers an API request it is an upstream
 * fault (the peer that sent it), not the caller's.
 */
export class WireFormatError extends NevertrustError<'ERR_API_MALFORMED'> {
  override readonly name = 'WireFormatError';
  readonly code = 'ERR_API_MALFORMED';
  constructor(
    readonly what: string,
    readonly field: string,
    /** What is wrong with `field`. */
    readonly problem: string,
  ) {
    super(`${what}: ${field}: ${problem}`, { status: 502 });
  }
}

/** The dotted path and message of a zod error's first issue (`(root)` for the message itself). */
export function firstIssue(error: z.ZodError): { field: string; message: string } {
  const issue = error.issues[0];
  const field = issue?.path.map(String).join('.') || '(root)';
  if (issue?.code === 'unrecognized_keys') return { field, message: `unknown field(s): ${issue.keys.join(', ')}` };
  return { field, message: issue?.message ?? 'invalid' };
}

/**
 * `value` checked against `schema`; throws {@link WireFormatError} naming `what` and the field.
 *
 * @example
 * ```ts
 * const { entries } = parseWire(entryListSchema, json, 'GET /v1/admin/entries');
 * ```
 */
export function parseWire<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const { field, message } = firstIssue(r.error);
  throw new WireFormatError(what, field, message);
}

/**
 * A query string that does not fit its contract: the caller's fault, a 400 (`bad_query`) naming the
 * parameter in its message and in `field`.
 */
export class QueryParamError extends NevertrustError<'ERR_API_BAD_QUERY'> {
  override readonly name = 'QueryParamError';
  readonly code = 'ERR_API_BAD_QUERY';
  constructor(
    readonly field: string,
    /** What is wrong with `field`. */
    readonly problem: string,
  ) {
    super(`${field}: ${problem}`, { status: 400 });
  }

  override get reason(): string {
    return 'bad_query';
  }

  override get details(): Record<string, unknown> {
    return { field: this.field };
  }
}

/**
 * A request's query parameters checked against `schema` (an object of string fields, transformed as
 * it likes); a parameter given twice is refused rather than half-read. Throws {@link QueryParamError}.
 *
 * @example
 * ```ts
 * const { window } = parseQuery(dryRunQuerySchema, url.searchParams); // ?window=24h → 86400
 * ```
 */
export function parseQuery<S extends z.ZodType>(schema: S, params: URLSearchParams): z.output<S> {
  // Null prototype: `__proto__` is a parameter like any other (and refused as unknown).
  const raw = Object.create(null) as Record<string, string>;
  for (const [k, v] of params) {
    if (Object.hasOwn(raw, k)) throw new QueryParamError(k, 'given more than once');
    raw[k] = v;
  }
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const { field, message } = firstIssue(r.error);
  throw new QueryParamError(field, message);
}
