export { type ServerEvent, ServerEvents } from './events.js';
export { ServerMetrics } from './metrics.js';
export {
  BodyTooLargeError,
  type Handler,
  HttpError,
  readBody,
  readJson,
  Router,
  sendJson,
  sendText,
} from './router.js';
export {
  adminRoute,
  type RunningServer,
  type ServerContext,
  type ServerPlugin,
  ServerStartError,
  type StartServerOptions,
  startServer,
} from './server.js';
export { ADMIN_TOKEN_FILE, AdminAuth, AdminAuthError, type AdminPrincipal, readAdminToken } from './admin-auth.js';
