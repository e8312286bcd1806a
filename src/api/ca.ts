/**
 * The admin API of the CA (`/v1/admin/x509/sign`, `/v1/admin/jwt/mint`, `/v1/admin/ca/rotate`): the
 * answers the CLI reads.
 */
import { z } from 'zod';
import { isoTime, spiffeIdText } from './fields.js';

/** `POST /v1/admin/x509/sign`: the SVID for a CSR, with the bundle to trust it by. */
export const adminX509SvidSchema = z.object({
  spiffe_id: spiffeIdText,
  chain_pem: z.string().includes('-----BEGIN CERTIFICATE-----', { message: 'expected PEM certificates' }),
  bundle_pem: z.string().includes('-----BEGIN CERTIFICATE-----', { message: 'expected PEM certificates' }),
  serial: z.string(),
  not_after: isoTime,
});
export type AdminX509SvidWire = z.infer<typeof adminX509SvidSchema>;

/** `POST /v1/admin/jwt/mint` */
export const adminJwtSvidSchema = z.object({ token: z.string().min(1), spiffe_id: spiffeIdText, expires_at: isoTime });

/** `POST /v1/admin/ca/rotate`: whether anything changed, and the bundle sequence after (with the CA's state). */
export const caRotateSchema = z.looseObject({ changed: z.boolean(), sequence: z.number().int().nonnegative() });

/** The CRL's path on the API and agent ports. */
export const CRL_PATH = '/v1/bundle/crl';

/**
 * `GET /v1/bundle/crl?format=json` (API and agent ports, public like the bundle): the CRLs of revoked
 * X.509-SVID serials, one per CA generation that may have issued live SVIDs, the active one first;
 * each DER, base64. Without `format` the route answers the active one as DER (`application/pkix-crl`).
 */
export const crlSetSchema = z.strictObject({
  crls: z
    .array(
      z
        .base64()
        .min(1)
        .max(4 * 1024 * 1024),
    )
    .min(1)
    .max(16),
  crl_number: z.string().regex(/^[0-9]+$/),
  this_update: isoTime,
  next_update: isoTime,
  /** How many serials are listed. */
  revoked: z.number().int().nonnegative(),
});
export type CrlSetWire = z.infer<typeof crlSetSchema>;
