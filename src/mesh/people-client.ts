/**
 * A person's browser, minus the browser: an HTTPS client with a cookie jar that signs in through the
 * real flow (the access proxy → the provider's authorization endpoint → its login form → the proxy's
 * callback) and then uses the app. The demo's people's traffic and the access-proxy benchmark use it;
 * tests of pages use a real browser instead.
 *
 * `*.localhost` names are resolved to the loopback address here (as browsers do), so routes can carry
 * real host names without touching /etc/hosts.
 */
import { Agent, type Dispatcher, request } from 'undici';
import { localhostLookup } from '../util/localhost-lookup.js';

/** What one request answered. */
export interface PersonResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** The URL that answered (after the redirects followed). */
  url: string;
}

export interface PersonClientOptions {
  /** PEM of the CAs to trust (the trust domain's bundle); default: the system's. */
  ca?: string;
  /** Most redirects followed per navigation (default 20). */
  maxRedirects?: number;
  /** A client certificate (PEM, leaf first) and its key: a device certificate for the access proxy. */
  cert?: string;
  key?: string;
}

/** Cookies per host: name → value (enough for host-only `__Host-` cookies, which is all the flow sets). */
type Jar = Map<string, Map<string, string>>;

/** A form of a page: its action and its inputs (name → value). */
export interface ParsedForm {
  action: string;
  fields: Record<string, string>;
}

/** The inputs of the first form in `html`, and its action. */
export function parseForm(html: string): ParsedForm | undefined {
  return parseForms(html)[0];
}

/** Every form in `html`, in order, with its action and inputs. */
export function parseForms(html: string): ParsedForm[] {
  const out: ParsedForm[] = [];
  for (const form of html.matchAll(/<form\b[^>]*>([\s\S]*?)<\/form>/gi)) {
    const head = form[0].slice(0, form[0].indexOf('>') + 1);
    const action = /\saction="([^"]*)"/i.exec(head)?.[1] ?? '';
    const fields: Record<string, string> = {};
    for (const m of (form[1] ?? '').matchAll(/<input\b[^>]*>/gi)) {
      const name = /\sname="([^"]*)"/i.exec(m[0])?.[1];
      if (!name) continue;
      fields[decodeEntities(name)] = decodeEntities(/\svalue="([^"]*)"/i.exec(m[0])?.[1] ?? '');
    }
    out.push({ action: decodeEntities(action), fields });
  }
  return out;
}

function decodeEntities(s: string): string {
  return s
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&#x27;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&#x2F;|&#47;/g, '/')
    .replace(/&amp;/g, '&');
}

/**
 * One person's client.
 *
 * @example
 * ```ts
 * const alice = new PersonClient({ ca: bundlePem });
 * await alice.signIn('https://backoffice.localhost:8443/reports', 'alice', password);
 * const r = await alice.get('https://backoffice.localhost:8443/admin'); // 200 or 403
 * ```
 */
export class PersonClient {
  private readonly jar: Jar = new Map();
  private readonly dispatcher: Dispatcher;
  private readonly maxRedirects: number;

  constructor(opts: PersonClientOptions = {}) {
    this.dispatcher = new Agent({
      connect: {
        ca: opts.ca,
        lookup: localhostLookup as never,
        ...(opts.cert !== undefined && opts.key !== undefined ? { cert: opts.cert, key: opts.key } : {}),
      },
      keepAliveTimeout: 10_000,
    });
    this.maxRedirects = opts.maxRedirects ?? 20;
  }

  /** The cookies this client holds for `host` (tests look at them; never log them). */
  cookies(host: string): ReadonlyMap<string, string> {
    return this.jar.get(host) ?? new Map();
  }

  /** Forgets every cookie (a new browser profile). */
  clearCookies(): void {
    this.jar.clear();
  }

  private cookieHeader(url: URL): string | undefined {
    const c = this.jar.get(url.hostname);
    if (!c || c.size === 0) return undefined;
    return [...c].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  private keep(url: URL, setCookie: string | string[] | undefined): void {
    if (!setCookie) return;
    let c = this.jar.get(url.hostname);
    if (!c) {
      c = new Map();
      this.jar.set(url.hostname, c);
    }
    for (const line of Array.isArray(setCookie) ? setCookie : [setCookie]) {
      const [pair = '', ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => {
        const [k = '', v = ''] = a.trim().split('=');
        if (k.toLowerCase() === 'max-age') return Number(v) <= 0;
        if (k.toLowerCase() === 'expires') return Date.parse(v) <= Date.now();
        return false;
      });
      if (expired || value === '') c.delete(name);
      else c.set(name, value);
    }
  }

  /** One request, no redirect followed. */
  async send(
    method: string,
    url: string,
    opts: { headers?: Record<string, string>; body?: string } = {},
  ): Promise<PersonResponse> {
    const u = new URL(url);
    const headers: Record<string, string> = { accept: 'text/html', ...opts.headers };
    const cookie = this.cookieHeader(u);
    if (cookie) headers.cookie = cookie;
    const res = await request(u, {
      method: method as Dispatcher.HttpMethod,
      headers,
      body: opts.body,
      dispatcher: this.dispatcher,
      headersTimeout: 15_000,
      bodyTimeout: 15_000,
    });
    this.keep(u, res.headers['set-cookie']);
    return { status: res.statusCode, headers: res.headers, body: await res.body.text(), url };
  }

  /** A navigation: follows redirects as a browser does (a 303, or a 301/302 after POST, becomes a GET). */
  async navigate(
    method: string,
    url: string,
    opts: { headers?: Record<string, string>; body?: string } = {},
  ): Promise<PersonResponse> {
    let r = await this.send(method, url, opts);
    let current = url;
    for (let i = 0; i < this.maxRedirects && r.status >= 300 && r.status < 400; i++) {
      const loc = r.headers.location;
      if (typeof loc !== 'string') break;
      current = new URL(loc, current).toString();
      const keepMethod = r.status === 307 || r.status === 308;
      r = keepMethod ? await this.send(method, current, opts) : await this.send('GET', current);
    }
    return { ...r, url: current };
  }

  /** GET with redirects followed. */
  get(url: string, headers?: Record<string, string>): Promise<PersonResponse> {
    return this.navigate('GET', url, { headers });
  }

  /**
   * Signs in: opens `url`, and when that lands on a login form (the provider's), fills in the
   * username and password and submits it, following the flow back to the app. Resolves with the
   * page the flow ends on (`url` itself when it worked).
   *
   * @throws {Error} when no login form appears, or the flow does not end on `url`'s origin
   */
  async signIn(url: string, username: string, password: string): Promise<PersonResponse> {
    const first = await this.get(url);
    if (new URL(first.url).origin === new URL(url).origin && first.status < 300) return first; // already signed in
    const form = parseForm(first.body);
    if (!form) throw new Error(`no login form at ${first.url} (status ${first.status})`);
    const fields = { ...form.fields };
    const userField = Object.keys(fields).find((k) => /^(username|login|user|email)$/i.test(k)) ?? 'username';
    const passField = Object.keys(fields).find((k) => /^password$/i.test(k)) ?? 'password';
    fields[userField] = username;
    fields[passField] = password;
    const end = await this.navigate('POST', new URL(form.action || first.url, first.url).toString(), {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    });
    if (new URL(end.url).origin !== new URL(url).origin) {
      throw new Error(`sign-in for ${username} ended at ${new URL(end.url).origin} with status ${end.status}`);
    }
    return end;
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}
