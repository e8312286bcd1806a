/**
 * The one configuration file (`nevertrust.yaml`), as a zod schema. Every key has a default so that
 * local use needs no file. Unknown keys are errors: a typo must not silently fall back to a default.
 */
import { z } from 'zod';
import { spiffeIdText } from '../api/fields.js';
import { trustedProxySchema } from '../pep/identity.js';
import { PATH_NORMALIZATIONS } from '../policy/path.js';
import { durationSchema } from '../util/duration.js';
import { ssfConfigSchema } from './ssf.js';

const duration = durationSchema;

const port = z.number().int().min(0).max(65535);

// Same rules as the SPIFFE trust-domain grammar; the full parser lives in src/spiffe.
const trustDomain = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[a-z0-9._-]+$/, 'a trust domain uses only lowercase letters, digits, ".", "-" and "_" (e.g. example.org)');

export const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof logLevels)[number];

export const configSchema = z.strictObject({
  trust_domain: trustDomain.default('example.org'),
  data_dir: z.string().min(1).default('./.nevertrust'),
  log_level: z.enum(logLevels).default('info'),
  server: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: port.default(8181),
      agent_port: port.default(8081),
      shutdown_timeout: duration.default(10),
    })
    .prefault({}),
  database: z
    .strictObject({
      /** Empty: SQLite file in the data dir. `postgres://…`: PostgreSQL. `sqlite:PATH`: a SQLite file elsewhere. */
      url: z.string().min(1).optional(),
    })
    .prefault({}),
  /** A policy file or directory loaded at start and watched. */
  policies: z.string().min(1).optional(),
  /**
   * How request paths are normalized before those policies see them (docs/policy-language.md):
   * `strict` (default) refuses paths backends resolve differently; `lenient` is the normalization of
   * earlier versions; `decode_and_merge_slashes` decodes `%2F`/`%5C` instead of refusing them.
   */
  path_normalization: z.enum(PATH_NORMALIZATIONS).default('strict'),
  /**
   * Bounds on what a policy load reads; a load over any of them is refused (the last good policy
   * stays). Unset: the policy library's defaults (16 MiB per file, 64 MiB in all, 100,000 rules).
   */
  policy_limits: z
    .strictObject({
      max_file_bytes: z.number().int().positive().optional(),
      max_total_bytes: z.number().int().positive().optional(),
      max_rules: z.number().int().positive().optional(),
    })
    .prefault({}),
  /** Decision APIs for enforcement points that are not ours (OPA clients, Envoy, nginx). */
  decision: z
    .strictObject({
      /** Port of the Envoy ext_authz gRPC listener (Envoy's examples use 9191); absent: not started. */
      envoy_grpc_port: port.optional(),
      /** `mtls` (default): the ext_authz port presents the server's SVID and requires a client SVID. */
      envoy_grpc_tls: z.enum(['mtls', 'plaintext']).default('mtls'),
      /** SPIFFE IDs that may call ext_authz over mTLS (Envoy's); empty: any workload of the trust domain. */
      envoy_grpc_clients: z.array(z.string().startsWith('spiffe://')).default([]),
      /**
       * Proxies whose identity headers (X-Client-Cert, XFCC) the decision APIs believe: an address or
       * CIDR (certificates only), or `{address, identity: [x-client-cert | xfcc-cert | xfcc-uri]}`.
       * Used by the server and by the agent's decision listener.
       */
      trusted_proxies: z.array(trustedProxySchema).default([{ address: '127.0.0.1/32' }, { address: '::1/128' }]),
      /** Target for nginx/Envoy checks that name none. */
      default_target: z.string().min(1).optional(),
    })
    .prefault({}),
  /** The tamper-evident audit log. */
  audit: z
    .strictObject({
      /** Every signed checkpoint is also appended here, outside the database (keep it on other storage). */
      checkpoint_file: z.string().min(1).optional(),
      /** …and POSTed here. */
      checkpoint_webhook: z.url().optional(),
      /** Anomaly signals are also POSTed here. */
      anomaly_webhook: z.url().optional(),
      /** Events older than this are sealed into gzip NDJSON segments in <data_dir>/audit-segments. */
      hot_window: duration.optional(),
      /** Sign a checkpoint every N events (default 10000) or every interval (default 10s). */
      checkpoint_every: z.number().int().min(1).default(10_000),
      checkpoint_interval: duration.default(10),
      /** Copy every stored event as JSON lines to stdout or a file, for a SIEM. */
      export: z.enum(['none', 'stdout']).default('none'),
      export_file: z.string().min(1).optional(),
      /**
       * Events per second each enforcement point may ship over its SVID (agent port), with bursts of
       * up to 2 s of it (at least one full batch): a compromised workload cannot flood the log.
       */
      ingest_rate: z.number().int().min(1).default(50_000),
    })
    .prefault({}),
  /** The node agent (`nevertrust agent`). */
  agent: z
    .strictObject({
      /** Limits of the Workload API socket, per local uid: one user must not exhaust the agent. */
      workload_api: z
        .strictObject({
          max_connections_per_uid: z.number().int().min(1).default(64),
          max_calls_per_uid: z.number().int().min(1).default(256),
          /** A connection that sends no request within this time is closed. */
          handshake_timeout: duration.default(10),
        })
        .prefault({}),
    })
    .prefault({}),
  ca: z
    .strictObject({
      key_type: z.enum(['ec-p256', 'ec-p384', 'rsa-2048']).default('ec-p256'),
      ttl: duration.default(24 * 3600),
      x509_svid_ttl: duration.default(3600),
      jwt_svid_ttl: duration.default(300),
      upstream_cert_file: z.string().min(1).optional(),
      upstream_key_file: z.string().min(1).optional(),
      /** Key-encryption key file (mode 0600). Default: `<data_dir>/kek`. `NEVERTRUST_KEK` overrides. */
      kek_file: z.string().min(1).optional(),
    })
    .prefault({}),
  /** Devices (issue #22): enrollment, device certificates, posture reports. */
  devices: z
    .strictObject({
      /** Lifetime of a device certificate (capped by the CA's own). */
      cert_ttl: duration.default(24 * 3600),
      /** Default lifetime of an enrollment token. */
      token_ttl: duration.default(24 * 3600),
      /** The MDM/EDR webhook `POST /v1/devices/mdm`; absent: the route answers 404. */
      mdm: z
        .strictObject({
          /** File holding the HMAC-SHA256 secret (mode 0600, at least 32 bytes). */
          secret_file: z.string().min(1),
        })
        .optional(),
    })
    .prefault({}),
  /** Revocation, risk and posture signals (docs/signals.md). */
  signals: z
    .strictObject({
      /** How long the server keeps signals for followers to catch up (the newest is always kept). */
      retention: duration.default(24 * 3600),
      /** OpenID Shared Signals: transmitters we receive from, and our own transmitter (config/ssf.ts). */
      ssf: ssfConfigSchema,
    })
    .prefault({}),
  /**
   * The web console (docs/console.md): reached through access proxies that vouch for people with a
   * signed person assertion. No proxies: only the admin token opens it.
   */
  console: z
    .strictObject({
      /** Serve `/console/` and its assets (the admin API is there either way). */
      enabled: z.boolean().default(true),
      /** SPIFFE IDs of the access proxies trusted to vouch for people (their registered keys verify). */
      proxies: z.array(spiffeIdText).default([]),
      /** The console route's `aud`, `https://<host><path prefix>` (e.g. https://console.localhost). */
      audience: z
        .url({ protocol: /^https$/, error: 'an https URL, the console route of the access proxy (https://<host>)' })
        .optional(),
      /** The group (of the assertion's `groups`) a person needs to administer. */
      admin_group: z.string().min(1).max(256).default('admins'),
      /** How old a second factor may be for a destructive call (anything but GET and the read-only POSTs). */
      mfa_max_age: duration.default(300),
    })
    .superRefine((c, ctx) => {
      if (c.proxies.length > 0 && c.audience === undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['audience'],
          message: 'required with console.proxies: the console route audience, e.g. https://console.localhost',
        });
    })
    .prefault({}),
});

export type ConfigInput = z.input<typeof configSchema>;
export type Config = z.output<typeof configSchema>;
