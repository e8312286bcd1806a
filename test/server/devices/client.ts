/**
 * A tiny device-side helper for the server's device tests: a real device key file, a real CSR from
 * `createDeviceCsr`, and JSON over node:https (optionally with the device certificate). The product's
 * device client lives in src/access/device/client.ts; this only drives the server.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { CompactSign } from 'jose';
import { createDeviceCsr, deviceSpiffeId, FileDeviceKey } from '../../../src/access/device/key.js';
import type { PostureReport } from '../../../src/api/devices.js';
import { csrToPem } from '../../../src/ca/index.js';
import { parseSpiffeId, parseTrustDomain } from '../../../src/spiffe/index.js';
import { tempDir } from '../../support/tmp.js';

export interface TestDevice {
  key: FileDeviceKey;
  privateKey: KeyObject;
  keyPem: string;
  /** PEM chain once enrolled or renewed. */
  certPem?: string;
}

export async function newDevice(): Promise<TestDevice> {
  const path = join(tempDir(), 'key.pem');
  const key = await FileDeviceKey.create(path);
  const keyPem = readFileSync(path, 'utf8');
  return { key, keyPem, privateKey: createPrivateKey(keyPem) };
}

/** A CSR of the device key asking for `spiffe://<td>/device/<id>` (or any `uri` given). */
export async function csrFor(d: TestDevice, td: string, id: string, uri?: string): Promise<string> {
  const sid = uri ? parseSpiffeId(uri) : deviceSpiffeId(parseTrustDomain(td), id);
  if (uri) {
    // createDeviceCsr refuses non-device IDs; a hostile device would not: build it the same way.
    const { createCsrWithSigner } = await import('../../../src/ca/index.js');
    const { createPublicKey } = await import('node:crypto');
    return csrToPem(
      await createCsrWithSigner(createPublicKey(d.key.publicKeyPem()), (cri) => d.key.sign(cri), { uriSan: uri }),
    );
  }
  return csrToPem(await createDeviceCsr(d.key, sid));
}

export interface Answer {
  status: number;
  body: Record<string, unknown>;
  text: string;
}

/** POST (or GET without body) to `https://127.0.0.1:<port><path>`, verifying the server against `ca`. */
export function call(
  port: number,
  path: string,
  opts: {
    ca: string;
    body?: unknown;
    raw?: string | Buffer;
    method?: string;
    cert?: { certPem: string; keyPem: string };
    headers?: Record<string, string>;
  },
): Promise<Answer> {
  const payload = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: opts.method ?? (payload === undefined ? 'GET' : 'POST'),
        ca: opts.ca,
        // The server's SVID has a SPIFFE URI, no DNS name: the chain is verified, the name is not.
        checkServerIdentity: () => undefined,
        ...(opts.cert ? { cert: opts.cert.certPem, key: opts.cert.keyPem } : {}),
        headers: { 'content-type': 'application/json', ...opts.headers },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: Record<string, unknown> = {};
          try {
            body = JSON.parse(text) as Record<string, unknown>;
          } catch {
            body = {};
          }
          resolve({ status: res.statusCode ?? 0, body, text });
        });
      },
    );
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

/** A posture report of `id` collected now (or at `at`), compliant or not. */
export function report(id: string, compliant: boolean, at = new Date()): PostureReport {
  return {
    device_id: id,
    collected_at: at.toISOString(),
    os: { name: 'Debian GNU/Linux', version: '12', id: 'debian' },
    kernel: '6.1.0-18-amd64',
    updates: { pending_security: compliant ? 0 : 3, pending_total: 5, source: 'apt' },
    disk: { root_encrypted: true, detail: 'nvme0n1 > nvme0n1p3 (crypt) > /' },
    firewall: { active: true, tool: 'nftables' },
    edr: { active: true, running: ['falcon-sensor'] },
    collector_version: 'test',
  };
}

/** The report as the device signs it: compact JWS, ES256, `typ` nevertrust-posture+jws. */
export function signReport(
  key: KeyObject | Uint8Array,
  payload: unknown,
  header: Record<string, unknown> = { alg: 'ES256', typ: 'nevertrust-posture+jws' },
): Promise<string> {
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader(header as { alg: string })
    .sign(key);
}
