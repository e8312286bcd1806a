/**
 * The device key (issue #22): a P-256 key that never leaves the device, behind an interface so a TPM
 * or PKCS#11 key can replace the file later. Signatures are ES256 in DER (ECDSA-Sig-Value), the form
 * X.509 certificates and PKCS#10 requests carry; JOSE users convert to raw r||s themselves.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DEVICE_ID_PATTERN } from '../../api/index.js';
import { createCsrWithSigner } from '../../ca/index.js';
import { type SpiffeId, spiffeIdFromSegments, type TrustDomain } from '../../spiffe/index.js';
import { DeviceError } from './errors.js';

/** A device's signing key, wherever it lives. */
export interface DeviceKey {
  /** SubjectPublicKeyInfo PEM of the P-256 public key. */
  publicKeyPem(): string;
  /** ES256 (ECDSA P-256, SHA-256) signature of `data`, DER-encoded. */
  sign(data: Buffer): Promise<Buffer>;
}

/** Largest key file read: a P-256 PKCS#8 PEM is about 250 bytes. */
const MAX_KEY_FILE_BYTES = 16 * 1024;

/**
 * A P-256 key in a PKCS#8 PEM file of mode 0600. Loading refuses a file that group or others may
 * read or write, a file owned by another user, a symlink, or a key that is not P-256.
 *
 * @example
 * ```ts
 * const key = await FileDeviceKey.loadOrCreate('/var/lib/nevertrust/device/key.pem');
 * const sig = await key.sign(Buffer.from('report'));
 * ```
 */
export class FileDeviceKey implements DeviceKey {
  private readonly publicPem: string;
  private constructor(
    private readonly key: KeyObject,
    readonly path: string,
  ) {
    this.publicPem = createPublicKey(key).export({ format: 'pem', type: 'spki' }).toString();
  }

  /** Creates a new key file (its directory 0700 if new); refuses to overwrite one. */
  static async create(path: string): Promise<FileDeviceKey> {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      // O_EXCL: never write over (or through a symlink to) an existing file.
      fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST')
        throw new DeviceError('ERR_DEVICE_KEY_EXISTS', `${path}: a device key already exists; load it instead`);
      throw e;
    }
    try {
      await fh.chmod(0o600);
      await fh.writeFile(pem);
      await fh.sync();
    } catch (e) {
      // A half-written file would be refused by every later load (and loadOrCreate would not replace it).
      await fh.close().catch(() => {});
      await unlink(path).catch(() => {});
      throw e;
    }
    await fh.close();
    return new FileDeviceKey(privateKey, path);
  }

  /** Loads an existing key file, checking its mode and owner first. */
  static async load(path: string): Promise<FileDeviceKey> {
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new DeviceError('ERR_DEVICE_KEY_MISSING', `${path}: no device key (enroll first)`);
      if (code === 'ELOOP')
        throw new DeviceError('ERR_DEVICE_KEY_INSECURE', `${path}: is a symlink; refusing to follow it`);
      throw e;
    }
    let text: string;
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new DeviceError('ERR_DEVICE_KEY_INSECURE', `${path}: not a regular file`);
      if ((st.mode & 0o077) !== 0)
        throw new DeviceError(
          'ERR_DEVICE_KEY_INSECURE',
          `${path}: mode ${(st.mode & 0o777).toString(8).padStart(4, '0')} lets group or others at the device key; run chmod 600 ${path}`,
        );
      const uid = process.getuid?.();
      if (uid !== undefined && st.uid !== uid)
        throw new DeviceError('ERR_DEVICE_KEY_INSECURE', `${path}: owned by uid ${st.uid}, not by this user (${uid})`);
      if (st.size > MAX_KEY_FILE_BYTES)
        throw new DeviceError('ERR_DEVICE_KEY_INVALID', `${path}: ${st.size} bytes is too large for a device key`);
      text = (await fh.readFile()).toString('utf8');
    } finally {
      await fh.close();
    }
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: text, format: 'pem' });
    } catch (e) {
      throw new DeviceError('ERR_DEVICE_KEY_INVALID', `${path}: not a PEM private key`, { cause: e });
    }
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
      throw new DeviceError(
        'ERR_DEVICE_KEY_INVALID',
        `${path}: the device key must be EC P-256 (got ${key.asymmetricKeyType ?? 'unknown'} ${key.asymmetricKeyDetails?.namedCurve ?? ''})`,
      );
    return new FileDeviceKey(key, path);
  }

  /** Loads the key file, creating it when there is none. */
  static async loadOrCreate(path: string): Promise<FileDeviceKey> {
    try {
      return await FileDeviceKey.load(path);
    } catch (e) {
      if (e instanceof DeviceError && e.code === 'ERR_DEVICE_KEY_MISSING') return FileDeviceKey.create(path);
      throw e;
    }
  }

  publicKeyPem(): string {
    return this.publicPem;
  }

  async sign(data: Buffer): Promise<Buffer> {
    return sign('sha256', data, { key: this.key, dsaEncoding: 'der' });
  }
}

/**
 * The device's SPIFFE ID, `spiffe://<td>/device/<id>`, built and checked by the one SPIFFE ID parser.
 *
 * @example
 * ```ts
 * deviceSpiffeId(parseTrustDomain('example.org'), 'laptop-alice').toString(); // 'spiffe://example.org/device/laptop-alice'
 * ```
 * @throws {DeviceError} ERR_DEVICE_ID_INVALID
 */
export function deviceSpiffeId(td: TrustDomain, deviceId: string): SpiffeId {
  if (!DEVICE_ID_PATTERN.test(deviceId))
    throw new DeviceError(
      'ERR_DEVICE_ID_INVALID',
      `device id ${JSON.stringify(deviceId.slice(0, 80))}: use 1-64 lower-case letters, digits, . _ - (starting with a letter or digit)`,
    );
  return spiffeIdFromSegments(td, 'device', deviceId);
}

/** The device id a SPIFFE ID names (`/device/<id>` with a valid id), or undefined when it names no device. */
export function deviceIdOf(id: SpiffeId): string | undefined {
  const [ns, deviceId, ...rest] = id.segments;
  return ns === 'device' && rest.length === 0 && deviceId !== undefined && DEVICE_ID_PATTERN.test(deviceId)
    ? deviceId
    : undefined;
}

/**
 * A PKCS#10 request signed by the device key, asking for the device's SPIFFE ID as its URI SAN
 * (built by src/ca's request builder). Returns DER.
 *
 * @example
 * ```ts
 * const csr = await createDeviceCsr(key, deviceSpiffeId(td, 'laptop-alice'));
 * ```
 * @throws {DeviceError} ERR_DEVICE_ID_INVALID when `id` is not `spiffe://<td>/device/<id>`
 */
export async function createDeviceCsr(key: DeviceKey, id: SpiffeId): Promise<Buffer> {
  if (deviceIdOf(id) === undefined)
    throw new DeviceError(
      'ERR_DEVICE_ID_INVALID',
      `${id.toString()} is not a device SPIFFE ID (spiffe://<td>/device/<id>)`,
    );
  return createCsrWithSigner(createPublicKey(key.publicKeyPem()), (cri) => key.sign(cri), { uriSan: id.toString() });
}
