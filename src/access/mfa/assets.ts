/**
 * The MFA pages' static assets, served by the proxy at `/.nevertrust/mfa/assets/…` so the pages'
 * CSP can say `script-src 'self'; style-src 'self'`: our small WebAuthn client, the
 * @simplewebauthn/browser UMD bundle read from its package (no copy to keep in step), and a style
 * sheet. Built in (no files beside dist/ to install).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export const ASSETS_PATH = '/.nevertrust/mfa/assets/';

/**
 * Wires the pages' buttons: `#wa-register` (enroll a security key or passkey) and `#wa-authenticate`
 * (the step-up). Each asks the proxy for options, runs the browser's ceremony, and posts the result
 * with the page's CSRF token in `x-nevertrust-csrf`; the proxy says where to go next.
 */
const CLIENT_JS = `(function () {
  'use strict';
  var W = window.SimpleWebAuthnBrowser;
  function status(msg) {
    var el = document.getElementById('wa-status');
    if (el) el.textContent = msg;
  }
  async function post(url, csrf, body) {
    var r = await fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', accept: 'application/json', 'x-nevertrust-csrf': csrf },
      body: JSON.stringify(body),
    });
    var j = await r.json().catch(function () { return {}; });
    if (!r.ok) throw new Error(j.reason || 'HTTP ' + r.status);
    return j;
  }
  function wire(id, run) {
    var b = document.getElementById(id);
    if (!b) return;
    if (!W || !window.PublicKeyCredential) {
      b.disabled = true;
      status('This browser does not support security keys or passkeys here.');
      return;
    }
    b.addEventListener('click', async function () {
      b.disabled = true;
      status('Waiting for your security key or passkey…');
      try {
        var next = await run(b.dataset);
        status('Done.');
        window.location.assign(next);
      } catch (e) {
        status('That did not work: ' + (e && e.message ? e.message : e));
        b.disabled = false;
      }
    });
  }
  wire('wa-register', async function (d) {
    var nameEl = document.getElementById('wa-name');
    var name = nameEl && nameEl.value ? nameEl.value : 'Security key';
    var extra = d.token ? { token: d.token } : {};
    var o = await post(d.base + '/webauthn/register/options', d.csrf, extra);
    var response = await W.startRegistration({ optionsJSON: o.options });
    var done = await post(d.base + '/webauthn/register/finish', d.csrf,
      Object.assign({ challengeId: o.challengeId, response: response, name: name }, extra));
    return done.next;
  });
  wire('wa-authenticate', async function (d) {
    var o = await post(d.base + '/webauthn/authenticate/options', d.csrf, {});
    var response = await W.startAuthentication({ optionsJSON: o.options });
    var done = await post(d.base + '/webauthn/authenticate/finish', d.csrf,
      { challengeId: o.challengeId, response: response, rd: d.rd, again: d.again === '1' });
    return done.next;
  });
})();
`;

const CSS = `body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.4}
form{margin:.5rem 0}input{font:inherit;padding:.2rem .4rem}button{font:inherit;padding:.3rem .8rem}
.qr svg{width:14rem;height:14rem}.error{color:#a00}.notice{color:#060}code{font-size:1.05em}
ul.codes{columns:2;font-family:monospace}
`;

let bundle: string | undefined;
/** The @simplewebauthn/browser UMD bundle (global `SimpleWebAuthnBrowser`), read once. */
function browserBundle(): string {
  if (bundle === undefined) {
    const main = createRequire(import.meta.url).resolve('@simplewebauthn/browser');
    // main is <pkg>/script/index.js; the bundle sits in <pkg>/dist/bundle/.
    bundle = readFileSync(join(dirname(main), '..', 'dist', 'bundle', 'index.umd.min.js'), 'utf8');
  }
  return bundle;
}

export interface Asset {
  type: string;
  body: () => string;
}

/** The assets by file name. */
export const ASSETS: Readonly<Record<string, Asset>> = {
  'webauthn-client.js': { type: 'text/javascript; charset=utf-8', body: () => CLIENT_JS },
  'simplewebauthn-browser.js': { type: 'text/javascript; charset=utf-8', body: browserBundle },
  'mfa.css': { type: 'text/css; charset=utf-8', body: () => CSS },
};
