/**
 * The `nevertrust` command tree. Each area registers its own subcommands; this file only wires them.
 */
import { Command, Option } from 'commander';
import { fileSink, stdoutSink } from '../audit/index.js';
import type { Config } from '../config/index.js';
import { logLevels } from '../config/index.js';
import type { ServerPlugin } from '../server/index.js';
import { agentEndpointPlugin } from '../server/plugins/agent-endpoint.js';
import { assertionKeysPlugin } from '../server/plugins/assertion-keys.js';
import { auditPlugin } from '../server/plugins/audit.js';
import { caPlugin } from '../server/plugins/ca.js';
import { decisionPlugin } from '../server/plugins/decision.js';
import { policyPlugin } from '../server/plugins/policy.js';
import { registrationPlugin } from '../server/plugins/registration.js';
import { registerAgentCommands } from './commands/agent.js';
import { registerAuditCommands } from './commands/audit.js';
import { registerEntryCommands, registerTokenCommands } from './commands/entry.js';
import { registerIdentityCommands } from './commands/identity.js';
import { registerPolicyCommands } from './commands/policy.js';
import { registerServerCommands } from './commands/server.js';
import { registerSidecarCommands } from './commands/sidecar.js';
import { registerUpCommands } from './commands/up.js';
import { registerVersionCommand } from './commands/version.js';
import { VERSION } from './version.js';

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
  });
  // Before the agent endpoint, which serves its registration route.
  const assertionKeys = assertionKeysPlugin({ ca: ca.handle });
  return [
    ca,
    registrationPlugin(),
    assertionKeys,
    agentEndpointPlugin({ ca: ca.handle, routes: assertionKeys.agentRoutes, policy: policy.handle }),
    policy,
    decision,
    audit,
  ];
}

export function buildProgram(): Command {
  const program = new Command('nevertrust')
    .description(
      'nevertrust: zero-trust for services: SPIFFE identities, mTLS, least-privilege policy, tamper-evident audit',
    )
    .version(VERSION, '-V, --version', 'print the version')
    .option('-c, --config <file>', 'config file (default ./nevertrust.yaml if present; env NEVERTRUST_CONFIG)')
    .option('-d, --data-dir <dir>', 'where nevertrust keeps its data (default ./.nevertrust)')
    .addOption(new Option('--log-level <level>', 'log level').choices([...logLevels]))
    .showHelpAfterError(true)
    .showSuggestionAfterError(true)
    .addHelpText(
      'after',
      `
Examples:
  $ nevertrust up                         # run everything locally (what \`npm start\` runs)
  $ nevertrust server --port 8181         # run the control plane
  $ nevertrust <command> --help           # help for one command

Config: flags > NEVERTRUST_* environment variables (e.g. NEVERTRUST_SERVER_PORT=9181) > nevertrust.yaml > defaults.`,
    );
  registerVersionCommand(program);
  registerServerCommands(program, serverPlugins);
  registerUpCommands(program, serverPlugins);
  registerEntryCommands(program);
  registerTokenCommands(program);
  registerIdentityCommands(program);
  registerAgentCommands(program);
  registerPolicyCommands(program);
  registerSidecarCommands(program);
  registerAuditCommands(program);
  return program;
}
