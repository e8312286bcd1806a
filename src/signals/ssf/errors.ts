/**
 * Why a SET was refused: one code per check, each mapped to the RFC 8935 `err` value the push
 * endpoint answers with (`{"err": …, "description": …}` and status 400).
 */
import { NevertrustError } from '../../errors.js';

/** RFC 8935 §2.3 error codes a receiver answers a push with. */
export type SetDeliveryErr =
  | 'invalid_request'
  | 'invalid_key'
  | 'invalid_issuer'
  | 'invalid_audience'
  | 'authentication_failed';

/** Each check's code and the RFC 8935 `err` it maps to. */
export const SSF_ERROR_ERR = {
  ERR_SSF_TOO_LARGE: 'invalid_request',
  ERR_SSF_MALFORMED: 'invalid_request',
  ERR_SSF_BAD_TYP: 'invalid_request',
  ERR_SSF_ALG_NOT_ALLOWED: 'invalid_key',
  ERR_SSF_BAD_SIGNATURE: 'invalid_key',
  ERR_SSF_UNKNOWN_KEY: 'invalid_key',
  // The transmitter's JWKS could not be fetched: our side, status 503 so the transmitter retries.
  ERR_SSF_KEYS_UNAVAILABLE: 'invalid_key',
  ERR_SSF_BAD_ISSUER: 'invalid_issuer',
  ERR_SSF_BAD_AUDIENCE: 'invalid_audience',
  ERR_SSF_IAT_MISSING: 'invalid_request',
  ERR_SSF_IAT_STALE: 'invalid_request',
  ERR_SSF_IAT_FUTURE: 'invalid_request',
  ERR_SSF_EXPIRED: 'invalid_request',
  ERR_SSF_NOT_YET_VALID: 'invalid_request',
  ERR_SSF_JTI_MISSING: 'invalid_request',
  ERR_SSF_REPLAYED: 'invalid_request',
  // The replay cache is full of live entries: refusing is the fail-closed answer (503, retry later).
  ERR_SSF_REPLAY_CACHE_FULL: 'invalid_request',
  ERR_SSF_EVENTS_INVALID: 'invalid_request',
  ERR_SSF_SUBJECT_MISSING: 'invalid_request',
  ERR_SSF_SUBJECT_FORMAT: 'invalid_request',
  ERR_SSF_SUBJECT_CONFLICT: 'invalid_request',
  // For the push endpoint's own Authorization check (next session); the SET itself never raises it.
  ERR_SSF_UNAUTHENTICATED: 'authentication_failed',
  // Our own transmitter's configuration (500: never the caller's fault).
  ERR_SSF_SIGNING_KEY: 'invalid_key',
  ERR_SSF_BAD_CONFIG: 'invalid_request',
  // Talking to a transmitter (discovery, stream creation, polling) failed: 502, theirs or the network's.
  ERR_SSF_DISCOVERY: 'invalid_request',
  ERR_SSF_TRANSMITTER: 'invalid_request',
} as const satisfies Record<`ERR_SSF_${string}`, SetDeliveryErr>;

export type SsfErrorCode = keyof typeof SSF_ERROR_ERR;

const STATUS: Partial<Record<SsfErrorCode, number>> = {
  ERR_SSF_TOO_LARGE: 413,
  ERR_SSF_KEYS_UNAVAILABLE: 503,
  ERR_SSF_REPLAY_CACHE_FULL: 503,
  ERR_SSF_UNAUTHENTICATED: 401,
  ERR_SSF_SIGNING_KEY: 500,
  ERR_SSF_BAD_CONFIG: 500,
  ERR_SSF_DISCOVERY: 502,
  ERR_SSF_TRANSMITTER: 502,
};

/** A refused SET (or SSF input). `err` is the RFC 8935 value for a push answer. */
export class SsfError extends NevertrustError<SsfErrorCode> {
  override readonly name = 'SsfError';
  constructor(
    readonly code: SsfErrorCode,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(message, { status: STATUS[code] ?? 400, cause: options.cause });
  }

  /** The RFC 8935 `err` value. */
  get err(): SetDeliveryErr {
    return SSF_ERROR_ERR[this.code];
  }

  /** The RFC 8935 push error body: `{err, description}`. */
  toPushError(): { err: SetDeliveryErr; description: string } {
    return { err: this.err, description: this.message };
  }
}
