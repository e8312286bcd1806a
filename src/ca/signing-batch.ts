/**
 * What a signing worker does with one batch, apart from the thread plumbing: the whole per-CSR
 * cost — parse, public-key import, proof-of-possession check, TBSCertificate, CA signature.
 * Identity, DNS names and validity arrive decided by the main thread; nothing is taken from the
 * CSR but its public key.
 * @internal
 */
import { LeafIssuer } from './certificate.js';
import { verifyCsr } from './csr.js';
import {
  encodeError,
  type FromWorker,
  packBytes,
  type SignOp,
  type SignResult,
  type ToWorker,
} from './signing-protocol.js';

/** Results go back in chunks, so the main thread can hand out new work before this batch ends. */
const RESULT_CHUNK = 8;
const EMPTY = Buffer.alloc(0);

/** The CA generations installed in one worker, and the batch handler that uses them. */
export class SigningBatchHandler {
  readonly #issuers = new Map<number, LeafIssuer>();

  /** Applies the ops in order; `post` receives the results (with the transfer list for their bytes). */
  handle(msg: ToWorker, post: (out: FromWorker, transfer: ArrayBuffer[]) => void): void {
    const bytes = Buffer.from(msg.bytes);
    let results: SignResult[] = [];
    let ders: Buffer[] = [];
    const flush = () => {
      const packed = packBytes(ders);
      const out: FromWorker = {
        results: results.map((r, i) => ('error' in r ? r : { ...r, off: packed.offsets[i] as number })),
        bytes: packed.bytes,
      };
      post(out, [packed.bytes]);
      results = [];
      ders = [];
    };
    for (const op of msg.ops) {
      if (op.op === 'install') {
        this.#issuers.set(op.token, new LeafIssuer(Buffer.from(op.caCert), op.caKey));
      } else if (op.op === 'forget') {
        this.#issuers.delete(op.token);
      } else {
        try {
          const leaf = this.#signOne(op, bytes);
          results.push({ id: op.id, off: 0, len: leaf.der.length, serialHex: leaf.serialHex });
          ders.push(leaf.der);
        } catch (e) {
          results.push({ id: op.id, error: encodeError(e) });
          ders.push(EMPTY); // keeps `ders` index-aligned with `results`
        }
        if (results.length >= RESULT_CHUNK) flush();
      }
    }
    if (results.length > 0) flush();
  }

  #signOne(op: SignOp, bytes: Buffer): { der: Buffer; serialHex: string } {
    const issuer = this.#issuers.get(op.token);
    // Cannot happen while the pool keeps its bookkeeping: refuse rather than sign with anything else.
    if (!issuer) throw new Error('the CA generation for this request is not installed in the worker');
    const csr = verifyCsr(op.pem ?? bytes.subarray(op.off, op.off + op.len));
    return issuer.issue({
      spki: csr.spki,
      family: csr.family,
      spiffeId: op.spiffeId,
      dnsNames: op.dnsNames,
      notBefore: new Date(op.notBefore),
      notAfter: new Date(op.notAfter),
    });
  }
}
