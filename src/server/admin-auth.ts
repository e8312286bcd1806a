/**
 * No anonymous administration. The local CLI authenticates with a bootstrap token that the server
 * writes to `<data_dir>/admin.token` (mode 0600, created once); only its SHA-256 is kept in the store,
 * so every server on a shared PostgreSQL accepts it and a database dump does not reveal it.
 * (Admin X.509-SVIDs over mTLS are accepted by the agent/mTLS layer and map to the same principal type.)
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import type { Store } from '../store/index.js';
import { AdminAuthError } from './admin-auth-error.js';
import { type AdminPerson, type ConsoleConfig, hasPersonAssertion, PersonAdmin } from './person-admin.js';

export { AdminAuthError, type AdminAuthErrorOptions } from './admin-auth-error.js';
export type { AdminPerson } from './person-admin.js';

export const ADMIN_TOKEN_FILE = 'admin.token';
const KV_NS = 'admin';
const KV_KEY = 'token_hashes';

export interface AdminPrincipal {
  kind: 'admin';
  /**
   * How the caller proved it: `token:<first 8 hex of its hash>`, `svid:<spiffe id>`, or
   * `person:<user>` for a person an access proxy vouched for (the console).
   */
  id: string;
  /** The person, when a console proxy vouched for one. */
  person?: AdminPerson;
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** Reads the token file, refusing one that others can read: a leaked admin token is the whole mesh. */
export function readAdminToken(dataDir: string): string | undefined {
  const file = join(dataDir, ADMIN_TOKEN_FILE);
  let mode: number;
  try {
    mode = statSync(file).mode;
  } catch {
    return undefined;
  }
  if ((mode & 0o077) !== 0) {
    throw new AdminAuthError(
      `${file} is readable by group or others (mode ${(mode & 0o777).toString(8)}): run chmod 600 ${file}`,
    );
  }
  return readFileSync(file, 'utf8').trim();
}

export class AdminAuth {
  private hashes: Buffer[] = [];
  private lastRefresh = 0;
  private pending: Promise<void> | undefined;

  private readonly people: PersonAdmin | undefined;

  private constructor(
    private readonly store: Store,
    consoleConfig: ConsoleConfig | undefined,
  ) {
    this.people = consoleConfig ? new PersonAdmin(store, consoleConfig) : undefined;
  }

  /**
   * Ensures a bootstrap token exists in the data dir and that the store knows its hash. With the
   * `console` settings, people vouched for by the listed access proxies are admins too.
   */
  static async init(store: Store, dataDir: string, consoleConfig?: ConsoleConfig): Promise<AdminAuth> {
    const auth = new AdminAuth(store, consoleConfig);
    let token = readAdminToken(dataDir);
    if (token === undefined) {
      token = randomBytes(32).toString('base64url');
      const fd = openSync(join(dataDir, ADMIN_TOKEN_FILE), 'wx', 0o600);
      try {
        writeSync(fd, `${token}\n`);
      } finally {
        closeSync(fd);
      }
    }
    const hash = sha256(token).toString('hex');
    for (let attempt = 0; attempt < 5; attempt++) {
      const entry = await store.kv.get(KV_NS, KV_KEY);
      const list: string[] = entry ? (JSON.parse(entry.value) as string[]) : [];
      if (list.includes(hash)) break;
      try {
        await store.kv.put(KV_NS, KV_KEY, JSON.stringify([...list, hash]), entry?.version ?? 0);
        break;
      } catch (e) {
        if (attempt === 4) throw e;
      }
    }
    await auth.refresh();
    return auth;
  }

  private async refresh(): Promise<void> {
    const entry = await this.store.kv.get(KV_NS, KV_KEY);
    this.hashes = entry ? (JSON.parse(entry.value) as string[]).map((h) => Buffer.from(h, 'hex')) : [];
    this.lastRefresh = Date.now();
  }

  private refreshSoon(): Promise<void> {
    this.pending ??= (async () => {
      const wait = this.lastRefresh + 1000 - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      try {
        await this.refresh();
      } finally {
        this.pending = undefined;
      }
    })();
    return this.pending;
  }

  private matches(hash: Buffer): boolean {
    // Compare against every known hash so the time taken does not reveal which one matched.
    let ok = false;
    for (const h of this.hashes) if (h.length === hash.length && timingSafeEqual(h, hash)) ok = true;
    return ok;
  }

  /**
   * Authenticates an admin request: the Bearer admin token, else a console proxy's person assertion
   * (checked for this request's method and path: group, CSRF, MFA freshness). `url`: the one
   * dispatch parsed, so the path decided is the path routed.
   *
   * @throws {AdminAuthError} 401 or 403, with the reason
   */
  async authenticate(req: IncomingMessage, url?: URL): Promise<AdminPrincipal> {
    const header = req.headers.authorization;
    if (header === undefined && this.people && hasPersonAssertion(req)) {
      // The path the router matched (dispatch parsed it once): MFA freshness is decided on that path.
      const path = (url ?? new URL(req.url ?? '/', 'http://local')).pathname;
      const person = await this.people.authenticate(req, req.method ?? 'GET', path);
      return { kind: 'admin', id: `person:${person.user}`, person };
    }
    const m = header ? /^Bearer\s+([A-Za-z0-9_-]{16,128})\s*$/.exec(header) : null;
    if (!m?.[1])
      throw new AdminAuthError('admin credential required: Authorization: Bearer <token from data_dir/admin.token>');
    const hash = sha256(m[1]);
    if (!this.matches(hash)) {
      // Another server may have added a token since we last looked: re-read the store (at most
      // once a second, one read shared by every waiting request), then decide. Skipping the re-read
      // within the second instead refused a valid token of a server that had just joined.
      await this.refreshSoon();
      if (!this.matches(hash)) throw new AdminAuthError('invalid admin credential');
    }
    return { kind: 'admin', id: `token:${hash.toString('hex').slice(0, 8)}` };
  }
}
