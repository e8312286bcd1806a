/**
 * Raw byte tunnels for upgraded connections (WebSocket): once the handshake request is decided and
 * passed on, the sidecar only copies bytes, with backpressure both ways, and closes both sides
 * together.
 */
import type { Duplex } from 'node:stream';
import { rawResponse } from './headers.js';

/**
 * Joins two connections: bytes flow both ways; an end or error on either closes both.
 *
 * @example
 * ```ts
 * splice(clientSocket, appSocket);
 * ```
 */
export function splice(a: Duplex, b: Duplex): void {
  const close = () => {
    a.destroy();
    b.destroy();
  };
  a.on('error', close);
  b.on('error', close);
  a.on('close', close);
  b.on('close', close);
  a.pipe(b);
  b.pipe(a);
}

/**
 * Answers on a raw socket (an upgrade that is refused or cannot be passed on) and closes it.
 *
 * @example
 * ```ts
 * writeRawResponse(socket, 502, { 'content-type': 'application/json' }, '{"error":"bad_gateway"}');
 * ```
 */
export function writeRawResponse(
  socket: Duplex,
  status: number,
  headers: Record<string, string | number>,
  body: string,
): void {
  socket.end(rawResponse(status, { ...headers, connection: 'close' }, body), 'latin1');
}
