/**
 * The device's state directory (issue #22): `key.pem` (the device key), `cert.pem` (its certificate
 * chain), `bundle.pem` (the trust domain's roots) and `device.json` (which server, which device).
 * Directory 0700, files 0600, each written whole (temp file + rename) so a crash mid-renewal never
 * leaves a half certificate.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, lstat, mkdir, open, rename, unlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { deviceIdText } from '../../api/index.js';
import { firstIssue } from '../../api/parse.js';
import { DeviceError } from './errors.js';
import { FileDeviceKey } from './key.js';

/** Environment variable naming the state directory (below `--dir`, above the default). */
export const DEVICE_DIR_ENV = 'NEVERTRUST_DEVICE_DIR';

/** What `device.json` holds: where the device enrolled and as whom. */
export const deviceInfoSchema = z.strictObject({
  /** The server's agent port, `https://host:8081`. */
  server: z.url({ protocol: /^https$/ }),
  device_id: deviceIdText,
  spiffe_id: z.string().startsWith('spiffe://'),
  owner: z.string().min(1),
  trust_domain: z.string().min(1),
});
export type DeviceInfo = z.infer<typeof deviceInfoSchema>;

/** `--dir`, else `$NEVERTRUST_DEVICE_DIR`, else `~/.config/nevertrust/device`. */
export function resolveDeviceDir(dir?: string): string {
  return resolve(dir ?? process.env[DEVICE_DIR_ENV] ?? join(homedir(), '.config', 'nevertrust', 'device'));
}

/** Largest state file read (a chain or bundle of a few certificates). */
const MAX_STATE_FILE_BYTES = 256 * 1024;

/**
 * One device's state directory.
 *
 * @example
 * ```ts
 * const state = new DeviceState(resolveDeviceDir(opts.dir));
 * const info = await state.readInfo(); // throws ERR_DEVICE_NOT_ENROLLED before enrollment
 * ```
 */
export class DeviceState {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = resolve(dir);
  }

  get keyPath(): string {
    return join(this.dir, 'key.pem');
  }
  get certPath(): string {
    return join(this.dir, 'cert.pem');
  }
  get bundlePath(): string {
    return join(this.dir, 'bundle.pem');
  }
  get infoPath(): string {
    return join(this.dir, 'device.json');
  }

  /** Creates the directory 0700 (or tightens an existing one that is ours). */
  async ensureDir(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const st = await lstat(this.dir);
    if (!st.isDirectory()) throw new DeviceError('ERR_DEVICE_STATE_INVALID', `${this.dir}: not a directory`);
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid)
      throw new DeviceError(
        'ERR_DEVICE_STATE_INVALID',
        `${this.dir}: owned by uid ${st.uid}, not by this user (${uid})`,
      );
    if ((st.mode & 0o077) !== 0) await chmod(this.dir, 0o700);
  }

  /** Whether this directory holds an enrollment (`device.json`). */
  async enrolled(): Promise<boolean> {
    try {
      await lstat(this.infoPath);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
  }

  /** A new device key (refuses to replace one: a second enrollment needs a new directory). */
  createKey(): Promise<FileDeviceKey> {
    return FileDeviceKey.create(this.keyPath);
  }

  loadKey(): Promise<FileDeviceKey> {
    return FileDeviceKey.load(this.keyPath);
  }

  /** `device.json`, checked; ERR_DEVICE_NOT_ENROLLED when absent, the field named when malformed. */
  async readInfo(): Promise<DeviceInfo> {
    const text = await this.readText(this.infoPath);
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw new DeviceError('ERR_DEVICE_STATE_INVALID', `${this.infoPath}: not JSON (${(e as Error).message})`);
    }
    const r = deviceInfoSchema.safeParse(raw);
    if (!r.success) {
      const { field, message } = firstIssue(r.error);
      throw new DeviceError('ERR_DEVICE_STATE_INVALID', `${this.infoPath}: ${field}: ${message}`);
    }
    return r.data;
  }

  /**
   * The key file's PEM, for the TLS handshake (Node's TLS takes key material, not a signer). Call
   * {@link loadKey} first: it checks the file's mode and owner.
   */
  readKeyPem(): Promise<string> {
    return this.readText(this.keyPath);
  }

  readCertChain(): Promise<string> {
    return this.readText(this.certPath);
  }

  readBundle(): Promise<string> {
    return this.readText(this.bundlePath);
  }

  /** Stores what enrollment or renewal returned; `info` only on enrollment. Certificate last-but-one, info last. */
  async save(s: { certChain: string; bundle: string; info?: DeviceInfo }): Promise<void> {
    await this.ensureDir();
    await writeFileAtomic(this.bundlePath, s.bundle);
    await writeFileAtomic(this.certPath, s.certChain);
    // device.json last: its presence means "enrolled", so it must not appear before the certificate.
    if (s.info) await writeFileAtomic(this.infoPath, `${JSON.stringify(deviceInfoSchema.parse(s.info), null, 2)}\n`);
  }

  private async readText(path: string): Promise<string> {
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT')
        throw new DeviceError(
          'ERR_DEVICE_NOT_ENROLLED',
          `${path}: missing; this device is not enrolled in ${this.dir} (nevertrust device enroll --server URL --token T)`,
        );
      if (code === 'ELOOP') throw new DeviceError('ERR_DEVICE_STATE_INVALID', `${path}: is a symlink; refusing it`);
      throw e;
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new DeviceError('ERR_DEVICE_STATE_INVALID', `${path}: not a regular file`);
      if (st.size > MAX_STATE_FILE_BYTES)
        throw new DeviceError('ERR_DEVICE_STATE_INVALID', `${path}: ${st.size} bytes is too large`);
      return (await fh.readFile()).toString('utf8');
    } finally {
      await fh.close();
    }
  }
}

/** Writes `path` whole: a new 0600 temp file beside it, synced, then renamed over it. */
export async function writeFileAtomic(path: string, data: string | Buffer): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    await fh.chmod(0o600);
    await fh.writeFile(data);
    await fh.sync();
    await fh.close();
    await rename(tmp, path);
  } catch (e) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw e;
  }
}
