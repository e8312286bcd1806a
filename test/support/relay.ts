/**
 * A TCP relay in front of a server that a test can cut and restore: a follower of the signal
 * stream (sidecar, access proxy) reaches the server through it, and `down()` disconnects it.
 */
import { createServer as createTcpServer, type AddressInfo, connect as netConnect, type Socket } from 'node:net';

export interface Relay {
  /** `https://127.0.0.1:<relay port>`, for the follower's config. */
  url: string;
  /** Connections it has relayed so far. */
  readonly accepted: number;
  /** Drops every relayed connection and refuses new ones until `up()`. */
  down(): void;
  up(): void;
  close(): void;
}

/** A relay to `to` (an `https://host:port` URL). */
export function relay(to: string): Promise<Relay> {
  const target = new URL(to);
  let open = true;
  let accepted = 0;
  const live = new Set<Socket>();
  const server = createTcpServer((c) => {
    if (!open) return c.destroy();
    accepted++;
    const u = netConnect(Number(target.port), target.hostname);
    live.add(c);
    live.add(u);
    c.pipe(u).pipe(c);
    const end = () => {
      c.destroy();
      u.destroy();
      live.delete(c);
      live.delete(u);
    };
    c.on('error', end).on('close', end);
    u.on('error', end).on('close', end);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
        get accepted() {
          return accepted;
        },
        down() {
          open = false;
          for (const s of live) s.destroy();
        },
        up() {
          open = true;
        },
        close() {
          server.close();
          for (const s of live) s.destroy();
        },
      }),
    ),
  );
}
