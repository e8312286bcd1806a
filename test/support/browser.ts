/**
 * A real browser for the people's flows: Debian's chromium driven by playwright-core (no downloaded
 * browser build). Certificates of the tests' own CAs are accepted per context (`ignoreHTTPSErrors`);
 * `*.localhost` names resolve to the loopback address in Chromium, so routes can use real host names.
 */
import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const hasChromium = (): boolean => existsSync(CHROMIUM);

/** Launches headless chromium with the flags these machines need. */
export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}
