/**
 * The dedicated audit signing key (Ed25519) and signed checkpoints.
 *
 * Where the private key lives: with a KEK (32 bytes, the same key-encryption key the CA uses), it is
 * sealed with AES-256-GCM and kept in the store (`kv` namespace `audit`), so every server on a shared
 * PostgreSQL signs with it. Without a KEK it is kept in `<data_dir>/audit-signing.key` (mode 0600) and
 * the store holds only the public key: a database dump then never contains it.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
  verify,
} from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Checkpoint } from '../api/audit.js';
import type { Store } from '../store/index.js';
import { AuditKeyError } from './errors.js';

export type { Checkpoint };

export const AUDIT_KEY_FILE = 'audit-signing.key';
const KV_NS = 'audit';
const KV_KEY = 'signing_key';

/**
 * The signed bytes: a small text note, in the spirit of C2SP signed-note checkpoints.
 *
 * @example
 * checkpointMessage(10, 'ab…', 1767225600000).toString()
 * // 'nevertrust-audit-checkpoint/v1\n10\nab…\n1767225600000\n'
 */
export function checkpointMessage(treeSize: number, rootHex: string, time: number): Buffer {
  return Buffer.from(`nevertrust-audit-checkpoint/v1\n${treeSize}\n${rootHex}\n${time}\n`);
}

/** Key id: the first 16 hex digits of SHA-256 over the SPKI DER public key. */
export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex')
    .slice(0, 16);
}

/**
 * Checks a checkpoint's signature with a public key (PEM or KeyObject).
 *
 * @example
 * verifyCheckpoint(cp, signer.publicKeyPem) // true
 */
export function verifyCheckpoint(cp: Checkpoint, publicKey: KeyObject | string): boolean {
  try {
    const key = typeof publicKey === 'string' ? createPublicKey(publicKey) : publicKey;
    if (keyIdOf(key) !== cp.key_id) return false;
    return verify(
      null,
      checkpointMessage(cp.tree_size, cp.root_hash, cp.time),
      key,
      Buffer.from(cp.signature, 'base64'),
    );
  } catch {
    return false;
  }
}

interface StoredKey {
  alg: 'Ed25519';
  key_id: string;
  public_key: string;
  /** AES-256-GCM sealed PKCS#8 DER (base64 parts), when a KEK is configured. */
  sealed?: { iv: string; tag: string; ct: string };
  /** Otherwise the private key is in this file in the data dir. */
  file?: string;
}

function seal(kek: Buffer, plain: Buffer, aad: string): { iv: string; tag: string; ct: string } {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', kek, iv);
  c.setAAD(Buffer.from(aad));
  const ct = Buffer.concat([c.update(plain), c.final()]);
  return { iv: iv.toString('base64'), tag: c.getAuthTag().toString('base64'), ct: ct.toString('base64') };
}

function unseal(kek: Buffer, s: { iv: string; tag: string; ct: string }, aad: string): Buffer {
  const d = createDecipheriv('aes-256-gcm', kek, Buffer.from(s.iv, 'base64'));
  d.setAAD(Buffer.from(aad));
  d.setAuthTag(Buffer.from(s.tag, 'base64'));
  return Buffer.concat([d.update(Buffer.from(s.ct, 'base64')), d.final()]);
}

export interface SignerOptions {
  dataDir: string;
  /** 32-byte key-encryption key; when given the private key is sealed into the store. */
  kek?: Buffer;
}

/**
 * Signs checkpoints with the audit key, creating the key on first use.
 *
 * @example
 * const signer = await AuditSigner.load(store, { dataDir: './.nevertrust' });
 * const cp = signer.sign(42, rootHex, Date.now());
 */
export class AuditSigner {
  private constructor(
    private readonly privateKey: KeyObject | undefined,
    readonly publicKey: KeyObject,
    readonly keyId: string,
  ) {}

  get publicKeyPem(): string {
    return this.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  }

  /** True when this process holds the private key (verification alone needs only the public one). */
  get canSign(): boolean {
    return this.privateKey !== undefined;
  }

