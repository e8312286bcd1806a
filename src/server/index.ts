export { type ServerEvent, ServerEvents } from './events.js';
export { ServerMetrics } from './metrics.js';
export {
  type Handler,
  HttpError,
  readBody,
  readJson,
  type RefusalHook,
  type RefusalNote,
  type Route,
  Router,
  refusal,
  sendJson,
  sendText,
} from './router.js';
export {
  type AdminHandler,
  adminRoute,
  type RunningServer,
  type ServerContext,
  type ServerPlugin,
  checkPluginDependencies,
  ServerStartError,
  type StartServerOptions,
  startServer,
} from './server.js';
export { ADMIN_TOKEN_FILE, AdminAuth, AdminAuthError, type AdminPrincipal, readAdminToken } from './admin-auth.js';
