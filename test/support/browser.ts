/**
 * A real browser for the people's flows: Debian's chromium driven by playwright-core (no downloaded
 * browser build). Certificates of the tests' own CAs are accepted per context (`ignoreHTTPSErrors`);
 * `*.localhost` names resolve to the loopback address in Chromium, so routes can use real host names.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { type Browser, chromium, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const hasChromium = (): boolean => existsSync(CHROMIUM);

/**
 * Launches headless chromium with the flags these machines need, plus `extraArgs`: e.g.
 * {@link trustSpkiArg} of the serving certificates, so a page has no certificate error (WebAuthn
 * needs that on host names other than `*.localhost`; `ignoreHTTPSErrors` only proceeds past it).
 */
export async function launchBrowser(extraArgs: readonly string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', ...extraArgs],
  });
}

/** `--ignore-certificate-errors-spki-list=…`: Chromium treats these certificates (PEM) as valid. */
export function trustSpkiArg(certPems: readonly string[]): string {
  const hashes = certPems.map((pem) =>
    createHash('sha256')
      .update(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' }))
      .digest('base64'),
  );
  return `--ignore-certificate-errors-spki-list=${hashes.join(',')}`;
}

/** How a page's WebSocket closed; `at` by the page's clock (ms since the epoch). */
export interface SocketClosed {
  code: number;
  reason: string;
  at: number;
}

/**
 * Opens a WebSocket in `page` to `url` and resolves with its first message (rejects on an error
 * first). {@link socketClosed} then tells how it closed; `name` tells a page's sockets apart.
 */
export function openPageSocket(page: Page, url: string, name = 'ws'): Promise<string> {
  return page.evaluate(
    ([u, n]) =>
      new Promise<string>((res, rej) => {
        const w = globalThis as unknown as { socketsClosed?: Record<string, SocketClosed> };
        w.socketsClosed ??= {};
        const closed = w.socketsClosed;
        const ws = new WebSocket(u);
        ws.onmessage = (m) => res(String(m.data));
        ws.onerror = () => rej(new Error('websocket error'));
        ws.onclose = (e) => {
          closed[n] = { code: e.code, reason: e.reason, at: Date.now() };
        };
      }),
    [url, name] as const,
  );
}

/** How the socket {@link openPageSocket} opened as `name` closed; undefined while it is open. */
export function socketClosed(page: Page, name = 'ws'): Promise<SocketClosed | undefined> {
  return page.evaluate(
    (n) => (globalThis as unknown as { socketsClosed?: Record<string, SocketClosed> }).socketsClosed?.[n],
    name,
  );
}
