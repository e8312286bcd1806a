/**
 * The config file of `nevertrust idp --config FILE` (YAML): where it listens, its issuer, TLS files,
 * the store, and its clients. Errors name the file, the line and the field.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseYamlFile } from '../../util/yaml-file.js';
import { z } from 'zod';
import { NevertrustError } from '../../errors.js';
import type { IdpClient } from './provider.js';

const url = z.url({ protocol: /^https?$/ });

const clientSchema = z
  .strictObject({
    client_id: z.string().regex(/^[A-Za-z0-9._-]{1,128}$/, 'use 1-128 letters, digits, . _ -'),
    client_secret: z.string().min(16, 'at least 16 characters').optional(),
    /** A file holding the secret (better than inline): read at start. */
    client_secret_file: z.string().min(1).optional(),
    redirect_uris: z.array(url).min(1),
    post_logout_redirect_uris: z.array(url).default([]),
    backchannel_logout_uri: url.optional(),
  })
  .refine((c) => !(c.client_secret && c.client_secret_file), 'give client_secret or client_secret_file, not both');

export const idpConfigSchema = z.strictObject({
  issuer: url,
  listen: z.strictObject({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65535),
  }),
  /** Certificate chain and key files (PEM). Absent only with `insecure_http: true`. */
  tls: z.strictObject({ cert: z.string().min(1), key: z.string().min(1) }).optional(),
  /** Serve plain HTTP (behind a TLS-terminating proxy only). */
  insecure_http: z.boolean().default(false),
  /** Where the SQLite store lives (default `./.nevertrust`); shared with `nevertrust server`. */
  data_dir: z.string().min(1).default('./.nevertrust'),
  /** `postgres://…` to share users and sessions with servers on PostgreSQL. */
  database_url: z.string().min(1).optional(),
  clients: z.array(clientSchema).min(1),
  /** Extra CA certificates (PEM file) trusted for back-channel logout POSTs to clients. */
  outbound_ca_file: z.string().min(1).optional(),
});
export type IdpConfig = z.infer<typeof idpConfigSchema>;

/** A config file that cannot be used: file, line and field in the message. */
export class IdpConfigFileError extends NevertrustError<'ERR_IDP_CONFIG_FILE'> {
  override readonly name = 'IdpConfigFileError';
  readonly code = 'ERR_IDP_CONFIG_FILE';
  constructor(message: string) {
    super(message, { status: 400 });
  }
}

/** The loaded config with files read: what `startIdentityProvider` needs besides the store. */
export interface LoadedIdpConfig {
  config: IdpConfig;
  tls: { cert: string; key: string } | false;
  clients: IdpClient[];
  outboundCa?: string;
  dataDir: string;
}

/**
 * Reads, validates and resolves `nevertrust idp`'s config (relative paths from the file's folder).
 *
 * @example
 * ```ts
 * const { config, tls, clients } = loadIdpConfig('idp.yaml');
 * ```
 * @throws {IdpConfigFileError} naming the file, line and field
 */
export function loadIdpConfig(file: string): LoadedIdpConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new IdpConfigFileError(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const r = parseYamlFile(file, text, idpConfigSchema);
  if (!r.ok) {
    const p = r.problem;
    throw new IdpConfigFileError(`${p.file}:${p.line}: ${p.field === '(yaml)' ? '' : `${p.field}: `}${p.message}`);
  }
  const config = r.data;
  const base = dirname(resolve(file));
  const read = (field: string, p: string) => {
    try {
      return readFileSync(resolve(base, p), 'utf8');
    } catch (e) {
      throw new IdpConfigFileError(
        `${file}: ${field}: cannot read ${p} (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
  };
  if (!config.tls && !config.insecure_http) {
    throw new IdpConfigFileError(`${file}: tls: give tls.cert and tls.key (or insecure_http: true behind a TLS proxy)`);
  }
  const tls = config.tls ? { cert: read('tls.cert', config.tls.cert), key: read('tls.key', config.tls.key) } : false;
  const clients = config.clients.map((c, i) => {
    const secret = c.client_secret_file
      ? read(`clients.${i}.client_secret_file`, c.client_secret_file).trim()
      : c.client_secret;
    return {
      client_id: c.client_id,
      ...(secret !== undefined && { client_secret: secret }),
      redirect_uris: c.redirect_uris,
      post_logout_redirect_uris: c.post_logout_redirect_uris,
      ...(c.backchannel_logout_uri !== undefined && { backchannel_logout_uri: c.backchannel_logout_uri }),
    };
  });
  return {
    config,
    tls,
    clients,
    ...(config.outbound_ca_file && { outboundCa: read('outbound_ca_file', config.outbound_ca_file) }),
    dataDir: resolve(base, config.data_dir),
  };
}
