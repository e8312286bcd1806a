/**
 * The key-encryption key (KEK): AES-256-GCM over CA and JWT private keys at rest.
 * Comes from `NEVERTRUST_KEK` (base64, 32 bytes) or a mode-0600 file, generated on first use.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createSecretKey,
  type KeyObject,
  randomBytes,
} from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { inspect } from 'node:util';
import { KekError } from './errors.js';

/** Environment variable that carries the KEK as base64 (32 bytes). */
export const KEK_ENV_VAR = 'NEVERTRUST_KEK';

/** A private key sealed under the KEK. `aad` binds it to its key id; the KEK id tells which KEK. */
export interface SealedKey {
  alg: 'A256GCM';
  kekId: string;
  iv: string;
  ciphertext: string;
  tag: string;
}

/**
 * AES-256-GCM key-encryption key. Its material never leaves the object: `toString`,
 * `toJSON` and `util.inspect` show only its id.
 *
 * @example
 * ```ts
 * const kek = Kek.fromBytes(randomBytes(32));
 * const box = kek.seal(pkcs8, 'example.org/gen-1/x509');
 * kek.open(box, 'example.org/gen-1/x509'); // pkcs8
 * ```
 */
export class Kek {
  readonly #key: KeyObject;
  /** Non-secret identifier, so a state sealed under another KEK fails with a clear error. */
  readonly id: string;

  private constructor(bytes: Buffer) {
    this.#key = createSecretKey(bytes);
    this.id = createHash('sha256').update('nevertrust-kek-id\0').update(bytes).digest('hex').slice(0, 16);
  }

  static fromBytes(bytes: Buffer): Kek {
    if (bytes.length !== 32) throw new KekError('ERR_KEK_INVALID', 'the KEK must be exactly 32 bytes (AES-256)');
    return new Kek(Buffer.from(bytes));
  }

  static fromBase64(text: string): Kek {
    const trimmed = text.trim();
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed)) {
      throw new KekError('ERR_KEK_INVALID', 'the KEK must be base64 of 32 bytes');
    }
    return Kek.fromBytes(Buffer.from(trimmed, 'base64'));
  }

  seal(plaintext: Buffer, aad: string): SealedKey {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.#key, iv);
    c.setAAD(Buffer.from(aad, 'utf8'));
    const ct = Buffer.concat([c.update(plaintext), c.final()]);
    return {
      alg: 'A256GCM',
      kekId: this.id,
      iv: iv.toString('base64'),
      ciphertext: ct.toString('base64'),
      tag: c.getAuthTag().toString('base64'),
    };
  }

  open(box: SealedKey, aad: string): Buffer {
    if (box.kekId !== this.id) {
      throw new KekError(
        'ERR_KEK_MISMATCH',
        `the key ${aad} is sealed under KEK ${box.kekId}, not under this KEK (${this.id})`,
      );
    }
    try {
      const d = createDecipheriv('aes-256-gcm', this.#key, Buffer.from(box.iv, 'base64'));
      d.setAAD(Buffer.from(aad, 'utf8'));
      d.setAuthTag(Buffer.from(box.tag, 'base64'));
      return Buffer.concat([d.update(Buffer.from(box.ciphertext, 'base64')), d.final()]);
    } catch {
      throw new KekError(
        'ERR_KEK_DECRYPT_FAILED',
        `the sealed key ${aad} does not authenticate (tampered or wrong key id)`,
      );
    }
  }

  toString(): string {
    return `Kek(${this.id})`;
  }

  toJSON(): { id: string } {
    return { id: this.id };
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

export interface LoadKekOptions {
  /** Path of the KEK file (base64, mode 0600). */
  file: string;
  /** Environment to read {@link KEK_ENV_VAR} from; defaults to `process.env`. */
  env?: Record<string, string | undefined>;
}

export interface LoadedKek {
  kek: Kek;
  source: 'env' | 'file';
  /** True when the file was just created: the caller must warn that it has to be backed up. */
  generated: boolean;
}

/**
 * Loads the KEK from `NEVERTRUST_KEK`, else from `file`; creates the file (mode 0600) with a
 * fresh random key when absent. A file readable by group or others is refused.
 *
 * @example
 * ```ts
 * const { kek, generated } = await loadOrCreateKek({ file: '/var/lib/nevertrust/kek' });
 * if (generated) log.warn('generated a new KEK at /var/lib/nevertrust/kek: back it up, the CA keys are useless without it');
 * ```
 * @throws {KekError} ERR_KEK_FILE_PERMISSIONS, ERR_KEK_INVALID
 */
export async function loadOrCreateKek(opts: LoadKekOptions): Promise<LoadedKek> {
  const env = opts.env ?? process.env;
  const fromEnv = env[KEK_ENV_VAR];
  if (fromEnv !== undefined && fromEnv !== '') {
    try {
      return { kek: Kek.fromBase64(fromEnv), source: 'env', generated: false };
    } catch {
      throw new KekError('ERR_KEK_INVALID', `${KEK_ENV_VAR} must be base64 of exactly 32 bytes`);
    }
  }
  let st: { mode: number } | undefined;
  try {
    st = await stat(opts.file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (st) {
    if ((st.mode & 0o077) !== 0) {
      throw new KekError(
        'ERR_KEK_FILE_PERMISSIONS',
        `KEK file ${opts.file} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}: it must not be readable by group or others (chmod 600)`,
      );
    }
    const text = await readFile(opts.file, 'utf8');
    try {
      return { kek: Kek.fromBase64(text), source: 'file', generated: false };
    } catch {
      throw new KekError('ERR_KEK_INVALID', `KEK file ${opts.file} must hold base64 of exactly 32 bytes`);
    }
  }
  await mkdir(dirname(opts.file), { recursive: true, mode: 0o700 });
  const bytes = randomBytes(32);
  // O_EXCL: never overwrite a KEK another process created meanwhile; if one did, use it.
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(opts.file, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return loadOrCreateKek({ ...opts, env: {} });
    throw e;
  }
  try {
    await fh.writeFile(`${bytes.toString('base64')}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return { kek: Kek.fromBytes(bytes), source: 'file', generated: true };
}
