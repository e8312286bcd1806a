// A workload: a separate process that asks the Workload API for its X.509-SVID, using only
// @grpc/grpc-js and the spec's .proto. Prints one JSON line per response (or the error), then exits
// after `count` responses. Usage: node workload-child.mjs <socket> <count> [noheader|distinct]
// `distinct`: counts only responses whose SVID serial differs from the one before (a response that
// carries only a new CRL for the same SVID is printed but not counted).
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const [socket, countArg, mode] = process.argv.slice(2);
const proto = fileURLToPath(new URL('../../proto/workloadapi.proto', import.meta.url));
const def = protoLoader.loadSync(proto, { keepCase: true, defaults: true });
const Api = grpc.loadPackageDefinition(def).SpiffeWorkloadAPI;
const client = new Api(`unix://${socket}`, grpc.credentials.createInsecure());
const md = new grpc.Metadata();
if (mode !== 'noheader') md.set('workload.spiffe.io', 'true');
let left = Number(countArg || 1);
let lastSerial;

function splitDer(buf) {
  // Concatenated DER certificates: each is a SEQUENCE with a 2- or 3-byte long-form length.
  const out = [];
  let i = 0;
  while (i < buf.length) {
    const lenByte = buf[i + 1];
    let len;
    let hdr;
    if (lenByte < 0x80) {
      len = lenByte;
      hdr = 2;
    } else {
      const n = lenByte & 0x7f;
      len = 0;
      for (let k = 0; k < n; k++) len = (len << 8) | buf[i + 2 + k];
      hdr = 2 + n;
    }
    out.push(buf.subarray(i, i + hdr + len));
    i += hdr + len;
  }
  return out;
}

const stream = client.FetchX509SVID({}, md);
stream.on('data', (res) => {
  const svid = res.svids[0];
  const chain = splitDer(svid.x509_svid).map((d) => new X509Certificate(d));
  const key = createPrivateKey({ key: svid.x509_svid_key, format: 'der', type: 'pkcs8' });
  const bundle = splitDer(svid.bundle).map((d) => new X509Certificate(d));
  console.log(
    JSON.stringify({
      spiffe_id: svid.spiffe_id,
      svids: res.svids.length,
      serial: chain[0].serialNumber,
      uri: chain[0].subjectAltName,
      key_matches: chain[0].checkPrivateKey(key),
      chain_verifies: bundle.some((ca) => chain[chain.length - 1].verify(ca.publicKey)),
      bundle_certs: bundle.length,
    }),
  );
  const counted = mode !== 'distinct' || chain[0].serialNumber !== lastSerial;
  lastSerial = chain[0].serialNumber;
  if (counted && --left <= 0) {
    stream.cancel();
    client.close();
    process.exit(0);
  }
});
stream.on('error', (e) => {
  if (e.code === grpc.status.CANCELLED) return;
  console.log(JSON.stringify({ error: e.code, details: e.details }));
  process.exit(0);
});
