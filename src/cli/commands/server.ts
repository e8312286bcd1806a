import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { Config } from '../../config/index.js';
import type { RunningServer, ServerPlugin } from '../../server/index.js';
import { commandLogger, type FlagBinding, intFlag, resolveConfig } from '../context.js';
import { VERSION } from '../version.js';

export const SERVER_BINDINGS: FlagBinding[] = [
  { flag: '--host', option: 'host', field: ['server', 'host'] },
  { flag: '--port', option: 'port', field: ['server', 'port'], parse: intFlag },
  { flag: '--agent-port', option: 'agentPort', field: ['server', 'agent_port'], parse: intFlag },
  { flag: '--database', option: 'database', field: ['database', 'url'] },
  { flag: '--trust-domain', option: 'trustDomain', field: ['trust_domain'] },
  { flag: '--policies', option: 'policies', field: ['policies'] },
];

/** Adds the flags shared by `server` and `up`. */
export function withServerOptions(cmd: Command): Command {
  return cmd
    .option('--host <addr>', 'address to listen on (default 127.0.0.1)')
    .option('--port <n>', 'API port: health, metrics, admin and decision APIs (default 8181)')
    .option('--agent-port <n>', 'port agents connect to over mTLS (default 8081)')
    .option('--database <url>', 'postgres://user:pass@host/db for PostgreSQL; default: SQLite in the data dir')
    .option('--trust-domain <name>', 'SPIFFE trust domain (default example.org)')
    .option('--policies <path>', 'policy file or directory to load and watch');
}

/** What a person needs to know at start: where it listens and where its data lives. */
export function startBanner(title: string, config: Config, server: RunningServer): string {
  const lines = [
    `${title} ${VERSION}`,
    `  trust domain  ${config.trust_domain}`,
    `  API           ${server.url}   (GET /healthz, /readyz, /metrics)`,
    `  data dir      ${resolve(config.data_dir)}`,
    `  store         ${server.store.engine} ${server.store.location}`,
    ...server.endpoints.map((e) => `  ${e.label.padEnd(13)} ${e.where}`),
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * Runs until SIGINT/SIGTERM, then shuts down cleanly and resolves with exit code 0.
 * A second signal during shutdown exits at once with 130.
 */
export async function runUntilSignal(
  server: RunningServer,
  extraClose: () => Promise<void> = async () => {},
): Promise<number> {
  return new Promise<number>((resolvePromise) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        process.stderr.write(`\n${signal} again: exiting without waiting\n`);
        process.exit(130);
      }
      stopping = true;
      process.stderr.write(`\n${signal}: shutting down (finishing in-flight requests)…\n`);
      void extraClose()
        .then(() => server.close())
        .then(
          () => resolvePromise(0),
          (e: unknown) => {
            process.stderr.write(`nevertrust: shutdown failed: ${(e as Error).message}\n`);
            resolvePromise(1);
          },
        );
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

/** The server's plugins for a configuration; program.ts loads them with a dynamic import. */
export type ServerPluginsFactory = (config: Config) => ServerPlugin[] | Promise<ServerPlugin[]>;

export async function runServerCommand(cmd: Command, title: string, plugins: ServerPluginsFactory): Promise<number> {
  const config = await resolveConfig(cmd, SERVER_BINDINGS);
  const logger = await commandLogger(config);
  const { startServer } = await import('../../server/index.js');
  const server = await startServer({ config, logger, plugins: await plugins(config) });
  process.stderr.write(startBanner(title, config, server));
  process.stderr.write('  Ctrl-C to stop\n');
  return runUntilSignal(server);
}

export function registerServerCommands(program: Command, plugins: ServerPluginsFactory): void {
  withServerOptions(
    program
      .command('server')
      .description('run the control plane: CA, registration, policy store and distribution, admin and decision APIs'),
  )
    .addHelpText(
      'after',
      `
Examples:
  $ nevertrust server                                   # SQLite in ./.nevertrust, API on 127.0.0.1:8181
  $ nevertrust server --port 9181 --data-dir /var/lib/nevertrust
  $ nevertrust server --database postgres://nevertrust:secret@db.internal/nevertrust`,
    )
    .action(async (_opts, cmd: Command) => {
      process.exitCode = await runServerCommand(cmd, 'nevertrust server', plugins);
    });
}
