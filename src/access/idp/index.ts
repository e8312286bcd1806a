export { storeAdapter } from './adapter.js';
export { type AttemptLimits, clientIp, DEFAULT_ATTEMPT_LIMITS, LoginAttempts } from './attempts.js';
export { type IdpKeys, loadOrCreateKeys, rotateSigningKey } from './keys.js';
export { generatePassword, hashPassword, SCRYPT_N, verifyPassword } from './password.js';
export {
  type IdentityProviderOptions,
  type IdpClient,
  IdpConfigError,
  PASSWORD_ACR,
  type RunningIdentityProvider,
  startIdentityProvider,
} from './provider.js';
export { type IdpConfig, IdpConfigFileError, idpConfigSchema, type LoadedIdpConfig, loadIdpConfig } from './config.js';
