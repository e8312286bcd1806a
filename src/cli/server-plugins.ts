/**
 * The control plane's plugins for a configuration, used by `nevertrust server`, `up` and `demo`.
 * Its own module so that only those commands load the server (program.ts imports it dynamically).
 */
import { fileSink, stdoutSink } from '../audit/index.js';
import type { Config } from '../config/index.js';
import type { ServerPlugin } from '../server/index.js';
import { devicesPlugin } from '../server/devices/plugin.js';
import { agentEndpointPlugin } from '../server/plugins/agent-endpoint.js';
import { assertionKeysPlugin } from '../server/plugins/assertion-keys.js';
import { auditPlugin } from '../server/plugins/audit.js';
import { caPlugin } from '../server/plugins/ca.js';
import { consolePlugin } from '../server/plugins/console.js';
import { crlPlugin } from '../server/plugins/crl.js';
import { decisionPlugin } from '../server/plugins/decision.js';
import { graphPlugin } from '../server/plugins/graph.js';
import { policyPlugin } from '../server/plugins/policy.js';
import { registrationPlugin } from '../server/plugins/registration.js';
import { sessionsPlugin } from '../server/plugins/sessions.js';
import { signalsPlugin } from '../server/plugins/signals.js';
import { ssfPlugin } from '../server/plugins/ssf.js';
import { usersPlugin } from '../server/plugins/users.js';

/** The server's plugins for a given configuration (later issues add CA, policy, audit…). */
export function serverPlugins(config: Config): ServerPlugin[] {
  const ca = caPlugin();
  const policy = policyPlugin();
  const decision = decisionPlugin({
    policy: policy.handle,
    bundles: () => ca.handle.current().bundle(),
    trustedProxies: config.decision.trusted_proxies,
    defaultTarget: config.decision.default_target,
    grpc:
      config.decision.envoy_grpc_port === undefined
        ? undefined
        : {
            host: config.server.host,
            port: config.decision.envoy_grpc_port,
            mtls:
              config.decision.envoy_grpc_tls === 'mtls'
                ? { ca: ca.handle, clients: config.decision.envoy_grpc_clients }
                : undefined,
          },
  });
  const a = config.audit;
  const audit = auditPlugin({
    checkpointEvery: a.checkpoint_every,
    checkpointIntervalMs: a.checkpoint_interval * 1000,
    checkpointFile: a.checkpoint_file,
    checkpointWebhook: a.checkpoint_webhook,
    anomalyWebhook: a.anomaly_webhook,
    retention: a.hot_window === undefined ? undefined : { hotWindowMs: a.hot_window * 1000 },
    sinks: [...(a.export === 'stdout' ? [stdoutSink()] : []), ...(a.export_file ? [fileSink(a.export_file)] : [])],
    ca: ca.handle,
    ingestRate: a.ingest_rate,
  });
  // Before the agent endpoint, which serves its registration route.
  const assertionKeys = assertionKeysPlugin({ ca: ca.handle });
  const devices = devicesPlugin({ ca: ca.handle });
  // Revocation, risk and posture signals: kept, audited, streamed on the agent port (issue #23).
  const signals = signalsPlugin({ ca: ca.handle });
  const crl = crlPlugin({ ca: ca.handle });
  return [
    ca,
    signals,
    registrationPlugin(),
    usersPlugin(),
    assertionKeys,
    devices,
    crl,
    // Audit ingestion by SVID is answered 503 until the audit plugin, registered last, is ready.
    agentEndpointPlugin({
      ca: ca.handle,
      routes: [
        ...assertionKeys.agentRoutes,
        ...devices.agentRoutes,
        ...signals.agentRoutes,
        ...audit.agentRoutes,
        ...crl.agentRoutes,
      ],
      policy: policy.handle,
    }),
    // OpenID Shared Signals (signals.ssf): receives SETs into the signals handle, transmits what it keeps.
    ssfPlugin({ signals: signals.handle }),
    policy,
    decision,
    audit,
    // The console's service graph over the audit log, with the policy in force overlaid.
    graphPlugin({ audit: audit.handle, policy: policy.handle }),
    // The web console (docs/console.md): its pages and the admin views it adds.
    sessionsPlugin(),
    consolePlugin(),
  ];
}
