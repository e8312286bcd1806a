/**
 * The access proxy's config file (YAML): where it listens, its SVID and TLS, policies, audit,
 * assertion, the authenticator's section (opaque here), limits and the routes. Validated whole; a
 * problem names the file and the field (see docs/people.md).
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { formatYamlProblem, parseYamlFile } from '../../util/yaml-file.js';
import { NevertrustError } from '../../errors.js';
import { PATH_NORMALIZATIONS } from '../../policy/path.js';
import { assertionSectionSchema, auditSectionSchema, svidSectionSchema } from '../../pep/sidecar/config.js';
import { oidcAuthConfigSchema } from '../auth/config.js';
import { attemptLimitsSchema } from '../mfa/attempts.js';
import { durationSchema } from '../../util/duration.js';

const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'expected HOST:PORT');
// A DNS name as browsers send it in Host: letters, digits, hyphens, dots; compared lower-case.
const hostName = z
  .string()
  .regex(
    /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/,
    'expected a DNS host name (no port, no scheme)',
  )
  .transform((h) => h.toLowerCase());
const upstreamUrl = z.url().refine((u) => {
  const p = new URL(u);
  return (p.protocol === 'http:' || p.protocol === 'https:') && (p.pathname === '/' || p.pathname === '') && !p.search;
}, 'must be http:// or https:// with host and port only (no path or query)');
const headerName = z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'not a valid header name');

/**
 * A path prefix as a normalized path: leading `/`, no trailing `/` except the root, no dot segments,
 * `//` or escapes, so it can be compared with normalized request paths.
 */
const pathPrefix = z
  .string()
  .regex(
    /^\/([A-Za-z0-9._~!$&'()*+,=:@-]+(\/[A-Za-z0-9._~!$&'()*+,=:@-]+)*)?\/?$/,
    'expected a normalized path like /app',
  )
  .refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), 'no . or .. segments')
  .transform((p) => (p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p));

const routeSchema = z
  .object({
    /** Names the route in decisions, the audit log and (default) the policy target service. */
    name: z.string().regex(/^[a-z0-9]([a-z0-9-]{0,62})$/, 'lower-case letters, digits and -'),
    from: z.object({ host: hostName, path_prefix: pathPrefix.default('/') }).strict(),
    /** The app: `http://host:port` or `https://host:port`. */
    to: upstreamUrl,
    /** The upstream is a nevertrust sidecar: mTLS with the proxy's SVID, and it must present this ID. */
    to_spiffe_id: z.string().startsWith('spiffe://').optional(),
    /** The policy target; default `{ service: <name> }`. */
    target: z
      .union([
        z.object({ spiffe_id: z.string().startsWith('spiffe://') }).strict(),
        z.object({ service: z.string().min(1) }).strict(),
      ])
      .optional(),
    preserve_host: z.boolean().default(false),
    timeout_ms: z.number().int().positive().max(3_600_000).default(30_000),
    websockets: z.boolean().default(false),
    /**
     * When the proxy has heard nothing from the signal stream for longer than `signals.max_disconnected`:
     * `deny` (default) refuses people here with `signals_unavailable`; `allow` goes on deciding with
     * the signals it has.
     */
    on_signals_lost: z.enum(['deny', 'allow']).default('deny'),
    /**
     * The oldest device posture policy may use here (`15m`, seconds); older counts as unknown and
     * fails closed. Default: the proxy's `devices.max_posture_age`.
     */
    max_posture_age: durationSchema.optional(),
    /**
     * How a `step_up` decision is met: `local` (default) sends browsers to the proxy's own MFA
     * challenge; `provider` sends them to the provider's login with `acr_values`, `max_age` and
     * `prompt=login`, and its new ID token's `amr`/`acr` count by the auth config's `mfa` mapping.
     */
    step_up: z
      .strictObject({
        via: z.enum(['local', 'provider']).default('local'),
        acr_values: z.array(z.string().regex(/^[\x21-\x7e]{1,256}$/, 'an acr value is printable ASCII')).default([]),
      })
      .optional(),
    headers: z
      .object({
        remove: z.array(headerName).default([]),
        set: z.record(headerName, z.string().regex(/^[\t\x20-\x7e]*$/, 'printable ASCII only')).default({}),
      })
      .strict()
      .default({ remove: [], set: {} }),
  })
  .strict()
  .refine((r) => r.to_spiffe_id === undefined || r.to.startsWith('https://'), {
    message: 'with to_spiffe_id, to must be https:// (mTLS to the sidecar)',
    path: ['to'],
  });

