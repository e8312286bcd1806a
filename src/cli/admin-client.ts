/**
 * How admin commands reach the running server: `--server URL` (default: the configured host and
 * port) with the bootstrap token from `<data_dir>/admin.token` (or NEVERTRUST_ADMIN_TOKEN).
 * Light enough for the command tree: undici and the configuration loader are imported when a command
 * actually calls the server.
 */
import type { Command } from 'commander';
import type { z } from 'zod';
import { errorBodySchema } from '../api/fields.js';
import { parseWire, WireFormatError } from '../api/parse.js';
import { readAdminToken } from '../server/admin-auth.js';
import { resolveConfig } from './context.js';
import { CliError } from './errors.js';

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface AdminClient {
  readonly baseUrl: string;
  /**
   * Sends a JSON request and returns the answer parsed by `schema`, its contract in src/api/.
   * Throws CliError with the server's message on a non-2xx answer, and with the field named when the
   * answer does not fit the contract.
   *
   * @example
   * ```ts
   * const { entries } = await client.call('GET', '/v1/admin/entries', undefined, entryListSchema);
   * ```
   */
  call<S extends z.ZodType>(method: Method, path: string, body: unknown, schema: S): Promise<z.output<S>>;
  /** As `call`, for answers that have no contract in src/api/ yet: the parsed JSON, unchecked. */
  callUnchecked(method: Method, path: string, body?: unknown): Promise<unknown>;
  /** Opens a streaming GET (for `tail -f`); the caller reads the body. */
  stream(path: string): Promise<AsyncIterable<Buffer>>;
}

export async function adminClient(cmd: Command): Promise<AdminClient> {
  const config = await resolveConfig(cmd);
  const opts = cmd.optsWithGlobals<{ server?: string }>();
  const host = config.server.host.includes(':') ? `[${config.server.host}]` : config.server.host;
  const baseUrl = (opts.server ?? `http://${host}:${config.server.port}`).replace(/\/+$/, '');
  const token = process.env.NEVERTRUST_ADMIN_TOKEN ?? readAdminToken(config.data_dir);
  if (!token) {
    throw new CliError(
      `no admin credential: ${config.data_dir}/admin.token does not exist (start the server with this --data-dir, or set NEVERTRUST_ADMIN_TOKEN)`,
    );
  }
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const send = async (method: string, path: string, body?: unknown) => {
    const { request } = await import('undici');
    try {
      return await request(`${baseUrl}${path}`, {
        method: method as 'GET',
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new CliError(
        `cannot reach the nevertrust server at ${baseUrl} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): is it running? (--server URL)`,
      );
    }
  };
  const callUnchecked = async (method: string, path: string, body?: unknown): Promise<unknown> => {
    const res = await send(method, path, body);
    const text = await res.body.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = text;
    }
    if (res.statusCode >= 400) {
      const refusal = errorBodySchema.partial().safeParse(parsed);
      throw new CliError(`server refused (${res.statusCode}): ${(refusal.success && refusal.data.message) || text}`);
    }
    return parsed;
  };
  return {
    baseUrl,
    callUnchecked,
    async call<S extends z.ZodType>(method: Method, path: string, body: unknown, schema: S): Promise<z.output<S>> {
      const parsed = await callUnchecked(method, path, body);
      try {
        return parseWire(schema, parsed, `${method} ${path.split('?')[0]}`);
      } catch (e) {
        if (!(e instanceof WireFormatError)) throw e;
        throw new CliError(`unexpected answer from the server at ${baseUrl}: ${e.message}`);
      }
    },
    async stream(path: string) {
      const res = await send('GET', path);
      if (res.statusCode >= 400) throw new CliError(`server refused (${res.statusCode}): ${await res.body.text()}`);
      return res.body as AsyncIterable<Buffer>;
    },
  };
}
