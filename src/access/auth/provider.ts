/**
 * The OpenID provider as this relying party sees it: discovery (openid-client), the TLS trust used to
 * reach it, and its signing keys (jose's remote JWK set, which refetches on an unknown `kid`,
 * rate-limited) with the algorithms it advertises.
 */
import { readFileSync } from 'node:fs';
import * as jose from 'jose';
import * as oidc from 'openid-client';
import { Agent, fetch as undiciFetch } from 'undici';
import { localhostLookup } from '../../util/localhost-lookup.js';
import type { OidcAuthConfig } from './config.js';

export interface Provider {
  config: oidc.Configuration;
  /** The discovered issuer, exactly. */
  issuer: string;
  jwks: ReturnType<typeof jose.createRemoteJWKSet>;
  /** Asymmetric algorithms the provider advertises for ID tokens; never `none`, never HS*. */
  algorithms: string[];
}

type Fetch = (
  url: string,
  init: { method?: string; headers?: unknown; body?: unknown; redirect?: string; signal?: AbortSignal | null },
) => Promise<Response>;

/**
 * A fetch that trusts only `ca_file` when given (else the system CAs); openid-client and jose share
 * it. `*.localhost` issuers reach loopback (RFC 6761), as the person's browser does.
 */
export function providerFetch(caFile: string | undefined): Fetch | undefined {
  if (caFile === undefined) return undefined;
  const dispatcher = new Agent({ connect: { ca: readFileSync(caFile, 'utf8'), lookup: localhostLookup as never } });
  return (url, init) =>
    undiciFetch(url, { ...(init as Parameters<typeof undiciFetch>[1]), dispatcher }) as unknown as Promise<Response>;
}

export async function discoverProvider(cfg: OidcAuthConfig, clientSecret: string): Promise<Provider> {
  const fetchImpl = providerFetch(cfg.ca_file);
  const config = await oidc.discovery(new URL(cfg.issuer), cfg.client_id, clientSecret, undefined, {
    timeout: 10,
    ...(cfg.allow_insecure_issuer ? { execute: [oidc.allowInsecureRequests] } : {}),
    ...(fetchImpl ? { [oidc.customFetch]: fetchImpl as oidc.CustomFetch } : {}),
  });
  const meta = config.serverMetadata();
  if (!meta.jwks_uri) throw new Error(`the provider ${meta.issuer} advertises no jwks_uri`);
  const algorithms = (meta.id_token_signing_alg_values_supported ?? ['RS256']).filter(
    (a) => a !== 'none' && !a.startsWith('HS'),
  );
  if (algorithms.length === 0)
    throw new Error(`the provider ${meta.issuer} advertises no asymmetric ID token algorithm`);
  const jwks = jose.createRemoteJWKSet(new URL(meta.jwks_uri), {
    cooldownDuration: 30_000,
    ...(fetchImpl ? { [jose.customFetch]: fetchImpl as jose.FetchImplementation } : {}),
  });
  return { config, issuer: meta.issuer, jwks, algorithms };
}
