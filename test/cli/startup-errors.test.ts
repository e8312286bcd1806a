/**
 * Start-up failures of the real CLI (`bin/nevertrust.js`, built): each is one line on stderr that says
 * what is wrong and what to do, exit 1, no stack trace, and nothing started or changed.
 */
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { serverPlugins } from '../../src/cli/server-plugins.js';
import { configSchema } from '../../src/config/index.js';
import { startServer } from '../../src/server/index.js';
import { createLogger } from '../../src/util/logger.js';
import { runCli } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

/** One line, no stack frames. */
function expectOneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  expect(lines, stderr).toHaveLength(1);
  expect(stderr).not.toMatch(/^\s+at /m);
  return lines[0] ?? '';
}

/** A data dir initialised by a real server with the CLI's plugins (CA, KEK, audit key, database). */
async function initialisedDataDir(): Promise<string> {
  const dir = join(tempDir(), 'data');
  const config = configSchema.parse({ data_dir: dir, server: { port: 0, agent_port: 0 } });
  const server = await startServer({ config, logger: createLogger('silent'), plugins: serverPlugins(config) });
  await server.close();
  for (const f of ['kek', 'audit-signing.key', 'nevertrust.db']) expect(existsSync(join(dir, f)), f).toBe(true);
  for (const f of ['nevertrust.db-wal', 'nevertrust.db-shm']) rmSync(join(dir, f), { force: true });
  return dir;
}

const serverArgs = (dir: string) => ['server', '--data-dir', dir, '--port', '0', '--agent-port', '0'];

describe('start-up failures: one clear line', { timeout: 120_000 }, () => {
  it('a missing native addon (peercred): `up` and `agent` say what to build, at once, exit 1', async () => {
    const empty = tempDir();
    const env = { NEVERTRUST_NATIVE_DIR: empty };
    const dataDir = join(tempDir(), 'data');
    // What starting the CLI at all costs on this machine now (seconds under load): the bound is 5 s on top.
    let t = Date.now();
    await runCli(['version']);
    const startMs = Date.now() - t;
    t = Date.now();
    const up = await runCli(['up', '--data-dir', dataDir, '--port', '0', '--agent-port', '0'], { env });
    const upMs = Date.now() - t;
    expect(up.code, up.stderr).toBe(1);
    expect(expectOneLine(up.stderr)).toMatch(
      /native addon native\/peercred is not built: run `npm rebuild` or `npx node-gyp rebuild --directory native\/peercred` \(needs python3, make and g\+\+\)/,
    );
    expect(upMs).toBeLessThan(5000 + startMs);
    // Refused before anything started: no data dir, no CA.
    expect(existsSync(dataDir)).toBe(false);

    t = Date.now();
    const agent = await runCli(['agent', '--data-dir', dataDir, '--decision-listen', 'off'], { env });
    const agentMs = Date.now() - t;
    expect(agent.code, agent.stderr).toBe(1);
    expect(expectOneLine(agent.stderr)).toContain('native addon native/peercred is not built');
    expect(agentMs).toBeLessThan(5000 + startMs);
  });

  it('a zero-byte or missing database in an initialised data dir is refused, not re-created', async () => {
    const dir = await initialisedDataDir();
    const db = join(dir, 'nevertrust.db');
    truncateSync(db, 0);
    const r = await runCli(serverArgs(dir));
    expect(r.code, r.stderr).toBe(1);
    const line = expectOneLine(r.stderr);
    expect(line).toContain(db);
    expect(line).toContain('empty');
    expect(line).toContain('restore the database file from backup (docs/operations.md#backup-and-restore)');
    // Nothing changed: still empty, no new CA.
    expect(statSync(db).size).toBe(0);

    // `audit verify` must not report an empty log as intact either.
    const verify = await runCli(['audit', 'verify', '--data-dir', dir]);
    expect(verify.code, verify.stderr).toBe(1);
    expect(expectOneLine(verify.stderr)).toContain('empty');

    rmSync(db);
    const missing = await runCli(serverArgs(dir));
    expect(missing.code, missing.stderr).toBe(1);
    expect(expectOneLine(missing.stderr)).toContain('missing');
    expect(existsSync(db)).toBe(false);

    // A KEK provisioned before the first start is not an initialised data dir: the server starts.
    const fresh = join(tempDir(), 'data');
    mkdirSync(fresh, { mode: 0o700 });
    copyFileSync(join(dir, 'kek'), join(fresh, 'kek'));
    const config = configSchema.parse({ data_dir: fresh, server: { port: 0, agent_port: 0 } });
    const server = await startServer({ config, logger: createLogger('silent'), plugins: serverPlugins(config) });
    await server.close();
    expect(statSync(join(fresh, 'nevertrust.db')).size).toBeGreaterThan(0);
  });

  it('a corrupt database: one line naming the file, exit 1', async () => {
    const dir = await initialisedDataDir();
    const db = join(dir, 'nevertrust.db');
    const original = readFileSync(db);
    const pageSize = original.readUInt16BE(16) === 1 ? 65536 : original.readUInt16BE(16);
    const pages = original.length / pageSize;
    // Garbage over the second half of the pages: the file opens and migrates, a later read (CA
    // state, audit log) hits the damage. Deterministic bytes, so the failure is the same every run.
    const from = Math.floor(pages / 2) * pageSize;
    const garbage = Buffer.alloc(original.length - from, 0x5a);
    const fd = openSync(db, 'r+');
    writeSync(fd, garbage, 0, garbage.length, from);
    closeSync(fd);
    expect(pages).toBeGreaterThan(3);
    const r = await runCli(serverArgs(dir));
    expect(r.code, r.stderr).toBe(1);
    const line = expectOneLine(r.stderr);
    expect(line).toContain(db);
    expect(line).toMatch(/damaged|not a database/);

    // Not a database at all.
    const other = join(tempDir(), 'data');
    mkdirSync(other, { mode: 0o700 });
    const fd2 = openSync(join(other, 'nevertrust.db'), 'w');
    writeSync(fd2, Buffer.alloc(64 * 1024, 0xa5));
    closeSync(fd2);
    const r2 = await runCli(serverArgs(other));
    expect(r2.code, r2.stderr).toBe(1);
    expect(expectOneLine(r2.stderr)).toContain(join(other, 'nevertrust.db'));
  });
});
