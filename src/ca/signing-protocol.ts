/**
 * Messages between the CA's signing pool (main thread) and its workers. One module for both
 * sides so the shapes cannot drift apart.
 *
 * Messages are batches: each postMessage has a fixed cost (structured clone, a wake-up on the
 * other side), so a burst of requests travels as one message. Byte payloads (DER CSRs one way,
 * DER certificates the other) are packed into one fresh ArrayBuffer per message and transferred,
 * never cloned: cloning a Buffer copies its whole backing store, which for Node's small-buffer
 * pool is 8 KiB per certificate.
 * @internal
 */
import type { KeyObject } from 'node:crypto';
import { CaError, CsrError, type CsrErrorCode } from './errors.js';

/** Installs a CA generation's signing key and certificate in a worker, once per generation. */
export interface InstallOp {
  op: 'install';
  token: number;
  caCert: Uint8Array;
  /** Posted as a KeyObject (Node clones it into the worker); never serialized to bytes here. */
  caKey: KeyObject;
}

/** Drops a generation from a worker (retired, or evicted to bound memory). */
export interface ForgetOp {
  op: 'forget';
  token: number;
}

/** One CSR to verify and sign with the generation `token`. */
export interface SignOp {
  op: 'sign';
  id: number;
  token: number;
  /** PEM text, or null when the DER request is at `off`/`len` in the batch's byte buffer. */
  pem: string | null;
  off: number;
  len: number;
  spiffeId: string;
  dnsNames: readonly string[];
  /** ms since the epoch, already whole seconds and capped by the CA (decided on the main thread). */
  notBefore: number;
  notAfter: number;
}

export type WorkerOp = InstallOp | ForgetOp | SignOp;

/** Main → worker. Ops are applied in order: an install always precedes the signs that need it. */
export interface ToWorker {
  ops: WorkerOp[];
  bytes: ArrayBuffer;
}

/** A failure, carried as data: errors do not survive structured cloning with their class and code. */
export interface EncodedError {
  kind: 'csr' | 'internal';
  code: string;
  message: string;
}

export type SignResult =
  | { id: number; off: number; len: number; serialHex: string }
  | { id: number; error: EncodedError };

/** Worker → main: results of some sign ops (a worker answers in chunks, not only at the end). */
export interface FromWorker {
  results: SignResult[];
  bytes: ArrayBuffer;
}

export function encodeError(e: unknown): EncodedError {
  if (e instanceof CsrError) return { kind: 'csr', code: e.code, message: e.message };
  // Only our own message text crosses: OpenSSL messages carry no key material, but say nothing useful either.
  const message = e instanceof Error ? e.message : String(e);
  return { kind: 'internal', code: 'ERR_CA_SIGNER_FAILED', message: `signing failed: ${message}` };
}

export function decodeError(e: EncodedError): Error {
  if (e.kind === 'csr') return new CsrError(e.code as CsrErrorCode, e.message);
  return new CaError('ERR_CA_SIGNER_FAILED', e.message);
}

/** Packs byte strings into one exactly sized ArrayBuffer (transferable); returns their offsets. */
export function packBytes(parts: readonly Uint8Array[]): { bytes: ArrayBuffer; offsets: number[] } {
  let total = 0;
  for (const p of parts) total += p.length;
  const bytes = new ArrayBuffer(total);
  const view = new Uint8Array(bytes);
  const offsets: number[] = [];
  let o = 0;
  for (const p of parts) {
    offsets.push(o);
    view.set(p, o);
    o += p.length;
  }
  return { bytes, offsets };
}
