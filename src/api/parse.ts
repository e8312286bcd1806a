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
