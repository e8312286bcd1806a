/**
 * The CRL of revoked SVID serials (issue #23): signed by the server's CA, served public at
 * `GET /v1/bundle/crl`, verified by openssl, and handed to workloads in the Workload API's `crl`
 * field by a real agent.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { NodeAgent } from '../../src/agent/node-agent.js';
import { certificatesToPem } from '../../src/ca/index.js';
import { rawClient, workloadMetadata } from '../agent/raw-client.js';
import { tempDir } from '../support/tmp.js';
import { type Mesh, startAgent, startMesh, TD, UID, until } from './mesh-fixtures.js';

interface X509Resp {
  svids: { spiffe_id: string; x509_svid: Buffer; bundle: Buffer }[];
  crl: Buffer[];
}

const splitDer = (buf: Buffer): Buffer[] => {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; ) {
    const l = buf[i + 1] as number;
    const [len, hdr] = l < 0x80 ? [l, 2] : [buf.readUIntBE(i + 2, l & 0x7f), 2 + (l & 0x7f)];
    out.push(buf.subarray(i, i + hdr + len));
    i += hdr + len;
  }
  return out;
};

describe('CRL of revoked SVIDs', { timeout: 60_000 }, () => {
  let mesh: Mesh | undefined;
  let agent: NodeAgent | undefined;
  afterAll(async () => {
    await agent?.stop();
    await mesh?.close();
  });

  it('is signed by the CA (openssl verifies it), lists a revoked serial, and reaches a workload through the Workload API', async () => {
    mesh = await startMesh();
    const dir = tempDir();
    agent = await startAgent(mesh, { crlRefreshMs: 100 });
    const created = await mesh.api('POST', '/v1/admin/entries', {
      spiffe_id: `spiffe://${TD}/ns/payments/sa/api`,
      parent_id: agent.id,
      selectors: [`unix:uid:${UID}`],
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);

    const client = rawClient(`unix://${(agent as unknown as { opts: { socketPath: string } }).opts.socketPath}`);
    const stream = client.FetchX509SVID({}, workloadMetadata());
    const seen: X509Resp[] = [];
    stream.on('data', (m: X509Resp) => seen.push(m));
    stream.on('error', () => {});
    const first = await until(() => seen.find((m) => m.svids.length > 0), 'an SVID');
    const leaf = new X509Certificate(splitDer(first.svids[0]?.x509_svid as Buffer)[0] as Buffer);
    const serial = leaf.serialNumber.toLowerCase();
    // Before any revocation the CRL is there and empty (a workload can tell "none revoked" from "none known").
    const empty = await until(() => seen.find((m) => m.crl.length > 0), 'the first CRL');
    expect(empty.crl.length).toBeGreaterThan(0);

    // Public, like the bundle: no credential.
    const before = await fetch(`${mesh.server.url}/v1/bundle/crl`);
    expect(before.status).toBe(200);
    expect(before.headers.get('content-type')).toBe('application/pkix-crl');

    await mesh.revokeSvid(serial);
    const withSerial = await until(
      () =>
        seen.find((m) =>
          m.crl.some((c) =>
            execFileSync('openssl', ['crl', '-inform', 'DER', '-noout', '-text'], { input: c })
              .toString()
              .toLowerCase()
              .includes(serial.replace(/^0+/, '')),
          ),
        ),
      'the CRL with the revoked serial through the Workload API',
    );

    const bundlePem = join(dir, 'bundle.pem');
    writeFileSync(bundlePem, certificatesToPem(splitDer(first.svids[0]?.bundle as Buffer)));
    const crlDer = join(dir, 'crl.der');
    writeFileSync(crlDer, withSerial.crl[0] as Buffer);
    const check = spawnSync('openssl', [
      'crl',
      '-inform',
      'DER',
      '-in',
      crlDer,
      '-CAfile',
      bundlePem,
      '-noout',
      '-text',
    ]);
    expect(check.stderr.toString()).toContain('verify OK');
    const text = check.stdout.toString();
    expect(text).toMatch(/Version 2/);
    expect(text).toMatch(/X509v3 CRL Number/);
    expect(text).toMatch(/X509v3 Authority Key Identifier/);
    expect(text).toMatch(/Next Update/);

    // The SVID itself now fails a CRL-checking verification.
    const svidPem = join(dir, 'svid.pem');
    writeFileSync(svidPem, leaf.toString());
    const crlPem = join(dir, 'crl.pem');
    execFileSync('openssl', ['crl', '-inform', 'DER', '-in', crlDer, '-out', crlPem]);
    const v = spawnSync('openssl', ['verify', '-crl_check', '-CRLfile', crlPem, '-CAfile', bundlePem, svidPem]);
    expect(v.status).not.toBe(0);
    expect(`${v.stdout}${v.stderr}`).toContain('certificate revoked');

    // The route serves the same signed list; a newer CRL number than before the revocation.
    const after = Buffer.from(await (await fetch(`${mesh.server.url}/v1/bundle/crl`)).arrayBuffer());
    const beforeDer = Buffer.from(await before.arrayBuffer());
    const num = (der: Buffer) =>
      BigInt(
        `0x${/X509v3 CRL Number:\s*\n?\s*(?:0x)?([0-9A-Fa-f:]+)/
          .exec(
            execFileSync('openssl', ['crl', '-inform', 'DER', '-noout', '-crlnumber'], { input: der })
              .toString()
              .replace('crlNumber=', 'X509v3 CRL Number: '),
          )?.[1]
          ?.replaceAll(':', '')}`,
      );
    expect(num(after)).toBeGreaterThan(num(beforeDer));
    stream.cancel();
    client.close();
  });
});
