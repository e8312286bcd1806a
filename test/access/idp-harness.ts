/**
 * A real relying party (openid-client 6) and a cookie-keeping "browser" (undici over HTTPS with the
 * test CA) against the built-in provider, for the idp tests.
 */
import { createServer as createHttpsServer, type Server } from 'node:https';
import * as client from 'openid-client';
import { Agent, fetch as undiciFetch } from 'undici';
import type { Store } from '../../src/store/index.js';
import { hashPassword } from '../../src/access/idp/index.js';
import { makePki } from '../pep/pki.js';

export const CLIENT_ID = 'access-proxy';
export const CLIENT_SECRET = 'rp-secret-0123456789abcdef';
export const REDIRECT = 'https://app.example.test/.nevertrust/callback';
export const AFTER_LOGOUT = 'https://app.example.test/signed-out';

/** A CA, a localhost server certificate, and a fetch that trusts that CA. */
export async function tlsKit(dir: string) {
  const pki = await makePki(dir);
  const leaf = pki.mint('idp', { dnsNames: ['localhost'] });
  const ca = pki.bundle().toPem();
  let dispatcher = new Agent({ connect: { ca } });
  const fetchTls = ((url: string | URL, init?: Record<string, unknown>) =>
    undiciFetch(url, { ...init, dispatcher } as Parameters<typeof undiciFetch>[1])) as unknown as typeof fetch;
  return {
    tls: { cert: leaf.certChainPem, key: leaf.privateKeyPem },
    ca,
    fetchTls,
    /** Drops kept-alive connections (after the provider restarted). */
    async reset() {
      await dispatcher.close();
      dispatcher = new Agent({ connect: { ca } });
    },
    close: () => dispatcher.close(),
  };
}

export async function addUser(store: Store, username: string, password: string, extra: { disabled?: boolean } = {}) {
  await store.users.create({
    username,
    email: `${username}@example.com`,
    name: username[0]?.toUpperCase() + username.slice(1),
    groups: ['staff', 'admins'],
    passwordHash: await hashPassword(password),
    ...extra,
  });
}

/** A browser's cookie jar: name → value, sent everywhere (the provider scopes by name, not path, here). */
export class Browser {
  private readonly jar = new Map<string, string>();
  constructor(private readonly fetchTls: typeof fetch) {}

  async go(url: string, init: { method?: string; form?: Record<string, string> } = {}): Promise<Response> {
    const headers: Record<string, string> = {};
    if (this.jar.size) headers.cookie = [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
    let body: string | undefined;
    if (init.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(init.form).toString();
    }
    const res = await this.fetchTls(url, {
      method: init.method ?? (body ? 'POST' : 'GET'),
      headers,
      body,
      redirect: 'manual',
    });
    for (const c of res.headers.getSetCookie()) {
      const [pair = '', ...attrs] = c.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      const expired = attrs.some((a) => /expires=Thu, 01 Jan 1970/i.test(a)) || value === '';
      if (expired) this.jar.delete(name);
      else this.jar.set(name, value);
    }
    return res;
  }

  /** Follows redirects on the provider's origin; stops at (and returns) the first one elsewhere or a page. */
  async follow(
    url: string,
    init: { method?: string; form?: Record<string, string> } = {},
  ): Promise<{ res: Response; url: string }> {
    let res = await this.go(url, init);
    let at = url;
    for (let i = 0; i < 10 && res.status >= 300 && res.status < 400; i++) {
      const next = new URL(res.headers.get('location') ?? '', at).href;
      if (new URL(next).origin !== new URL(url).origin) return { res, url: next };
      at = next;
      res = await this.go(next);
    }
    return { res, url: at };
  }
}

export const csrfOf = (html: string) => /name="csrf" value="([^"]+)"/.exec(html)?.[1];
export const actionOf = (html: string) => /<form method="post" action="([^"]+)"/.exec(html)?.[1];

/** The relying party: discovery over HTTPS with the test CA. */
export async function relyingParty(issuer: string, fetchTls: typeof fetch) {
  return client.discovery(
    new URL(issuer),
    CLIENT_ID,
    { redirect_uris: [REDIRECT] },
    client.ClientSecretBasic(CLIENT_SECRET),
    {
      [client.customFetch]: fetchTls as unknown as client.CustomFetch,
    },
  );
}

/**
 * The whole code flow as a browser and the relying party do it: authorization URL, login page,
 * form post (with `form` overriding the fields), redirects, code exchange. Returns the login page's
 * answer too when the login is refused.
 */
export async function codeFlow(
  config: client.Configuration,
  browser: Browser,
  username: string,
  password: string,
  override: Record<string, string | undefined> = {},
) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT,
    scope: 'openid email profile groups',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  const login = await browser.follow(authUrl.href);
  const page = await login.res.text();
  const fields: Record<string, string> = { csrf: csrfOf(page) ?? '', username, password };
  for (const [k, v] of Object.entries(override)) {
    if (v === undefined) delete fields[k];
    else fields[k] = v;
  }
  const action = new URL(actionOf(page) ?? '', login.url).href;
  const posted = await browser.follow(action, { form: fields });
  if (!posted.url.startsWith(REDIRECT))
    return { refused: { status: posted.res.status, html: await posted.res.text() }, loginPage: login };
  const tokens = await client.authorizationCodeGrant(config, new URL(posted.url), {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
  });
  return { tokens, loginPage: login };
}

/** An HTTPS endpoint that keeps the bodies POSTed to it (the back-channel logout receiver). */
export async function receiver(tls: {
  cert: string;
  key: string;
}): Promise<{ url: string; bodies: string[]; server: Server }> {
  const bodies: string[] = [];
  const server = createHttpsServer(tls, (req, res) => {
    let b = '';
    req.on('data', (c: Buffer) => {
      b += c.toString();
    });
    req.on('end', () => {
      bodies.push(b);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return { url: `https://localhost:${port}/.nevertrust/backchannel-logout`, bodies, server };
}
