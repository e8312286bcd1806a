export { ServerMetrics } from './metrics.js';
export { BodyTooLargeError, type Handler, readBody, Router, sendJson, sendText } from './router.js';
export {
  type RunningServer,
  type ServerContext,
  type ServerPlugin,
  ServerStartError,
  type StartServerOptions,
  startServer,
} from './server.js';
