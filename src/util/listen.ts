/**
 * Starts a server listening and settles once it is (or is not): the `listen` callback does not
 * report errors such as EADDRINUSE, which arrive as an `error` event instead.
 */
import type { Server } from 'node:net';

/** Where to listen: a TCP host and port (0 for any free port), or a Unix socket path. */
export type ListenAt = { host: string; port: number } | { path: string };

/**
 * Listens on `at`; resolves with the bound TCP port (0 for a Unix socket).
 *
 * @example
 * ```ts
 * const port = await listen(server, { host: '127.0.0.1', port: 0 });
 * ```
 * @throws the server's `error` (e.g. EADDRINUSE) when it cannot listen
 */
export function listen(server: Server, at: ListenAt): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = () => {
      server.off('error', reject);
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : 0);
    };
    if ('path' in at) server.listen(at.path, done);
    else server.listen(at.port, at.host, done);
  });
}
