import { chmodSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { NodeAgent } from '../../agent/node-agent.js';
import { adminClient } from '../admin-client.js';
import { commandLogger, resolveConfig } from '../context.js';
import { CliError } from '../errors.js';
import { printJson, table } from '../output.js';

const SERVER_OPT = ['--server <url>', 'server API URL (default: from the config)'] as const;

/** Runs until SIGINT/SIGTERM; resolves with the exit code. */
function untilSignal(stop: () => Promise<void>): Promise<number> {
  return new Promise((r) => {
    const on = () =>
      void stop().then(
        () => r(0),
        () => r(1),
      );
    process.once('SIGINT', on);
    process.once('SIGTERM', on);
  });
}

export function registerAgentCommands(program: Command): void {
  const agent = program
    .command('agent')
    .description('run the node agent (SPIFFE Workload API for this node), or manage attested agents')
    .option('--server-address <url>', 'agent port of the server (default https://<server.host>:<server.agent_port>)')
    .option('--join-token <token>', 'one-time token from `nevertrust token generate` (first start only)')
    .option('--trust-bundle <file>', 'PEM trust bundle to bootstrap trust in the server (`nevertrust bundle show`)')
    .option('--socket <path>', 'Workload API socket (default <data-dir>/public/agent.sock)')
    .addHelpText(
      'after',
      `
Examples:
  $ nevertrust bundle show > bundle.pem
  $ nevertrust agent --join-token "$(nevertrust token generate | head -1)" --trust-bundle bundle.pem
  $ SPIFFE_ENDPOINT_SOCKET=unix://$PWD/.nevertrust/public/agent.sock my-service   # workloads find the agent here
  $ nevertrust agent list
  $ nevertrust agent ban spiffe://example.org/spire/agent/join_token/3f2a…`,
    )
    .action(
      async (
        o: { serverAddress?: string; joinToken?: string; trustBundle?: string; socket?: string },
        cmd: Command,
      ) => {
        const config = resolveConfig(cmd);
        const logger = commandLogger(config);
        const dataDir = resolve(config.data_dir);
        const agentDir = join(dataDir, 'agent');
        // Workloads of any uid must reach the socket: it lives in <data-dir>/public (0755), and the
        // data dir is made traverse-only for others (0711); everything secret inside is 0600/0700.
        const socketPath = resolve(o.socket ?? join(dataDir, 'public', 'agent.sock'));
        if (!o.socket) {
          mkdirSync(join(dataDir, 'public'), { recursive: true, mode: 0o755 });
          chmodSync(dataDir, 0o711);
          chmodSync(join(dataDir, 'public'), 0o755);
        }
        let bundlePem: string;
        try {
          bundlePem = readFileSync(o.trustBundle ?? join(agentDir, 'bootstrap-bundle.pem'), 'utf8');
        } catch {
          throw new CliError('--trust-bundle FILE is required on first start (PEM from `nevertrust bundle show`)', 2);
        }
        const a = new NodeAgent({
          serverUrl: o.serverAddress ?? `https://${config.server.host}:${config.server.agent_port}`,
          trustDomain: config.trust_domain,
          trustBundlePem: bundlePem,
          joinToken: o.joinToken,
          dir: agentDir,
          socketPath,
          logger,
        });
        try {
          await a.start();
        } catch (e) {
          throw new CliError((e as Error).message);
        }
        process.stderr.write(
          `nevertrust agent\n  agent ID      ${a.id}\n  workload API  unix://${socketPath}   (export SPIFFE_ENDPOINT_SOCKET=unix://${socketPath})\n  Ctrl-C to stop\n`,
        );
        a.on('revoked', (reason) => process.stderr.write(`agent revoked: ${reason}\n`));
        process.exitCode = await untilSignal(() => a.stop());
      },
    );

  agent
    .command('list')
    .description('list attested agents with their SPIFFE IDs and SVID expiry')
    .option('--json', 'print JSON')
    .option(...SERVER_OPT)
    .addHelpText('after', '\nExamples:\n  $ nevertrust agent list\n  $ nevertrust agent list --json')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const { agents } = await adminClient(cmd).call<{ agents: Record<string, unknown>[] }>('GET', '/v1/admin/agents');
      if (o.json) printJson(agents);
      else process.stdout.write(table(agents, ['spiffe_id', 'expires_at', 'banned', 'remote_addr']));
    });

  agent
    .command('ban <spiffe-id>')
    .description('ban an agent: it can no longer renew, sync or obtain SVIDs, and drops its identities')
    .option(...SERVER_OPT)
    .addHelpText('after', '\nExamples:\n  $ nevertrust agent ban spiffe://example.org/spire/agent/join_token/3f2a…')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      await adminClient(cmd).call('POST', '/v1/admin/agents/ban', { spiffe_id: id });
      process.stdout.write(`banned ${id}\n`);
    });
}
