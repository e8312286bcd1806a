export { type OidcAuthConfig, type OidcAuthConfigInput, oidcAuthConfigSchema } from './config.js';
export { AccessAuthError, type AccessAuthErrorCode, LoginRefusedError } from './errors.js';
export {
  BACKCHANNEL_LOGOUT_PATH,
  CALLBACK_PATH,
  createOidcAuthenticator,
  LOGIN_COOKIE,
  type OidcAuthenticator,
  type OidcAuthenticatorDeps,
  personFromClaims,
  SIGN_OUT_PATH,
  SIGNED_OUT_PATH,
} from './oidc-authenticator.js';
export { safeReturnTo } from './return-to.js';
