/**
 * Audit ingestion (`POST /v1/audit/events` on the API port, and on the agent port with an SVID): a
 * batch of events from enforcement points. Each event is validated by the audit log's own event
 * schema when it is appended (src/audit/event.ts); this contract is the envelope.
 */
import { z } from 'zod';

/** Most events in one batch (more is a 413). */
export const MAX_INGEST_BATCH = 10_000;

export const auditIngestRequestSchema = z.object(
  { events: z.array(z.unknown(), { error: 'expected {"events": [ … ]}' }) },
  { error: 'expected {"events": [ … ]}' },
);
export type AuditIngestRequest = z.infer<typeof auditIngestRequestSchema>;

/** How many were stored, how many were already there (same id), and the log's size after. */
export const auditIngestResponseSchema = z.object({
  stored: z.number().int().nonnegative(),
  duplicates: z.number().int().nonnegative(),
  tree_size: z.number().int().nonnegative(),
});
export type AuditIngestResponse = z.infer<typeof auditIngestResponseSchema>;
