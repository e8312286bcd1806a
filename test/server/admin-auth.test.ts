/**
 * Admin tokens on a shared store: a token another server has just added is accepted at once (the
 * store is re-read on a miss), a wrong token is refused, and a flood of wrong tokens costs the store
 * at most one read a second, shared by every waiting request. Refused requests are recorded (a
 * 16 KB path clipped), repeated ones as one event with their exact count.
 */
import type { IncomingMessage } from 'node:http';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { queryAuditLog } from '../../src/audit/index.js';
import { configSchema } from '../../src/config/index.js';
import { AdminAuth, AdminAuthError } from '../../src/server/admin-auth.js';
import { startServer } from '../../src/server/index.js';
import { auditPlugin } from '../../src/server/plugins/audit.js';
import { openStore, type Store } from '../../src/store/index.js';
import { createLogger } from '../../src/util/logger.js';
import { tempDir } from '../support/tmp.js';

const stores: Store[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } }) as IncomingMessage;

describe('AdminAuth', () => {
  it('accepts a token another server added a moment ago, refuses a wrong one, and floods read the store once a second', async () => {
    const dir = tempDir();
    const store = await openStore({ dataDir: dir });
    stores.push(store);
    const dirA = join(dir, 'a');
    const dirB = join(dir, 'b');
    mkdirSync(dirA);
    mkdirSync(dirB);
    const a = await AdminAuth.init(store, dirA);
    await AdminAuth.init(store, dirB); // another server on the same store, right after
    const tokenB = readFileSync(join(dirB, 'admin.token'), 'utf8').trim();
    await expect(a.authenticate(bearer(tokenB))).resolves.toMatchObject({ kind: 'admin' });

    let reads = 0;
    const get = store.kv.get.bind(store.kv);
    store.kv.get = (...args: Parameters<typeof get>) => {
      reads++;
      return get(...args);
    };
    const wrong = Array.from({ length: 50 }, (_, i) => a.authenticate(bearer(`wrong-token-${i}-xxxxxxxxxxxx`)));
    const results = await Promise.allSettled(wrong);
    expect(results.every((r) => r.status === 'rejected' && r.reason instanceof AdminAuthError)).toBe(true);
    expect(reads).toBe(1);
    await expect(a.authenticate(bearer('x'))).rejects.toThrow(/admin credential required/);
  });
});

describe('refused admin requests in the audit log', () => {
  it('a 15 KB path (about what node:http lets through) is recorded clipped; 1,000 refusals are two events and two log lines, with the exact count', async () => {
    const dataDir = tempDir();
    const config = configSchema.parse({ data_dir: dataDir, server: { port: 0, shutdown_timeout: 2 } });
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const logger = createLogger('warn', sink);
    const audit = auditPlugin({ checkpointEvery: 100, checkpointIntervalMs: 0 });
    const server = await startServer({ config, logger, plugins: [audit] });
    const refusals = () => queryAuditLog(server.store, { kind: 'admin.action', outcome: 'deny', limit: 1000 });
    try {
      const longPath = `/v1/admin/audit/events/${'a'.repeat(15_000)}`;
      const hostile = await request(`${server.url}${longPath}`);
      expect(hostile.statusCode).toBe(401);
      await hostile.body.dump();
      await audit.handle.recorder().flush();
      const [clipped] = (await refusals()).events;
      expect(clipped?.target?.resource?.startsWith('/v1/admin/audit/events/aaaa')).toBe(true);
      expect(clipped?.target?.resource).toHaveLength(2048);
      expect(audit.handle.recorder().stats()).toMatchObject({ rejected: 0, lost: 0 });

      // 1,000 requests without a credential (the same caller, the same reason).
      const statuses = await Promise.all(
        Array.from({ length: 1000 }, async (_, i) => {
          const r = await request(`${server.url}/v1/admin/audit/checkpoints?i=${i}`, {
            headers: { authorization: 'Bearer not-the-admin-token-at-all' },
          });
          await r.body.dump();
          return r.statusCode;
        }),
      );
      expect(statuses.every((s) => s === 401)).toBe(true);
      await audit.handle.recorder().flush();
      const wrongToken = (await refusals()).events.filter((e) => e.reason?.startsWith('invalid admin credential'));
      expect(wrongToken).toHaveLength(1); // the first at once; the rest counted
      expect(server.events.refusals.pending()).toBe(999);
      server.events.refusals.flush(); // what the window's end (or shutdown) does
      await audit.handle.recorder().flush();
      const after = (await refusals()).events.filter((e) => e.reason?.startsWith('invalid admin credential'));
      expect(after).toHaveLength(2);
      const counted = after.find((e) => e.reason !== 'invalid admin credential');
      expect(counted?.reason).toBe('invalid admin credential (999 more like it since the last record)');
      expect(counted?.details).toMatchObject({ repeated: 999 });
      expect(lines.filter((l) => l.includes('admin request refused'))).toHaveLength(2); // the 16 KB one, and one run
    } finally {
      await server.close();
    }
  });
});
