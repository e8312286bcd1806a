import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { Kek, KekError, loadOrCreateKek } from '../../src/ca/index.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'nt-kek-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string | undefined> {
  try {
    await (typeof p === 'function' ? p() : p);
    return undefined;
  } catch (e) {
    if (!(e instanceof KekError)) throw e;
    return e.code;
  }
}

describe('KEK', () => {
  it('is generated on first use with mode 0600 and a flag to warn, then reloaded', async () => {
    const file = join(tmp(), 'sub', 'kek');
    const first = await loadOrCreateKek({ file, env: {} });
    expect(first.generated).toBe(true);
    expect(first.source).toBe('file');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const again = await loadOrCreateKek({ file, env: {} });
    expect(again.generated).toBe(false);
    expect(again.kek.id).toBe(first.kek.id);
  });

  it('refuses a group- or world-readable file', async () => {
    const file = join(tmp(), 'kek');
    writeFileSync(file, randomBytes(32).toString('base64'));
    chmodSync(file, 0o644);
    expect(await codeOf(loadOrCreateKek({ file, env: {} }))).toBe('ERR_KEK_FILE_PERMISSIONS');
    await expect(loadOrCreateKek({ file, env: {} })).rejects.toThrow(/mode 0644.*chmod 600/);
    chmodSync(file, 0o640);
    expect(await codeOf(loadOrCreateKek({ file, env: {} }))).toBe('ERR_KEK_FILE_PERMISSIONS');
  });

  it('prefers NEVERTRUST_KEK and validates it', async () => {
    const file = join(tmp(), 'kek');
    const bytes = randomBytes(32);
    const r = await loadOrCreateKek({ file, env: { NEVERTRUST_KEK: bytes.toString('base64') } });
    expect(r.source).toBe('env');
    expect(r.kek.id).toBe(Kek.fromBytes(bytes).id);
    expect(() => readFileSync(file)).toThrow(); // nothing written
    expect(await codeOf(loadOrCreateKek({ file, env: { NEVERTRUST_KEK: randomBytes(16).toString('base64') } }))).toBe(
      'ERR_KEK_INVALID',
    );
    expect(await codeOf(loadOrCreateKek({ file, env: { NEVERTRUST_KEK: 'not base64!' } }))).toBe('ERR_KEK_INVALID');
  });

  it('refuses a file with bad content', async () => {
    const file = join(tmp(), 'kek');
    writeFileSync(file, 'short', { mode: 0o600 });
    expect(await codeOf(loadOrCreateKek({ file, env: {} }))).toBe('ERR_KEK_INVALID');
  });

  it('seals with the key id as AAD; another id, another KEK or tampering fail', async () => {
    const kek = Kek.fromBytes(randomBytes(32));
    const secret = randomBytes(100);
    const box = kek.seal(secret, 'td/gen-1/x509');
    expect(kek.open(box, 'td/gen-1/x509').equals(secret)).toBe(true);
    expect(JSON.stringify(box)).not.toContain(secret.toString('base64'));
    expect(await codeOf(() => kek.open(box, 'td/gen-2/x509'))).toBe('ERR_KEK_DECRYPT_FAILED');
    expect(await codeOf(() => Kek.fromBytes(randomBytes(32)).open(box, 'td/gen-1/x509'))).toBe('ERR_KEK_MISMATCH');
    const ct = Buffer.from(box.ciphertext, 'base64');
    ct[0] = (ct[0] as number) ^ 1;
    expect(await codeOf(() => kek.open({ ...box, ciphertext: ct.toString('base64') }, 'td/gen-1/x509'))).toBe(
      'ERR_KEK_DECRYPT_FAILED',
    );
  });

  it('never shows its material', () => {
    const bytes = randomBytes(32);
    const kek = Kek.fromBytes(bytes);
    for (const text of [String(kek), JSON.stringify(kek), inspect(kek, { showHidden: true, depth: 5 })]) {
      expect(text).not.toContain(bytes.toString('base64'));
      expect(text).not.toContain(bytes.toString('hex'));
      expect(text).toContain(kek.id);
    }
  });
});
