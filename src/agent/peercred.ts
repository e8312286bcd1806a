/**
 * Peer credentials of a Unix-socket connection (SO_PEERCRED), through the `peercred` N-API addon
 * in `native/peercred`. The kernel fills these at connect time; the caller cannot forge them.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { NevertrustError } from '../errors.js';
import { NativeAddonMissingError, nativeAddonFile } from '../util/native-addon.js';

/** The process on the other end of a Unix socket, as the kernel recorded it at connect(). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/** Thrown when peer credentials cannot be established; callers must deny. */
export class PeerCredentialsError extends NevertrustError<
  'ERR_PEERCRED_ADDON_MISSING' | 'ERR_PEERCRED_NO_FD' | 'ERR_PEERCRED_GETSOCKOPT'
> {
  override readonly name = 'PeerCredentialsError';
  constructor(
    readonly code: 'ERR_PEERCRED_ADDON_MISSING' | 'ERR_PEERCRED_NO_FD' | 'ERR_PEERCRED_GETSOCKOPT',
    message: string,
  ) {
    super(message, { status: 500 });
  }
}

interface PeerCredAddon {
  getPeerCred(fd: number): PeerCredentials;
}

let addon: PeerCredAddon | undefined;
let addonError: PeerCredentialsError | undefined;

/** Where the addon is looked for, in order (node-gyp's Release build, then a Debug build). */
export function peerCredAddonCandidates(): string[] {
  return [nativeAddonFile('peercred', 'Release'), nativeAddonFile('peercred', 'Debug')];
}

function missing(detail?: string): PeerCredentialsError {
  return new PeerCredentialsError(
    'ERR_PEERCRED_ADDON_MISSING',
    new NativeAddonMissingError('peercred', detail).message,
  );
}

function loadAddon(): PeerCredAddon {
  if (addon) return addon;
  if (addonError) throw addonError;
  const file = peerCredAddonCandidates().find((f) => existsSync(f));
  if (!file) throw missing();
  let loaded: Partial<PeerCredAddon>;
  try {
    loaded = createRequire(import.meta.url)(file) as Partial<PeerCredAddon>;
  } catch (e) {
    // Built for another Node (ABI) or another machine: as good as missing.
    throw missing(`${file} does not load: ${(e as Error).message.split('\n')[0]}`);
  }
  if (typeof loaded.getPeerCred !== 'function') throw missing(`${file} does not export getPeerCred`);
  addon = loaded as PeerCredAddon;
  return addon;
}

/**
 * Loads the addon now, so a process that needs it (the agent, `nevertrust up`) refuses to start
 * with one clear line instead of denying every workload later.
 *
 * @example
 * ```ts
 * requirePeerCredentials(); // throws PeerCredentialsError ERR_PEERCRED_ADDON_MISSING when not built
 * ```
 * @throws {PeerCredentialsError}
 */
export function requirePeerCredentials(): void {
  loadAddon();
}

/**
 * SO_PEERCRED of a file descriptor.
 *
 * @example
 * ```ts
 * getPeerCredFromFd(fd); // { pid: 4242, uid: 1000, gid: 1000 }
 * ```
 * @throws {PeerCredentialsError}
 */
export function getPeerCredFromFd(fd: number): PeerCredentials {
  const a = loadAddon();
  try {
    const c = a.getPeerCred(fd);
    return { pid: c.pid, uid: c.uid, gid: c.gid };
  } catch (e) {
    throw new PeerCredentialsError('ERR_PEERCRED_GETSOCKOPT', (e as Error).message);
  }
}

/** The libuv handle's fd; Node keeps it on the internal `_handle` (Pipe/TCP wrap) on Unix. */
function socketFd(socket: Socket): number | undefined {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * The credentials of the process connected to `socket` (a Unix-domain stream socket). Fails closed:
 * any missing piece (no addon, no fd, a TCP socket, getsockopt error) throws, and the caller denies.
 *
 * @example
 * ```ts
 * server.on('connection', (sock) => {
 *   const { pid, uid, gid } = peerCredentials(sock);
 * });
 * ```
 * @throws {PeerCredentialsError}
 */
export function peerCredentials(socket: Socket): PeerCredentials {
  const fd = socketFd(socket);
  if (fd === undefined) {
    throw new PeerCredentialsError(
      'ERR_PEERCRED_NO_FD',
      'the socket has no file descriptor (closed, or not a Unix socket)',
    );
  }
  return getPeerCredFromFd(fd);
}
