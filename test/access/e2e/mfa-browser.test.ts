/**
 * MFA for people in a real browser (Debian chromium through playwright-core) through the whole
 * stack: the access proxy with local MFA, the built-in provider, the app. TOTP enrollment through an
 * admin's one-time link, the code computed from the secret the page shows by this file's own RFC 6238
 * code; a step-up on /admin and back to the page; freshness (a rule asking for MFA within 2 s steps up
 * again after 3 s); a form post that needs a step-up is not replayed; recovery codes; WebAuthn
 * registration and step-up with Chromium's virtual authenticator (CDP).
 *
 * The browser is launched with `--ignore-certificate-errors-spki-list` of the proxy's serving
 * certificate (test/support/browser.ts `trustSpkiArg`): WebAuthn needs a page without a certificate
 * error. (`*.localhost` counts as a secure context in Chromium, so here it also ran without the
 * flag; other host names do not.)
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, hasChromium, launchBrowser, trustSpkiArg } from '../../support/browser.js';
import { PEOPLE } from './harness.js';
import { base32Decode, hotp, type MfaStack, startMfaStack, TotpDevice, totpStepNow } from './mfa-harness.js';

const haveBrowser = hasChromium();
if (!haveBrowser) console.warn(`SKIPPED: the MFA browser tests need ${CHROMIUM} (apt-get install chromium)`);

/** Screenshots of the pages for review (test-output/, not committed). */
async function shot(page: Page, name: string): Promise<void> {
  const dir = join(process.cwd(), 'test-output', 'screenshots');
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `mfa-${name}.png`), fullPage: true });
}

