/**
 * An app behind the access proxy for the live-connection tests: a page at every path, a WebSocket at
 * any path (it greets "hello", then says nothing), and `/slow`, answered only on `release()`. It
 * counts its open sockets, so a test sees the proxy close the app's side of a cut connection too.
 */
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { Duplex } from 'node:stream';

/** The running app: its port, its open WebSockets. */
export interface WsApp {
  port: number;
  open: Set<Duplex>;
  /** Answers the requests waiting at /slow. */
  release(): void;
  close(): void;
}

/** Starts the app on 127.0.0.1 at a free port. */
export async function startWsApp(): Promise<WsApp> {
  const open = new Set<Duplex>();
  const waiting: (() => void)[] = [];
  const server: Server = createServer((req, res) => {
    if (req.url === '/slow') {
      waiting.push(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('slow'));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>live</title><p>live</p>');
  });
  server.on('upgrade', (req, socket: Duplex) => {
    const key = String(req.headers['sec-websocket-key'] ?? '');
    const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    // An unmasked text frame "hello".
    socket.write(Buffer.from([0x81, 5, ...Buffer.from('hello')]));
    open.add(socket);
    socket.on('data', () => {});
    socket.on('error', () => {});
    // The proxy closed its side (an http server's sockets are half-open until then).
    socket.on('end', () => open.delete(socket));
    socket.on('close', () => open.delete(socket));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    open,
    release() {
      for (const w of waiting.splice(0)) w();
    },
    close() {
      for (const s of open) s.destroy();
      server.closeAllConnections();
      server.close();
    },
  };
}
