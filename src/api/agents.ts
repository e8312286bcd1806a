/** Attested agents on the wire: `GET /v1/admin/agents`, `POST /v1/admin/agents/ban`. */
import { z } from 'zod';
import { isoTime, spiffeIdText, toIso } from './fields.js';

/** An attested agent as the store keeps it (times in ms since the epoch). */
export interface AgentRecord {
  spiffeId: string;
  attestation: string;
  serial: string;
  svidExpiresAt: number;
  attestedAt: number;
  renewedAt: number;
  banned: boolean;
  remoteAddr: string;
}

export const agentSchema = z.object({
  spiffe_id: spiffeIdText,
  attestation: z.string(),
  serial: z.string(),
  expires_at: isoTime,
  attested_at: isoTime,
  renewed_at: isoTime,
  banned: z.boolean(),
  remote_addr: z.string(),
});
export type AgentWire = z.infer<typeof agentSchema>;

export const agentListSchema = z.object({ agents: z.array(agentSchema) });

/** The ban request; the ID is parsed by the server so that the refusal says why. */
export const banRequestSchema = z.object({ spiffe_id: z.string() }).nullish();
export const banResultSchema = z.object({ banned: z.string() });

/** The one conversion model → wire. */
export function agentToWire(a: AgentRecord): AgentWire {
  return {
    spiffe_id: a.spiffeId,
    attestation: a.attestation,
    serial: a.serial,
    expires_at: toIso(a.svidExpiresAt),
    attested_at: toIso(a.attestedAt),
    renewed_at: toIso(a.renewedAt),
    banned: a.banned,
    remote_addr: a.remoteAddr,
  };
}
