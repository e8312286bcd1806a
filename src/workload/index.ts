/**
 * `nevertrust/workload`: the SPIFFE Workload API client for services — X.509-SVIDs and bundles
 * that stay current ({@link X509Source}), JWT-SVIDs per audience ({@link JwtSource}), and JWT-SVID
 * validation through the agent.
 */
import type { TrustBundle } from '../spiffe/index.js';
import { type ValidatedJwtSvid, WorkloadApiClient, type WorkloadClientOptions } from './client.js';

export {
  EndpointAddressError,
  type EndpointAddress,
  parseEndpointAddress,
  resolveEndpoint,
  SPIFFE_ENDPOINT_SOCKET,
} from './address.js';
export {
  type JwtSvidToken,
  parseX509Context,
  structToJson,
  type ValidatedJwtSvid,
  type Watch,
  WORKLOAD_API_HEADER,
  WorkloadApiClient,
  WorkloadApiError,
  type WorkloadClientOptions,
  WorkloadResponseError,
  type X509Context,
  type X509Svid,
} from './client.js';
export { JwtSource, type JwtSourceOptions } from './jwt-source.js';
export { packageRoot } from '../util/package-root.js';
export { workloadProtoPath } from './paths.js';
export {
  type BackoffOptions,
  backoffDelay,
  X509Source,
  X509SourceError,
  type X509SourceEvents,
  type X509SourceOptions,
} from './x509-source.js';

/**
 * Validates a JWT-SVID through the Workload API (one call, own connection).
 *
 * @example
 * ```ts
 * const { spiffeId, claims } = await validateJwtSvid(token, 'payments');
 * ```
 * @throws {WorkloadApiError} grpcCode 3 (`ERR_WORKLOAD_API_INVALID_ARGUMENT`) when the token does not validate
 */
export async function validateJwtSvid(
  token: string,
  audience: string,
  opts: WorkloadClientOptions = {},
): Promise<ValidatedJwtSvid> {
  const c = new WorkloadApiClient(opts);
  try {
    return await c.validateJwtSvid(token, audience);
  } finally {
    c.close();
  }
}

/**
 * The JWT bundles (JWKS) by trust domain name, through the Workload API.
 *
 * @example
 * ```ts
 * const bundles = await jwtBundles();
 * bundles.get('example.org')?.jwtAuthorities;
 * ```
 */
export async function jwtBundles(opts: WorkloadClientOptions = {}): Promise<Map<string, TrustBundle>> {
  const c = new WorkloadApiClient(opts);
  try {
    return await c.fetchJwtBundles();
  } finally {
    c.close();
  }
}
