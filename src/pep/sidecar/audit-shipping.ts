/**
 * Where a sidecar's decisions go. By default the server's agent port, over mTLS with the sidecar's
 * own SVID (`createSvidShipper`): nothing secret to hand out, and the server records which workload
 * reported each event. With `token_file`, the server's API port with that bearer token instead.
 */
import { readFileSync } from 'node:fs';
import { type AuditLogger, type AuditRecorder, createHttpShipper } from '../../audit/index.js';
import { createSvidShipper } from '../audit-shipping.js';
import type { X509SvidSource } from '../mtls/index.js';
import { type SidecarConfig, SidecarConfigError } from './config.js';

/**
 * The recorder for a sidecar's `audit` config section.
 *
 * @throws {SidecarConfigError} naming the file and field, when the token file cannot be read or a
 *   SPIFFE ID is invalid
 * @example
 * ```ts
 * const shipper = sidecarShipper({ server: 'https://127.0.0.1:8081' }, source, 'sidecar.yaml', { spillDir });
 * ```
 */
export function sidecarShipper(
  audit: NonNullable<SidecarConfig['audit']>,
  source: X509SvidSource,
  configFile: string,
  opts: { spillDir: string; logger?: AuditLogger },
): AuditRecorder {
  if (audit.token_file !== undefined) {
    let token: string;
    try {
      token = readFileSync(audit.token_file, 'utf8').trim();
    } catch (e) {
      throw new SidecarConfigError(`${configFile}: audit.token_file: ${(e as Error).message}`);
    }
    return createHttpShipper({ url: audit.server, token, ...opts });
  }
  try {
    return createSvidShipper(source, { server: audit.server, serverId: audit.server_id, ...opts });
  } catch (e) {
    // createSvidShipper refuses a URL with a TypeError, a SPIFFE ID with a SpiffeIdError.
    const field = e instanceof TypeError ? 'audit.server' : 'audit.server_id';
    throw new SidecarConfigError(`${configFile}: ${field}: ${(e as Error).message}`);
  }
}
