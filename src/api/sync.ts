/**
 * The sync stream (`GET /agent/v1/sync`, NDJSON): one message a line. `state` carries the entries the
 * agent is authorized for and the bundle, sent on connect and on every change; `policy` the policy
 * snapshot (null: no policies, deny everything); `revoked` ends the stream of a banned or deleted
 * agent; `ping` keeps it alive.
 */
import { z } from 'zod';
import { entrySchema } from './entries.js';
import { jwksSchema } from './fields.js';

/**
 * A policy snapshot as it travels: the parsed documents and compile options. Their content is
 * checked where it is used: the agent compiles it and refuses it unless it hashes to `version`.
 */
const document = z.custom<object>(
  (v) => typeof v === 'object' && v !== null && !Array.isArray(v),
  'expected an object',
);
export const policyWireSchema = z.object({
  version: z.string().min(1),
  policies: z.array(document).readonly(),
  options: document.optional(),
});
export type PolicyWire = z.infer<typeof policyWireSchema>;

export const stateMessageSchema = z.object({
  type: z.literal('state'),
  entries: z.array(entrySchema),
  bundle: jwksSchema,
});
export const policyMessageSchema = z.object({ type: z.literal('policy'), policy: policyWireSchema.nullable() });
export const revokedMessageSchema = z.object({ type: z.literal('revoked'), reason: z.string() });
export const pingMessageSchema = z.object({ type: z.literal('ping') });

export const syncMessageSchema = z.discriminatedUnion('type', [
  stateMessageSchema,
  policyMessageSchema,
  revokedMessageSchema,
  pingMessageSchema,
]);
export type SyncMessage = z.infer<typeof syncMessageSchema>;
export type StateMessage = z.infer<typeof stateMessageSchema>;
export type PolicyMessage = z.infer<typeof policyMessageSchema>;

/** One NDJSON line of the stream. */
export function syncLine(msg: SyncMessage): string {
  return `${JSON.stringify(msg)}\n`;
}
