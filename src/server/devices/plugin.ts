/**
 * The devices plugin (issue #22): enrollment, renewal and signed posture reports on the agent port
 * (`agentRoutes`, given to `agentEndpointPlugin`), device administration and the MDM webhook on the
 * API port. Contracts: src/api/devices.ts; store: `store.devices`.
 *
 * @example
 * ```ts
 * const devices = devicesPlugin({ ca: ca.handle });
 * startServer({ config, logger, plugins: [ca, devices, agentEndpointPlugin({ ca: ca.handle, routes: devices.agentRoutes })] });
 * ```
 */
import { resolve } from 'node:path';
import type { AgentPortRoute } from '../plugins/agent-endpoint.js';
import type { CaHandle } from '../plugins/ca.js';
import { RateLimiter } from '../rate-limiter.js';
import { adminRoute, type ServerContext, type ServerPlugin } from '../server.js';
import { createToken, listDevices, revokeDevice, showDevice } from './admin.js';
import { bundle, type DevicePort, enroll, posture, renew } from './device-port.js';
import { mdmHandler, readMdmSecret } from './mdm.js';

export interface DevicesPluginOptions {
  ca: CaHandle;
  /** Enrollment attempts per address: burst and refill per minute (default 10 and 10, as attestation). */
  enrollBurst?: number;
  enrollPerMinute?: number;
}

export function devicesPlugin(
  opts: DevicesPluginOptions,
): ServerPlugin & { readonly agentRoutes: readonly AgentPortRoute[] } {
  let port: DevicePort | undefined;
  // The agent port registers after this plugin; until then (never, in a started server) 503.
  const on =
    (
      fn: (p: DevicePort, ...a: Parameters<AgentPortRoute['handler']>) => void | Promise<void>,
    ): AgentPortRoute['handler'] =>
    (req, res, url) => {
      if (!port) throw new Error('the devices plugin is not registered');
      return fn(port, req, res, url);
    };
  return {
    name: 'devices',
    dependsOn: ['ca'],
    agentRoutes: [
      { method: 'GET', path: '/device/v1/bundle', handler: on(bundle) },
      { method: 'POST', path: '/device/v1/enroll', handler: on(enroll) },
      { method: 'POST', path: '/device/v1/renew', handler: on(renew) },
      { method: 'POST', path: '/device/v1/posture', handler: on(posture) },
    ],
    register(ctx: ServerContext) {
      port = {
        ctx,
        ca: opts.ca,
        enrollLimiter: new RateLimiter(opts.enrollBurst ?? 10, (opts.enrollPerMinute ?? 10) / 60),
      };
      const { router } = ctx;
      router.on(
        'POST',
        '/v1/admin/devices/tokens',
        adminRoute(ctx, (req, res, _url, who) => createToken(ctx, opts.ca, req, res, who)),
      );
      router.on(
        'GET',
        '/v1/admin/devices',
        adminRoute(ctx, (_req, res, url) => listDevices(ctx, res, url)),
      );
      router.onPrefix(
        'GET',
        '/v1/admin/devices/',
        adminRoute(ctx, (_req, res, url) => showDevice(ctx, res, url)),
      );
      router.onPrefix(
        'POST',
        '/v1/admin/devices/',
        adminRoute(ctx, (req, res, url, who) => revokeDevice(ctx, req, res, url, who)),
      );
      const mdm = ctx.config.devices.mdm;
      // Without a secret the webhook does not exist (404): no unauthenticated way in.
      if (mdm) router.on('POST', '/v1/devices/mdm', mdmHandler(ctx, readMdmSecret(resolve(mdm.secret_file))));
    },
  };
}
