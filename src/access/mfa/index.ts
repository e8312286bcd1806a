export {
  type AttemptFailure,
  AttemptGuard,
  type AttemptLimits,
  attemptLimitsSchema,
  DEFAULT_ATTEMPT_LIMITS,
  ipAttemptKey,
} from './attempts.js';
export { MfaError, type MfaErrorCode } from './errors.js';
export { qrSvg } from './qr.js';
export {
  newRecoveryCode,
  newRecoveryCodes,
  normalizeRecoveryCode,
  RECOVERY_CODE_COUNT,
  recoveryCodeHash,
} from './recovery.js';
export {
  createMfaService,
  type FactorInfo,
  MAX_ENROLL_LINK_TTL_MS,
  MAX_FACTORS,
  type MfaService,
  type MfaServiceDeps,
  type MfaSubject,
  type VerifyResult,
} from './service.js';
export {
  matchTotp,
  newTotpSecret,
  normalizeTotpCode,
  TOTP_DIGITS,
  TOTP_PERIOD_S,
  TOTP_SECRET_BYTES,
  TOTP_WINDOW,
  toBase32,
  totpCode,
  totpStep,
  totpUri,
} from './totp.js';
export {
  type RelyingParty,
  WEBAUTHN_TIMEOUT_MS,
  webauthnMethods,
} from './webauthn.js';