/** The access proxy config file (YAML), validated. */
export const AccessProxyConfigSchema = z
  .object({
    listen: hostPort,
    /** The port browsers use (behind a load balancer); default the listen port. */
    public_port: z.number().int().min(1).max(65535).optional(),
    svid: svidSectionSchema,
    /** Default: serve with the SVID's certificate (DNS names from its registration entry), rotated live. */
    tls: z.object({ cert_file: z.string(), key_file: z.string() }).strict().optional(),
    policies: z.string().describe('policy file or directory, watched'),
    path_normalization: z.enum(PATH_NORMALIZATIONS).default('strict'),
    /** Where decisions, logins and logouts go: as the sidecar's `audit`. */
    audit: auditSectionSchema.optional(),
    /** Person assertions to the apps (`X-Nevertrust-Jwt-Assertion`); the key is registered with the server. */
    assertion: assertionSectionSchema.optional(),
    /**
     * How people sign in: the OpenID provider and the sessions (src/access/auth/config.ts). Required
     * by `nevertrust access-proxy`; an embedding that brings its own authenticator leaves it out.
     */
    auth: oidcAuthConfigSchema.optional(),
    /**
     * Where sessions live: the store (`url`: `postgres://…` when several proxies share sessions, or
     * `sqlite:PATH`; default the SQLite file in `data_dir`, which a server on this machine may share).
     */
    store: z
      .object({ url: z.string().min(1).optional(), data_dir: z.string().min(1).default('data') })
      .strict()
      .default({ data_dir: 'data' }),
    limits: z
      .object({
        max_header_bytes: z
          .number()
          .int()
          .min(1024)
          .max(1024 * 1024)
          .default(16 * 1024),
        /** Whole request (headers and body) from the client, ms. */
        request_timeout_ms: z.number().int().positive().default(60_000),
      })
      .strict()
      .default({ max_header_bytes: 16 * 1024, request_timeout_ms: 60_000 }),
    /**
     * People's second factors at the proxy (TOTP, WebAuthn, recovery codes): enrollment at
     * `/.nevertrust/mfa` and the step-up challenge. Absent: no local MFA (a `step_up` is met only
     * by a route's `step_up: {via: provider}`).
     */
    mfa: z
      .strictObject({
        /** A person with no factor may enroll without an admin's link (`nevertrust user enroll-link`). */
        first_login_enrollment: z.boolean().default(false),
        webauthn: z
          .strictObject({
            /** The WebAuthn RP ID: a parent domain of the routes' hosts; default each request's host. */
            rp_id: hostName.optional(),
            rp_name: z.string().min(1).max(64).default('nevertrust'),
          })
          .default({ rp_name: 'nevertrust' }),
        /** Failures before a person (`user`) or an address (`ip`) is locked out. */
        attempts: attemptLimitsSchema.optional(),
      })
      .optional(),
    /**
     * The server's signal stream (revoked sessions, people cut off, devices revoked or non-compliant,
     * risk scores), followed with the proxy's SVID (docs/signals.md). Absent: no signals.
     */
    signals: z
      .strictObject({
        /** The server's agent port, e.g. https://127.0.0.1:8081. */
        server: z.url().refine((u) => u.startsWith('https://'), 'must be an https:// URL (the agent port)'),
        /** The SPIFFE ID the server must present (default spiffe://<trust domain>/nevertrust/server). */
        server_id: z.string().startsWith('spiffe://').optional(),
        /** Silence on the stream after which routes with `on_signals_lost: deny` refuse people. */
        max_disconnected: durationSchema.default(30),
        /**
         * What a device's `device.non-compliant` signal does: `refuse` its requests and cut its
         * connections at once, or leave it to `policy` (the posture is in the request either way;
         * live connections are still re-decided against policy on the signal).
         */
        device_non_compliant: z.enum(['refuse', 'policy']).default('refuse'),
      })
      .optional(),
    /** Device certificates and posture (docs/people.md, "Devices"). */
    devices: z
      .strictObject({
        /** The routes' default `max_posture_age`. */
        max_posture_age: durationSchema.default(900),
      })
      .default({ max_posture_age: 900 }),
    routes: z.array(routeSchema).min(1),
  })
  .strict()
  .superRefine((c, ctx) => {
    const seen = new Map<string, number>();
    const names = new Map<string, number>();
    c.routes.forEach((r, i) => {
      const key = `${r.from.host} ${r.from.path_prefix}`;
      const prev = seen.get(key);
      if (prev !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i, 'from'],
          message: `same host and path_prefix as routes.${prev}`,
        });
      seen.set(key, i);
      const pn = names.get(r.name);
      if (pn !== undefined)
        ctx.addIssue({ code: 'custom', path: ['routes', i, 'name'], message: `same name as routes.${pn}` });
      names.set(r.name, i);
      const rp = c.mfa?.webauthn.rp_id;
      if (rp !== undefined && r.from.host !== rp && !r.from.host.endsWith(`.${rp}`))
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i, 'from', 'host'],
          message: `not under mfa.webauthn.rp_id ${rp}: WebAuthn would not work there`,
        });
    });
  });

export type AccessProxyConfig = z.infer<typeof AccessProxyConfigSchema>;
export type RouteConfig = AccessProxyConfig['routes'][number];

/** A config file that cannot be used, with the field that is wrong. */
export class AccessProxyConfigError extends NevertrustError<'ERR_ACCESS_PROXY_CONFIG'> {
  override readonly name = 'AccessProxyConfigError';
  readonly code = 'ERR_ACCESS_PROXY_CONFIG';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { status: 400, cause: options?.cause });
  }
}

/**
 * Validates a parsed config document; `file` names the source in errors.
 *
 * @throws {AccessProxyConfigError} `<file>: <field>: <problem>`
 */
export function parseAccessProxyConfig(doc: unknown, file = '(config)'): AccessProxyConfig {
  const r = AccessProxyConfigSchema.safeParse(doc);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new AccessProxyConfigError(`${file}: ${i?.path.join('.') || '(root)'}: ${i?.message ?? 'invalid'}`);
  }
  return r.data;
}

/**
 * Reads and validates an access proxy config file.
 *
 * @example
 * ```ts
 * const config = loadAccessProxyConfig('access-proxy.yaml');
 * ```
 * @throws {AccessProxyConfigError} `<file>:<line>:<column>: <field>: <problem>`
 */
export function loadAccessProxyConfig(file: string): AccessProxyConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new AccessProxyConfigError(`${file}: ${(e as Error).message}`);
  }
  const r = parseYamlFile(file, text, AccessProxyConfigSchema);
  if (!r.ok) throw new AccessProxyConfigError(formatYamlProblem(r.problem));
  return r.data;
}