  sign(treeSize: number, rootHex: string, time: number): Checkpoint {
    if (!this.privateKey) throw new AuditKeyError('the audit signing key is not available in this process');
    const signature = sign(null, checkpointMessage(treeSize, rootHex, time), this.privateKey).toString('base64');
    return { tree_size: treeSize, root_hash: rootHex, time, key_id: this.keyId, signature };
  }

  /** Loads only the public key (for offline verification); undefined when no key was ever made. */
  static async loadPublic(store: Store): Promise<AuditSigner | undefined> {
    const entry = await store.kv.get(KV_NS, KV_KEY);
    if (!entry) return undefined;
    const k = JSON.parse(entry.value) as StoredKey;
    const pub = createPublicKey(k.public_key);
    return new AuditSigner(undefined, pub, keyIdOf(pub));
  }

  /** Loads the key, creating it (and storing it as documented above) on first use. */
  static async load(store: Store, opts: SignerOptions): Promise<AuditSigner> {
    if (opts.kek && opts.kek.length !== 32) throw new AuditKeyError('the KEK must be 32 bytes (AES-256)');
    for (let attempt = 0; attempt < 3; attempt++) {
      const entry = await store.kv.get(KV_NS, KV_KEY);
      if (entry) return AuditSigner.fromStored(JSON.parse(entry.value) as StoredKey, opts);
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      const keyId = keyIdOf(publicKey);
      const stored: StoredKey = {
        alg: 'Ed25519',
        key_id: keyId,
        public_key: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      };
      const der = privateKey.export({ type: 'pkcs8', format: 'der' });
      if (opts.kek) stored.sealed = seal(opts.kek, der, `nevertrust-audit-key:${keyId}`);
      else {
        stored.file = AUDIT_KEY_FILE;
        const file = join(opts.dataDir, AUDIT_KEY_FILE);
        if (existsSync(file)) {
          // A key file without a store entry: the store was reset; keep using the file's key.
          const existing = AuditSigner.readKeyFile(file);
          const pub = createPublicKey(existing);
          stored.key_id = keyIdOf(pub);
          stored.public_key = pub.export({ type: 'spki', format: 'pem' }).toString();
        } else {
          const fd = openSync(file, 'wx', 0o600);
          try {
            writeSync(fd, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
          } finally {
            closeSync(fd);
          }
        }
      }
      try {
        await store.kv.put(KV_NS, KV_KEY, JSON.stringify(stored), 0);
      } catch {
        continue; // another server created it first: use theirs
      }
      return AuditSigner.fromStored(stored, opts);
    }
    throw new AuditKeyError('could not create the audit signing key (the store kept changing under us)');
  }

  private static readKeyFile(file: string): KeyObject {
    const mode = statSync(file).mode;
    if ((mode & 0o077) !== 0) {
      throw new AuditKeyError(`${file} is readable by group or others: run chmod 600 ${file}`);
    }
    return createPrivateKey(readFileSync(file));
  }

  private static fromStored(k: StoredKey, opts: SignerOptions): AuditSigner {
    const pub = createPublicKey(k.public_key);
    const keyId = keyIdOf(pub);
    let priv: KeyObject;
    if (k.sealed) {
      if (!opts.kek) {
        throw new AuditKeyError('the audit signing key is sealed with a KEK: configure the same KEK (ca.kek_file)');
      }
      try {
        priv = createPrivateKey({
          key: unseal(opts.kek, k.sealed, `nevertrust-audit-key:${k.key_id}`),
          format: 'der',
          type: 'pkcs8',
        });
      } catch (e) {
        throw new AuditKeyError('cannot unseal the audit signing key: wrong KEK?', { cause: e });
      }
    } else {
      const file = join(opts.dataDir, k.file ?? AUDIT_KEY_FILE);
      if (!existsSync(file)) {
        throw new AuditKeyError(
          `the audit signing key lives in ${file}, which is missing here: copy it from the server that created it, or configure a KEK so servers share a sealed key`,
        );
      }
      priv = AuditSigner.readKeyFile(file);
    }
    if (keyIdOf(createPublicKey(priv)) !== keyId) {
      throw new AuditKeyError('the audit private key does not match the public key in the store');
    }
    return new AuditSigner(priv, pub, keyId);
  }
}
