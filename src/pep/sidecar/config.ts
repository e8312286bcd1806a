/**
 * The sidecar's config file (YAML): which SVID, which policies, and the inbound and outbound legs.
 * Validated whole; a problem names the file and the field (see docs/enforcement.md).
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { formatYamlProblem, parseYamlFile } from '../../util/yaml-file.js';
import { PATH_NORMALIZATIONS } from '../../policy/path.js';
import { parseSpiffeId } from '../../spiffe/index.js';
import { trustedProxySchema } from '../identity.js';
import { NevertrustError } from '../../errors.js';

const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'expected HOST:PORT');

/** A SPIFFE ID, checked and in its canonical form (compared as a string with the TLS peer's). */
const spiffeIdSchema = z.string().transform((s, ctx) => {
  try {
    return parseSpiffeId(s).toString();
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

/**
 * Signed identity assertions for the app: the signing key is registered with the server over mTLS,
 * which publishes it as JWKS. The sidecar's and the access proxy's `assertion` section.
 */
export const assertionSectionSchema = z
  .object({
    /** The server's agent port (mTLS), e.g. https://127.0.0.1:8081. */
    server: z.url().refine((u) => u.startsWith('https://'), 'must be an https:// URL (the agent port)'),
    /** The SPIFFE ID the server must present (default spiffe://<trust domain>/nevertrust/server). */
    server_id: z.string().startsWith('spiffe://').optional(),
    ttl_seconds: z.number().int().min(10).max(3600).default(60),
  })
  .strict();

/**
 * Where decisions go: the server's audit log (batched, spilled to disk while the server is away).
 * The sidecar's and the access proxy's `audit` section.
 */
export const auditSectionSchema = z
  .object({
    /**
     * The server's agent port, e.g. https://127.0.0.1:8081: decisions are shipped over mTLS with the
     * enforcement point's own SVID (no token). With `token_file`, the server's API instead, e.g. http://127.0.0.1:8181.
     */
    server: z.url(),
    /** The SPIFFE ID the server must present on the agent port (default spiffe://<trust domain>/nevertrust/server). */
    server_id: z.string().startsWith('spiffe://').optional(),
    /** File holding a bearer token for `POST /v1/audit/events` (admin or ingest token) on the API port. */
    token_file: z.string().optional(),
    /** Spill directory (default: a directory next to the config file). */
    spill_dir: z.string().optional(),
  })
  .strict()
  .refine((a) => a.token_file !== undefined || a.server.startsWith('https://'), {
    message: 'without token_file, server must be the https:// agent port (shipping with the SVID)',
    path: ['server'],
  });

/** The SVID: files (renewed by whoever writes them) or the Workload API. */
export const svidSectionSchema = z.union([
  z.object({ cert: z.string(), key: z.string(), bundle: z.string() }).strict(),
  z.object({ workload_api: z.string() }).strict(),
]);

/**
 * Revocation signals (docs/signals.md): the sidecar follows the server's signal stream on the agent
 * port with its own SVID, refuses revoked SVIDs at the handshake and cuts live connections of peers
 * whose entry was deleted.
 */
export const signalsSectionSchema = z
  .object({
    /** The server's agent port (mTLS), e.g. https://127.0.0.1:8081. */
    server: z.url().refine((u) => u.startsWith('https://'), 'must be an https:// URL (the agent port)'),
    /** The SPIFFE ID the server must present (default spiffe://<trust domain>/nevertrust/server). */
    server_id: z.string().startsWith('spiffe://').optional(),
  })
  .strict();

/** The sidecar config file (YAML), validated. */
export const SidecarConfigSchema = z
  .object({
    svid: svidSectionSchema,
    policies: z.string().describe('policy file or directory, watched'),
    /**
     * How request paths are normalized before the policies see them (docs/policy-language.md).
     * `strict` (default) refuses paths that backends resolve differently (`..;/`, `%2f`, `%252e`,
     * `%c0%ae`, dot segments…), so they are never forwarded; `lenient` is the normalization of
     * earlier versions; `decode_and_merge_slashes` decodes `%2F`/`%5C` instead of refusing them.
     */
    path_normalization: z.enum(PATH_NORMALIZATIONS).default('strict'),
    /**
     * Processes serving the same ports (as nginx's `worker_processes`): connections are spread over
     * them; each holds its own SVID stream, policy snapshot, assertion key and audit queue. One
     * process uses one core.
     */
    workers: z.number().int().min(1).max(64).default(1),
    signals: signalsSectionSchema.optional(),
    inbound: z
      .object({
        listen: hostPort,
        app: hostPort,
        /**
         * How the sidecar talks to the app: HTTP/1.1 (default), or HTTP/2 without TLS (`h2c`), which
         * gRPC apps need (trailers). Clients may use HTTP/1.1 or HTTP/2 either way.
         */
        app_protocol: z.enum(['http1', 'h2c']).default('http1'),
        /** This service as policy target; default: the SVID's SPIFFE ID. */
        target: z.string().optional(),
        timeout_ms: z.number().int().positive().default(30_000),
        /** Proxies whose identity headers are believed (see `trustedProxySchema`): certificates only unless listed with `xfcc-uri`. */
        trusted_proxies: z.array(trustedProxySchema).default([]),
        /**
         * Access proxies (`nevertrust access-proxy`, docs/people.md) whose person assertion
         * `x-nevertrust-jwt-assertion` is passed to the app: when the verified mTLS caller is one of
         * these SPIFFE IDs, that single header crosses unchanged; from anyone else, and every other
         * `x-nevertrust-*` header from anyone, is still stripped. Default: none.
         */
        access_proxies: z.array(spiffeIdSchema).default([]),
        /**
         * Signed identity assertions for the app (`x-nevertrust-assertion`, see docs/enforcement.md):
         * the signing key is registered with the server, which publishes it as JWKS.
         */
        assertion: assertionSectionSchema.optional(),
      })
      .strict()
      .optional(),
    /** Where decisions go: the server's audit log (batched, spilled to disk while the server is away). */
    audit: auditSectionSchema.optional(),
    outbound: z
      .object({
        listen: hostPort,
        timeout_ms: z.number().int().positive().default(30_000),
        services: z.record(z.string(), z.object({ address: hostPort, spiffe_id: z.string() }).strict()),
      })
      .strict()
      .optional(),
  })
  .strict();

export type SidecarConfig = z.infer<typeof SidecarConfigSchema>;
export type InboundConfig = NonNullable<SidecarConfig['inbound']>;
export type OutboundConfig = NonNullable<SidecarConfig['outbound']>;

/** A config file that cannot be used, with the field that is wrong. */
export class SidecarConfigError extends NevertrustError<'ERR_SIDECAR_CONFIG'> {
  override readonly name = 'SidecarConfigError';
  readonly code = 'ERR_SIDECAR_CONFIG';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { status: 400, cause: options?.cause });
  }
}

/**
 * Reads and validates a sidecar config file.
 *
 * @example
 * ```ts
 * const config = loadSidecarConfig('sidecar.yaml');
 * ```
 * @throws {SidecarConfigError} naming the file and field
 */
export function loadSidecarConfig(file: string): SidecarConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new SidecarConfigError(`${file}: ${(e as Error).message}`);
  }
  const r = parseYamlFile(file, text, SidecarConfigSchema);
  if (!r.ok) throw new SidecarConfigError(formatYamlProblem(r.problem));
  if (!r.data.inbound && !r.data.outbound) throw new SidecarConfigError(`${file}: needs inbound, outbound or both`);
  return r.data;
}

/** `HOST:PORT` (or `[v6]:PORT`) into its parts; the schema has checked the shape. */
export function splitHostPort(hp: string): { host: string; port: number } {
  const i = hp.lastIndexOf(':');
  return { host: hp.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(hp.slice(i + 1)) };
}
