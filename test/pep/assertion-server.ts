/** A real server with the CA, the identity-assertion key registry and the agent port (for assertion tests). */
import { configSchema } from '../../src/config/index.js';
import { type RunningServer, startServer } from '../../src/server/index.js';
import { devicesPlugin } from '../../src/server/devices/plugin.js';
import { agentEndpointPlugin } from '../../src/server/plugins/agent-endpoint.js';
import { assertionKeysPlugin } from '../../src/server/plugins/assertion-keys.js';
import { caPlugin } from '../../src/server/plugins/ca.js';
import { signalsPlugin } from '../../src/server/plugins/signals.js';
import { ssfPlugin } from '../../src/server/plugins/ssf.js';
import { createLogger } from '../../src/util/logger.js';
import { tempDir } from '../support/tmp.js';

export interface AssertionServerOptions {
  /** The signals plugin: the stream on the agent port and the admin routes. */
  signals?: boolean;
  /** With `signals`: SSF transmitters we receive SETs from (config `signals.ssf.receivers`). */
  ssfReceivers?: unknown[];
  /** The devices plugin, with the MDM webhook's secret file (config `devices.mdm.secret_file`). */
  devices?: { mdmSecretFile: string };
}

export interface AssertionServer {
  server: RunningServer;
  ca: ReturnType<typeof caPlugin>;
  /** The agent port, where sidecars register their keys: `https://127.0.0.1:<port>`. */
  agentUrl: string;
  /** With `{signals: true}`: the signals plugin (stream on the agent port, admin routes). */
  signals?: ReturnType<typeof signalsPlugin>;
  dataDir: string;
}

export async function startAssertionServer(
  trustDomain: string,
  opts: AssertionServerOptions = {},
): Promise<AssertionServer> {
  const ca = caPlugin();
  const keys = assertionKeysPlugin({ ca: ca.handle });
  const signals = opts.signals ? signalsPlugin({ ca: ca.handle, pingMs: 300 }) : undefined;
  const devices = opts.devices ? devicesPlugin({ ca: ca.handle }) : undefined;
  const agent = agentEndpointPlugin({
    ca: ca.handle,
    routes: [...keys.agentRoutes, ...(signals?.agentRoutes ?? []), ...(devices?.agentRoutes ?? [])],
  });
  const dataDir = tempDir();
  const server = await startServer({
    config: configSchema.parse({
      data_dir: dataDir,
      trust_domain: trustDomain,
      server: { port: 0, agent_port: 0 },
      ...(opts.ssfReceivers ? { signals: { ssf: { receivers: opts.ssfReceivers } } } : {}),
      ...(opts.devices ? { devices: { mdm: { secret_file: opts.devices.mdmSecretFile } } } : {}),
    }),
    logger: createLogger('silent'),
    plugins: [
      ca,
      keys,
      ...(signals ? [signals] : []),
      ...(signals && opts.ssfReceivers ? [ssfPlugin({ signals: signals.handle })] : []),
      ...(devices ? [devices] : []),
      agent,
    ],
  });
  return {
    server,
    ca,
    agentUrl: `https://127.0.0.1:${agent.address()?.port}`,
    ...(signals ? { signals } : {}),
    dataDir,
  };
}
