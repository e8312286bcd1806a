/**
 * X509Source: the workload's current X.509-SVIDs and trust bundles, kept up to date from the
 * FetchX509SVID stream. It survives agent restarts: on any stream error it reconnects with
 * exponential backoff and full jitter, and keeps serving the last good SVID until that expires.
 */
import { EventEmitter } from 'node:events';
import { status } from '@grpc/grpc-js';
import type { TrustBundle, TrustDomain } from '../spiffe/index.js';
import {
  type Watch,
  WorkloadApiClient,
  WorkloadApiError,
  type WorkloadClientOptions,
  type X509Context,
  type X509Svid,
} from './client.js';
import { NevertrustError } from '../errors.js';

/** Thrown when no valid SVID is available (never received, expired, revoked, or the source is closed). */
export class X509SourceError extends NevertrustError<'ERR_X509_SOURCE'> {
  override readonly name = 'X509SourceError';
  readonly code = 'ERR_X509_SOURCE';
  constructor(message: string) {
    super(message, { status: 503 });
  }
}

export interface BackoffOptions {
  /** First retry delay; default 100 ms. */
  initialMs?: number;
  /** Largest delay; default 30 s. */
  maxMs?: number;
}

export interface X509SourceOptions extends WorkloadClientOptions {
  /** How long {@link X509Source.create} waits for the first SVID; default 30 s. */
  initialTimeoutMs?: number;
  backoff?: BackoffOptions;
  /** Chooses the default SVID when there are several (default: the first, as the agent orders them). */
  picker?: (svids: readonly X509Svid[]) => X509Svid | undefined;
}

/** Events of {@link X509Source}. */
export interface X509SourceEvents {
  /** A new SVID set or bundle set arrived. */
  update: [ctx: X509Context];
  /** The stream broke; the source retries in `delayMs` (the last SVID is still served while valid). */
  reconnecting: [info: { attempt: number; delayMs: number; error: Error }];
  /** The agent denied the workload (PermissionDenied): its SVIDs were withdrawn. */
  revoked: [error: Error];
}

/**
 * Exponential backoff with full jitter: uniform in [0.5, 1] × min(max, initial × 2^attempt).
 *
 * @example
 * ```ts
 * backoffDelay(3, { initialMs: 100, maxMs: 30_000 }); // between 400 and 800
 * ```
 */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}): number {
  const initial = opts.initialMs ?? 100;
  const max = opts.maxMs ?? 30_000;
  const cap = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return Math.round(cap * (0.5 + Math.random() * 0.5));
}

/**
 * @example
 * ```ts
 * const source = await X509Source.create(); // SPIFFE_ENDPOINT_SOCKET
 * const { certChainPem, privateKeyPem } = source.svid;
 * source.on('update', () => server.setSecureContext({ cert: source.svid.certChainPem, key: source.svid.privateKeyPem, ca: source.bundleFor('example.org')?.toPem() }));
 * // …
 * source.close();
 * ```
 */
export class X509Source extends EventEmitter<X509SourceEvents> {
  private readonly client: WorkloadApiClient;
  private readonly backoff: BackoffOptions;
  private readonly picker: (svids: readonly X509Svid[]) => X509Svid | undefined;
  private ctx: X509Context | undefined;
  private watch: Watch | undefined;
  private retry: NodeJS.Timeout | undefined;
  private attempt = 0;
  private closed = false;
  private lastError: Error | undefined;

  private constructor(opts: X509SourceOptions) {
    super();
    this.client = new WorkloadApiClient(opts);
    this.backoff = opts.backoff ?? {};
    this.picker = opts.picker ?? ((s) => s[0]);
  }

  /**
   * Connects and resolves once the first SVID arrived (retrying with backoff meanwhile: a workload
   * may start before its registration entry exists).
   *
   * @throws {X509SourceError} when no SVID arrived within `initialTimeoutMs`
   */
  static async create(opts: X509SourceOptions = {}): Promise<X509Source> {
    const source = new X509Source(opts);
    const timeoutMs = opts.initialTimeoutMs ?? 30_000;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        source.off('update', onUpdate);
        source.close();
        reject(
          new X509SourceError(
            `no X.509-SVID from the Workload API within ${timeoutMs} ms` +
              (source.lastError ? `: ${source.lastError.message}` : ''),
          ),
        );
      }, timeoutMs);
      const onUpdate = () => {
        clearTimeout(timer);
        resolve();
      };
      source.once('update', onUpdate);
      source.connect();
    });
    return source;
  }

  private connect(): void {
    if (this.closed) return;
    this.watch = this.client.watchX509Context(
      (ctx) => {
        this.attempt = 0;
        this.lastError = undefined;
        this.ctx = ctx;
        this.emit('update', ctx);
      },
      (err) => this.onStreamEnd(err),
    );
  }

  private onStreamEnd(err: Error): void {
    this.watch = undefined;
    if (this.closed) return;
    this.lastError = err;
    if (err instanceof WorkloadApiError && err.grpcCode === status.PERMISSION_DENIED && this.ctx) {
      // The agent says this workload no longer has an identity: stop serving the old one.
      this.ctx = undefined;
      this.emit('revoked', err);
    }
    const delayMs = backoffDelay(this.attempt++, this.backoff);
    this.emit('reconnecting', { attempt: this.attempt, delayMs, error: err });
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.connect();
    }, delayMs);
    this.retry.unref();
  }

  /** Every current SVID that has not expired. */
  get svids(): X509Svid[] {
    const now = Date.now();
    return (this.ctx?.svids ?? []).filter((s) => s.expiresAt.getTime() > now);
  }

  /**
   * The default SVID.
   *
   * @throws {X509SourceError} when there is no valid one
   */
  get svid(): X509Svid {
    if (this.closed) throw new X509SourceError('the X509Source is closed');
    const s = this.picker(this.svids);
    if (!s) {
      throw new X509SourceError(
        'no valid X.509-SVID' + (this.lastError ? ` (Workload API: ${this.lastError.message})` : ''),
      );
    }
    return s;
  }

  /** Own and federated bundles by trust domain name (last received). */
  get bundles(): ReadonlyMap<string, TrustBundle> {
    return this.ctx?.bundles ?? new Map();
  }

  /** The bundle of one trust domain. */
  bundleFor(trustDomain: string | TrustDomain): TrustBundle | undefined {
    return this.bundles.get(typeof trustDomain === 'string' ? trustDomain : trustDomain.name);
  }

  /** `BundleSource` for `src/spiffe` validators. */
  getBundleForTrustDomain(td: TrustDomain): TrustBundle | undefined {
    return this.bundleFor(td);
  }

  /** Stops the stream and retries; the source serves nothing afterwards. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    this.watch?.cancel();
    this.client.close();
    this.removeAllListeners();
  }
}
