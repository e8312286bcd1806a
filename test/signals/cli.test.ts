/**
 * `nevertrust revoke`, `risk set` and `signals list` through the built binary against a real server
 * (in process, SQLite): the revocation is kept and ends the session; a bad score is refused by the
 * CLI before anything is sent; `signals list` shows what was kept. (`npm run build` first.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/index.js';
import { type RunningServer, startServer } from '../../src/server/index.js';
import { caPlugin } from '../../src/server/plugins/ca.js';
import { signalsPlugin } from '../../src/server/plugins/signals.js';
import { createLogger } from '../../src/util/logger.js';
import { runCli } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

let server: RunningServer;
let dataDir: string;
let common: string[];

beforeAll(async () => {
  dataDir = tempDir();
  const ca = caPlugin();
  server = await startServer({
    config: configSchema.parse({ data_dir: dataDir, server: { port: 0, agent_port: 0 } }),
    logger: createLogger('silent'),
    plugins: [ca, signalsPlugin({ ca: ca.handle })],
  });
  common = ['--data-dir', dataDir, '--server', server.url];
});
afterAll(async () => {
  await server?.close();
});

describe('nevertrust revoke / risk set / signals list', () => {
  it('revokes a session, sets a risk score, lists both; refuses a bad score and changes nothing', async () => {
    const now = Date.now();
    await server.store.accessSessions.create('tok', {
      id: 'sess-cli-1',
      host: 'app.example.org',
      issuer: 'https://idp',
      sub: 'u1',
      providerSid: null,
      person: '{}',
      tokens: 'sealed',
      tokenExpiresAt: null,
      createdAt: now,
      expiresAt: now + 3_600_000,
      lastSeenAt: now,
      userName: 'alice',
    });
    const revoked = await runCli(['revoke', 'session', 'sess-cli-1', '--reason', 'stolen laptop', ...common]);
    expect(revoked.stderr).toBe('');
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toMatch(/^session\.revoked session:sess-cli-1 kept as signal 1; 1 session\(s\) ended\n$/);
    expect((await server.store.accessSessions.findById('sess-cli-1'))?.endReason).toMatch(/stolen laptop/);

    const bad = await runCli(['risk', 'set', 'user', 'alice', '1.5', ...common]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/score: a number from 0 to 1/);
    expect(await server.store.signals.head()).toBe(1);

    const risk = await runCli(['risk', 'set', 'user', 'alice', '0.9', '--json', ...common]);
    expect(risk.code).toBe(0);
    expect(JSON.parse(risk.stdout)).toEqual({ seq: 2, kind: 'risk.set', subject: 'user:alice', ended_sessions: 0 });

    const listed = await runCli(['signals', 'list', ...common]);
    expect(listed.code).toBe(0);
    const lines = listed.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^SEQ\s+RECEIVED_AT\s+KIND\s+SUBJECT\s+SOURCE\s+REASON/);
    expect(lines.find((l) => l.startsWith('1 '))).toMatch(
      /session\.revoked\s+session:sess-cli-1\s+admin\s+stolen laptop/,
    );
    expect(lines.find((l) => l.startsWith('2 '))).toMatch(/risk\.set\s+user:alice/);
    expect(lines.at(-1)).toBe('head 2, oldest kept 1');
    const after = await runCli(['signals', 'list', '--after', '1', '--json', ...common]);
    expect((JSON.parse(after.stdout) as { signals: { seq: number }[] }).signals.map((s) => s.seq)).toEqual([2]);
  }, 90_000);
});
