/**
 * The agent port's request/answer pairs (`/agent/v1/…`): attestation with a join token, renewal of
 * the agent's SVID, signing of workload CSRs, and JWT-SVIDs. Keys never travel: only CSRs.
 */
import { z } from 'zod';
import { type SpiffeId, toPem } from '../spiffe/index.js';
import { isoTime, jwksSchema, spiffeIdText } from './fields.js';

const csr = z.string({ error: 'csr (PEM) is required' }).min(1, 'csr (PEM) is required');

/** `POST /agent/v1/attest` */
export const attestRequestSchema = z.object({
  join_token: z
    .string()
    .regex(/^[0-9a-f]{32}$/, 'join_token must be the 32-hex-digit token from `nevertrust token generate`'),
  csr,
});
export type AttestRequest = z.infer<typeof attestRequestSchema>;

/** `POST /agent/v1/renew` */
export const renewRequestSchema = z.object({ csr });
export type RenewRequest = z.infer<typeof renewRequestSchema>;

/** An issued X.509-SVID: the chain (leaf first) as PEM, its serial and expiry. */
export const svidSchema = z.object({
  spiffe_id: spiffeIdText,
  chain_pem: z.string().includes('-----BEGIN CERTIFICATE-----', { message: 'expected PEM certificates' }),
  serial: z.string(),
  expires_at: isoTime,
});
export type SvidWire = z.infer<typeof svidSchema>;

/** The answer to attest and renew: the agent's SVID and the bundle in force. */
export const agentSvidSchema = svidSchema.extend({ bundle: jwksSchema });
export type AgentSvidWire = z.infer<typeof agentSvidSchema>;

/** Most CSRs in one signing request. */
export const MAX_SIGN_REQUESTS = 1000;

/** `POST /agent/v1/sign` */
export const signRequestSchema = z.object({
  requests: z.array(z.object({ entry_id: z.string(), csr: z.string() })).max(MAX_SIGN_REQUESTS),
});
export type SignRequest = z.infer<typeof signRequestSchema>;

/** One result per request, in order: the SVID, or why not. */
export const signResultSchema = z.union([
  svidSchema.extend({ entry_id: z.string() }),
  z.object({ entry_id: z.string(), error: z.string() }),
]);
export const signResponseSchema = z.object({ results: z.array(signResultSchema) });
export type SignResponse = z.infer<typeof signResponseSchema>;

/** `POST /agent/v1/jwt` */
export const jwtRequestSchema = z.object({
  entry_id: z.string(),
  audience: z.array(z.string().min(1)).min(1, 'at least one audience is required'),
});
export type JwtRequest = z.infer<typeof jwtRequestSchema>;

/** A JWT-SVID and its expiry (also the admin API's `POST /v1/admin/jwt/mint`). */
export const jwtSvidSchema = z.object({ token: z.string().min(1), expires_at: isoTime });
export type JwtSvidWire = z.infer<typeof jwtSvidSchema>;

/** An issued X.509-SVID as the CA returns it (structurally `IssuedX509Svid` of src/ca). */
export interface IssuedSvid {
  spiffeId: SpiffeId | string;
  chain: readonly Buffer[];
  serialHex: string;
  notAfter: Date;
}

/** The one conversion of an issued SVID to the wire. */
export function svidToWire(s: IssuedSvid): SvidWire {
  return {
    spiffe_id: s.spiffeId.toString(),
    chain_pem: s.chain.map((d) => toPem(d, 'CERTIFICATE')).join(''),
    serial: s.serialHex,
    expires_at: s.notAfter.toISOString(),
  };
}

/** A JWT-SVID to the wire. */
export function jwtSvidToWire(j: { token: string; expiresAt: Date }): JwtSvidWire {
  return { token: j.token, expires_at: j.expiresAt.toISOString() };
}
