/**
 * The `nevertrust` command tree. Each area registers its own subcommands; this file only wires them.
 * Building the tree loads only light modules (names, options, help text): each action imports what it
 * runs, so `--help` and `version` start fast.
 */
import { Command, Option } from 'commander';
import type { Config, LogLevel } from '../config/index.js';
import type { ServerPlugin } from '../server/index.js';
import { exactly } from './choices.js';
import { registerAccessProxyCommands } from './commands/access-proxy.js';
import { registerAgentCommands } from './commands/agent.js';
import { registerAuditCommands } from './commands/audit.js';
import { registerDeviceCommands } from './commands/device.js';
import { registerEntryCommands, registerTokenCommands } from './commands/entry.js';
import { registerIdentityCommands } from './commands/identity.js';
import { registerIdpCommands } from './commands/idp.js';
import { registerPolicyCommands } from './commands/policy.js';
import { registerServerCommands } from './commands/server.js';
import { registerSidecarCommands } from './commands/sidecar.js';
import { registerSignalCommands } from './commands/signals.js';
import { registerUpCommands } from './commands/up.js';
import { registerUserCommands } from './commands/user.js';
import { registerVersionCommand } from './commands/version.js';
import { VERSION } from './version.js';

/** The configuration schema's logLevels, in its order (the schema is loaded only when a command runs). */
const LOG_LEVELS = exactly<LogLevel>()(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/** The server's plugins for a given configuration, from ./server-plugins.js, loaded on first use. */
export async function serverPlugins(config: Config): Promise<ServerPlugin[]> {
  const m = await import('./server-plugins.js');
  return m.serverPlugins(config);
}

export function buildProgram(): Command {
  const program = new Command('nevertrust')
    .description(
      'nevertrust: zero-trust for services: SPIFFE identities, mTLS, least-privilege policy, tamper-evident audit',
    )
    .version(VERSION, '-V, --version', 'print the version')
    .option('-c, --config <file>', 'config file (default ./nevertrust.yaml if present; env NEVERTRUST_CONFIG)')
    .option('-d, --data-dir <dir>', 'where nevertrust keeps its data (default ./.nevertrust)')
    .addOption(new Option('--log-level <level>', 'log level').choices([...LOG_LEVELS]))
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
  registerAccessProxyCommands(program);
  registerAuditCommands(program);
  registerUserCommands(program);
  registerIdpCommands(program);
  registerDeviceCommands(program);
  registerSignalCommands(program);
  return program;
}
