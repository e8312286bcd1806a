/**
 * Checks, in the browser, that an audit event is in the log the server signed: the leaf hash
 * recomputed from the event, its RFC 6962 inclusion path up to the checkpoint's root, and the
 * checkpoint's Ed25519 signature under the log's public key (WebCrypto). The server's own answer is
 * not trusted for any of it: only its public key, which the operator can compare out of band.
 */
import type { AuditEvent, Checkpoint, InclusionProofResult } from './wire.js';

/** The outcome of each step; `ok` only when all hold. */
export interface ProofCheck {
  leaf: boolean;
  path: boolean;
  signature: boolean | 'unsupported';
  keyId: boolean;
  ok: boolean;
  message: string;
}

const enc = new TextEncoder();

function hex(b: ArrayBuffer | Uint8Array): string {
  return Array.from(b instanceof Uint8Array ? b : new Uint8Array(b), (x) => x.toString(16).padStart(2, '0')).join('');
}

function unhex(s: string): Uint8Array<ArrayBuffer> {
  if (!/^(?:[0-9a-f]{2})*$/i.test(s)) throw new Error(`not hex: ${s.slice(0, 16)}…`);
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

async function sha256(...parts: Uint8Array[]): Promise<Uint8Array<ArrayBuffer>> {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return new Uint8Array(await crypto.subtle.digest('SHA-256', all));
}

/**
 * The log's canonical JSON (src/audit/event.ts `canonicalJson`): keys sorted, no spaces, undefined
 * fields dropped. The stored event with its `seq` is exactly what the leaf hashes.
 */
export function canonicalJson(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : canonicalJson(x))).join(',')}]`;
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const fields = Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`);
    return `{${fields.join(',')}}`;
  }
  return JSON.stringify(v);
}

/** `SHA-256(0x00 ‖ canonical event)`, hex. */
export async function leafHashOf(event: AuditEvent): Promise<string> {
  return hex(await sha256(new Uint8Array([0]), enc.encode(canonicalJson(event))));
}

/**
 * The root an inclusion path leads to (RFC 9162 §2.1.3.2), or null when the path does not fit
 * `index` in a tree of `size` leaves.
 */
export async function rootFromPath(index: number, size: number, leaf: Uint8Array, path: Uint8Array[]) {
  if (index >= size) return null;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  const one = new Uint8Array([1]);
  for (const p of path) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(one, p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = await sha256(one, r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? hex(r) : null;
}

/** The SPKI DER bytes of a PEM public key. */
function pemToDer(pem: string): Uint8Array<ArrayBuffer> {
  const b64 = pem.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, '').replace(/\s+/g, '');
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

/** The signed bytes of a checkpoint (src/audit/signer.ts `checkpointMessage`). */
function checkpointMessage(cp: Checkpoint): Uint8Array<ArrayBuffer> {
  return enc.encode(`nevertrust-audit-checkpoint/v1\n${cp.tree_size}\n${cp.root_hash}\n${cp.time}\n`);
}

/** Verifies a checkpoint's Ed25519 signature and key id; `'unsupported'` when the browser lacks Ed25519. */
export async function verifyCheckpointSignature(
  cp: Checkpoint,
  publicKeyPem: string,
): Promise<{ signature: boolean | 'unsupported'; keyId: boolean }> {
  const der = pemToDer(publicKeyPem);
  const keyId = hex(await sha256(der)).slice(0, 16) === cp.key_id;
  let key: Awaited<ReturnType<typeof crypto.subtle.importKey>>;
  try {
    key = await crypto.subtle.importKey('spki', der, { name: 'Ed25519' }, false, ['verify']);
  } catch (e) {
    if ((e as DOMException).name === 'NotSupportedError') return { signature: 'unsupported', keyId };
    return { signature: false, keyId };
  }
  const sig = Uint8Array.from(atob(cp.signature), (c) => c.charCodeAt(0));
  const signature = await crypto.subtle.verify({ name: 'Ed25519' }, key, sig, checkpointMessage(cp));
  return { signature, keyId };
}

/**
 * Checks an event's inclusion proof against a signed checkpoint.
 *
 * @example
 * const c = await checkInclusion(r.event, r.inclusion, r.public_key); // c.ok
 */
export async function checkInclusion(
  event: AuditEvent,
  inclusion: InclusionProofResult,
  publicKeyPem: string,
): Promise<ProofCheck> {
  try {
    const leafHex = await leafHashOf(event);
    const leaf = leafHex === inclusion.leaf_hash && inclusion.seq === event.seq;
    const cp = inclusion.checkpoint;
    const root =
      cp.tree_size === inclusion.tree_size
        ? await rootFromPath(event.seq, cp.tree_size, unhex(leafHex), inclusion.proof.map(unhex))
        : null;
    const path = root !== null && root === cp.root_hash;
    const { signature, keyId } = await verifyCheckpointSignature(cp, publicKeyPem);
    const ok = leaf && path && signature === true && keyId;
    const message = ok
      ? `Event ${event.seq} is leaf ${event.seq} of the ${cp.tree_size}-leaf log, whose root the log's key ${cp.key_id} signed.`
      : [
          leaf ? '' : 'the event does not hash to the proof’s leaf',
          path ? '' : 'the path does not lead to the checkpoint’s root',
          signature === 'unsupported' ? 'this browser cannot check Ed25519 signatures' : '',
          signature === false ? 'the checkpoint’s signature is not valid' : '',
          keyId ? '' : 'the checkpoint names another key',
        ]
          .filter(Boolean)
          .join('; ');
    return { leaf, path, signature, keyId, ok, message };
  } catch (e) {
    return { leaf: false, path: false, signature: false, keyId: false, ok: false, message: (e as Error).message };
  }
}