describe.skipIf(!haveBrowser)(`MFA in a real browser (${CHROMIUM})`, () => {
  let stack: MfaStack;
  let browser: Browser;
  let origin: string;
  let device: TotpDevice;
  let recoveryCodes: string[] = [];

  beforeAll(async () => {
    stack = await startMfaStack();
    origin = stack.origin;
    browser = await launchBrowser([trustSpkiArg([stack.proxyCert])]);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.close();
  });

  /** A fresh browser context, signed in as `who` at `path` (the provider's login page on the way). */
  async function signIn(
    who: 'alice' | 'bob',
    path: string,
    context?: BrowserContext,
  ): Promise<{ context: BrowserContext; page: Page }> {
    // The provider's certificate is the test CA's: the proxy's is trusted by SPKI (WebAuthn needs that).
    const ctx = context ?? (await browser.newContext({ ignoreHTTPSErrors: true }));
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    await page.goto(`${origin}${path}`);
    expect(page.url().startsWith(`${stack.idp.issuer}/interaction/`)).toBe(true);
    await page.fill('#username', who);
    await page.fill('#password', PEOPLE[who].password);
    await Promise.all([page.waitForURL(`${origin}/**`), page.click('button[type=submit]')]);
    return { context: ctx, page };
  }

  const appSaw = (path: string) => stack.app.hits.filter((h) => h.url === path);

  it('TOTP: enrollment through a link, step-up on /admin and back, freshness, a post not replayed, recovery codes', async () => {
    const { context, page } = await signIn('alice', '/admin');
    const blocked: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy|Refused/i.test(m.text())) blocked.push(m.text());
    });

    // 1. /admin steps up; alice has no factor, and no link: nothing to offer.
    expect(new URL(page.url()).pathname).toBe('/.nevertrust/mfa/challenge');
    expect(new URL(page.url()).searchParams.get('rd')).toBe('/admin');
    expect(await page.isVisible('#no-factor')).toBe(true);
    expect(stack.decisions.findLast((d) => d.target.path === '/admin')).toMatchObject({ outcome: 'step_up' });
    const mine = await page.goto(`${origin}/.nevertrust/mfa`);
    expect(mine?.headers()['cache-control']).toBe('no-store');
    expect(mine?.headers()['content-security-policy']).toContain("script-src 'self'");
    expect(await page.isVisible('#totp-add')).toBe(false);
    // A made-up link is refused.
    expect((await page.goto(`${origin}/.nevertrust/mfa/enroll?token=${'x'.repeat(43)}`))?.status()).toBe(403);

    // 2. The admin's one-time link; the page shows the QR code and the secret; the test computes the code.
    const link = await stack.mfa.createEnrollLink('alice', 'admin', 600_000);
    await page.goto(`${origin}/.nevertrust/mfa/enroll?token=${link.token}`);
    await page.fill('#totp-name', 'Phone');
    await Promise.all([page.waitForURL(`${origin}/.nevertrust/mfa/totp`), page.click('#totp-add')]);
    expect(await page.isVisible('#totp-qr svg')).toBe(true);
    await shot(page, 'totp-setup');
    const secret = base32Decode((await page.getAttribute('#totp-secret', 'data-secret')) ?? '');
    expect(secret.length).toBe(20);
    device = new TotpDevice(secret);
    expect((await page.textContent('#totp-secret'))?.replace(/\s/g, '')).toBe(
      await page.getAttribute('#totp-secret', 'data-secret'),
    );
    // A wrong code first: refused, nothing confirmed.
    await page.fill('#totp-code', hotp(secret, totpStepNow() + 5));
    const wrong = page.waitForResponse((r) => r.url().endsWith('/totp/confirm'));
    await page.click('#totp-confirm');
    expect((await wrong).status()).toBe(400);
    await page.waitForSelector('.error');
    expect(await page.textContent('.error')).toContain('did not work');
    // Only the confirmation again: the secret is not shown twice.
    expect(await page.isVisible('#totp-secret')).toBe(false);
    await page.fill('#totp-code', device.code());
    await Promise.all([page.waitForURL(`${origin}/.nevertrust/mfa?done=added`), page.click('#totp-confirm')]);
    expect(new URL(page.url()).pathname).toBe('/.nevertrust/mfa');
    expect(await page.locator('#factors li').count()).toBe(1);
    await shot(page, 'factors');
    expect(await page.textContent('#factors li')).toContain('Phone');
    // The link is spent.
    expect(await stack.mfa.checkEnrollLink(link.token, 'alice')).toBe(false);
    expect(stack.mfaEvents.some((e) => e.kind === 'mfa.enroll' && e.outcome === 'allow')).toBe(true);

    // 3. Recovery codes, shown once (MFA is fresh: it was just passed).
    await Promise.all([page.waitForURL(`${origin}/.nevertrust/mfa/recovery-codes`), page.click('#recovery-new')]);
    recoveryCodes = (await page.locator('#recovery-codes code').allTextContents()).map((c) => c.trim());
    expect(recoveryCodes).toHaveLength(10);
    await context.close();

    // 4. A new session: /admin steps up to the TOTP form; the code brings alice back to /admin.
    const s2 = await signIn('alice', '/admin?tab=users');
    const p2 = s2.page;
    expect(new URL(p2.url()).pathname).toBe('/.nevertrust/mfa/challenge');
    expect(await p2.isVisible('#wa-authenticate')).toBe(false);
    await shot(p2, 'challenge-totp');
    // Hostile input: a wrong code, then the right one.
    await p2.fill('#totp-code', '000000');
    await Promise.all([p2.waitForURL(`${origin}/.nevertrust/mfa/challenge`), p2.click('#totp-verify')]);
    expect(await p2.textContent('.error')).toContain('did not work');
    await p2.fill('#totp-code', device.code());
    await Promise.all([p2.waitForURL(`${origin}/admin?tab=users`), p2.click('#totp-verify')]);
    expect(await p2.textContent('#path')).toBe('/admin?tab=users');
    const hit = appSaw('/admin?tab=users').at(-1);
    expect(hit?.who?.amr).toContain('otp');

    // 5. Freshness: /admin/fresh asks for MFA within 2 s. Within it, it passes; 3 s later it steps up again.
    // (TOTP steps within the window are used up: a recovery code, the last resort, this time.)
    await p2.goto(`${origin}/.nevertrust/mfa/challenge?rd=/admin/fresh`);
    await p2.click('#recovery-open');
    await p2.fill('#recovery-code', recoveryCodes[0] ?? '');
    await Promise.all([p2.waitForURL(`${origin}/admin/fresh`), p2.click('#recovery-verify')]);
    expect(await p2.textContent('#path')).toBe('/admin/fresh');
    await new Promise((r) => setTimeout(r, 3000));
    await p2.goto(`${origin}/admin/fresh`);
    expect(new URL(p2.url()).pathname).toBe('/.nevertrust/mfa/challenge');

    // 6. A form post that needs a step-up is not replayed: back to its page, asked to send again.
    await p2.goto(`${origin}/admin`);
    // The app's page posts a form (as a user's click on its submit button would).
    await p2.evaluate(
      `(() => { const f = document.createElement('form'); f.method = 'post'; f.action = '/admin/fresh/save'; document.body.append(f); f.submit(); })()`,
    );
    await p2.waitForURL(/\/\.nevertrust\/mfa\/challenge/);
    const u = new URL(p2.url());
    expect(u.searchParams.get('rd')).toBe('/admin');
    expect(u.searchParams.get('again')).toBe('1');
    expect(await p2.isVisible('#again')).toBe(true);
    // 7. A recovery code works once; another one passes, and the post is asked for again, not replayed.
    await p2.click('#recovery-open');
    await p2.fill('#recovery-code', recoveryCodes[0] ?? '');
    const reused = p2.waitForResponse(
      (r) => r.url().endsWith('/.nevertrust/mfa/challenge') && r.request().method() === 'POST',
    );
    await p2.click('#recovery-verify');
    expect((await reused).status()).toBe(400);
    await p2.waitForSelector('.error');
    await p2.click('#recovery-open');
    await p2.fill('#recovery-code', recoveryCodes[1] ?? '');
    await Promise.all([p2.waitForURL(/\/challenge\/done/), p2.click('#recovery-verify')]);
    expect(await p2.textContent('#verified')).toContain('send the form again');
    expect(stack.app.hits.some((h) => h.method === 'POST')).toBe(false);
    expect(
      stack.mfaEvents.some(
        (e) => e.kind === 'mfa.verify' && e.outcome === 'allow' && JSON.stringify(e.details).includes('recovery'),
      ),
    ).toBe(true);
    expect(blocked).toEqual([]);
    await s2.context.close();
  }, 90_000);

  it('WebAuthn: registration and step-up with the virtual authenticator; the app sees hwk', async () => {
    const { context, page } = await signIn('bob', '/reports');
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
      },
    });
    const link = await stack.mfa.createEnrollLink('bob', 'admin', 600_000);
    await page.goto(`${origin}/.nevertrust/mfa/enroll?token=${link.token}`);
    await page.fill('#wa-name', 'Laptop key');
    await Promise.all([page.waitForURL(`${origin}/.nevertrust/mfa?done=added`), page.click('#wa-register')]);
    expect(await page.textContent('#factors li')).toContain('Laptop key');
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    expect(credentials).toHaveLength(1);

    // A new session (cookies cleared): the step-up offers the key first, and the key brings bob back.
    await context.clearCookies();
    await signIn('bob', '/reports/secret', context);
    expect(new URL(page.url()).pathname).toBe('/.nevertrust/mfa/challenge');
    expect(new URL(page.url()).searchParams.get('m')).toBe('hwk,swk');
    expect(await page.isVisible('#wa-authenticate')).toBe(true);
    await Promise.all([page.waitForURL(`${origin}/reports/secret`), page.click('#wa-authenticate')]);
    expect(await page.textContent('#path')).toBe('/reports/secret');
    const hit = appSaw('/reports/secret').at(-1);
    expect(hit?.who?.amr).toEqual(expect.arrayContaining(['hwk', 'user']));
    await context.close();
  }, 90_000);
});
