import { auditIngestResponseSchema } from '../../api/audit-ingest.js';
import { chmodSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Command, Option } from 'commander';
import type { RunningDecisionListener } from '../../server/decision-listener.js';
import { adminClient } from '../admin-client.js';
import { commandLogger, resolveConfig } from '../context.js';
import { CliError } from '../errors.js';
import { printJson, table } from '../output.js';

const SERVER_OPT = ['--server <url>', 'server API URL (default: from the config)'] as const;

/** `HOST:PORT` (or `[v6]:PORT`) from a flag, or a usage error. */
function parseHostPort(value: string, flag: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^\s:]+)):(\d{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new CliError(`${flag}: expected HOST:PORT (or "off"), got ${JSON.stringify(value)}`, 2);
  return { host: (m[1] ?? m[2]) as string, port };
}

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
    .option(
      '--decision-listen <host:port>',
      'local decision APIs (OPA Data API, /v1/decide, nginx, Envoy HTTP) on the policies streamed from the server; "off" to disable',
      '127.0.0.1:8182',
    )
    .addOption(
      new Option(
        '--audit <how>',
        'where local decisions go: "svid" ships them to the server audit log over the agent\'s own mTLS connection (agent port, no token), "token" to --audit-server with --audit-token-file, "log" writes JSON log lines (default: svid; token with --audit-token-file)',
      ).choices(['svid', 'token', 'log']),
    )
    .option('--audit-token-file <file>', 'bearer token for --audit token (implies it)')
    .option('--audit-server <url>', 'server API URL for --audit token (default http://<server.host>:<server.port>)')
    .addHelpText(
      'after',
      `
Examples:
  $ nevertrust bundle show > bundle.pem
  $ nevertrust agent --join-token "$(nevertrust token generate | head -1)" --trust-bundle bundle.pem
  $ SPIFFE_ENDPOINT_SOCKET=unix://$PWD/.nevertrust/public/agent.sock my-service   # workloads find the agent here
  $ curl -s localhost:8182/v1/data/service_auth/allow -d '{"input":{"source_service":"api-gateway","target_service":"payment-service","method":"POST","path":"/v1/charges"}}'
  $ nevertrust agent list
  $ nevertrust agent ban spiffe://example.org/spire/agent/join_token/3f2a…`,
    )
    .action(
      async (
        o: {
          serverAddress?: string;
          joinToken?: string;
          trustBundle?: string;
          socket?: string;
          decisionListen: string;
          audit?: string;
          auditTokenFile?: string;
          auditServer?: string;
        },
        cmd: Command,
      ) => {
        // Usage first: nothing starts with flags that contradict each other.
        const how = o.audit ?? (o.auditTokenFile ? 'token' : 'svid');
        if (how === 'token' && !o.auditTokenFile) throw new CliError('--audit token needs --audit-token-file', 2);
        if (how !== 'token' && (o.auditTokenFile || o.auditServer)) {
          throw new CliError(`--audit-token-file and --audit-server go with --audit token, not --audit ${how}`, 2);
        }
        const config = await resolveConfig(cmd);
        const logger = await commandLogger(config);
        // The agent, audit shipper and decision listener are loaded only when the agent runs.
        // Before anything else (and the heavy imports): without SO_PEERCRED the agent could attest no workload.
        const { requirePeerCredentials } = await import('../../agent/peercred.js');
        requirePeerCredentials();
        const [
          { NodeAgent },
          { ServerCallError },
          { AGENT_PORT_INGEST_PATH, AuditRecorder, createHttpShipper, ingestionError },
          { startDecisionListener },
          { fromServerEvent },
          { writePrivateFile },
        ] = await Promise.all([
          import('../../agent/node-agent.js'),
          import('../../api/server-client.js'),
          import('../../audit/index.js'),
          import('../../server/decision-listener.js'),
          import('../../server/plugins/audit.js'),
          import('../../agent/agent-cache.js'),
        ]);
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
        // The bootstrap bundle given on first start is kept in the agent's directory, so a restart
        // (after a reboot, with the server down) needs no flag; the synced bundle.json overrides it.
        const keptBundle = join(agentDir, 'bootstrap-bundle.pem');
        let bundlePem: string;
        try {
          bundlePem = readFileSync(o.trustBundle ?? keptBundle, 'utf8');
        } catch {
          throw new CliError('--trust-bundle FILE is required on first start (PEM from `nevertrust bundle show`)', 2);
        }
        if (o.trustBundle) {
          mkdirSync(agentDir, { recursive: true, mode: 0o700 });
          writePrivateFile(keptBundle, bundlePem);
        }
        const a = new NodeAgent({
          serverUrl: o.serverAddress ?? `https://${config.server.host}:${config.server.agent_port}`,
          trustDomain: config.trust_domain,
          trustBundlePem: bundlePem,
          joinToken: o.joinToken,
          dir: agentDir,
          socketPath,
          logger,
          workloadApi: {
            maxConnectionsPerPeer: config.agent.workload_api.max_connections_per_uid,
            maxCallsPerPeer: config.agent.workload_api.max_calls_per_uid,
            handshakeTimeoutMs: Math.max(1, Math.round(config.agent.workload_api.handshake_timeout * 1000)),
          },
        });
        const listen = o.decisionListen === 'off' ? undefined : parseHostPort(o.decisionListen, '--decision-listen');
        let token: string | undefined;
        if (o.auditTokenFile) {
          try {
            token = readFileSync(o.auditTokenFile, 'utf8').trim();
          } catch (e) {
            throw new CliError(`--audit-token-file: ${(e as Error).message}`, 2);
          }
        }
        try {
          await a.start();
        } catch (e) {
          throw new CliError((e as Error).message);
        }
        // Local decisions are recorded like the server's: shipped to the audit log (spilled to disk
        // while the server is away) — by default over the agent's own mTLS connection to the agent
        // port, so no token has to be handed to the node — else written as JSON log lines.
        const spillDir = join(agentDir, 'audit-spill');
        const shipper =
          how === 'token'
            ? createHttpShipper({
                // An agent usually runs on another node than the server: its API is named explicitly there.
                url: o.auditServer ?? `http://${config.server.host}:${config.server.port}`,
                token,
                spillDir,
                logger,
              })
            : how === 'svid'
              ? new AuditRecorder({
                  name: 'agent',
                  spillDir,
                  logger,
                  sink: {
                    append: (events) =>
                      a
                        .postToServer(AGENT_PORT_INGEST_PATH, { events }, auditIngestResponseSchema)
                        .catch((e: unknown) => {
                          throw e instanceof ServerCallError ? ingestionError(e.status, e.message) : e;
                        }),
                  },
                })
              : undefined;
        let decisions: RunningDecisionListener | undefined;
        if (listen) {
          try {
            decisions = await startDecisionListener({
              ...listen,
              trustDomain: config.trust_domain,
              policy: { current: () => a.policySnapshot() },
              bundles: () => a.trustBundle(),
              trustedProxies: config.decision.trusted_proxies,
              defaultTarget: config.decision.default_target,
              revocations: a.revocations,
              logger,
              record: shipper
                ? (e) => shipper.record(fromServerEvent({ ...e, enforcer: 'agent' }))
                : (e) => logger.info({ ...e }, 'access decision'),
            });
          } catch (e) {
            await a.stop();
            throw new CliError((e as Error).message);
          }
        }
        process.stderr.write(
          `nevertrust agent\n  agent ID      ${a.id}\n  workload API  unix://${socketPath}   (export SPIFFE_ENDPOINT_SOCKET=unix://${socketPath})\n${decisions ? `  decisions     ${decisions.url}   (OPA Data API, /v1/decide, nginx, Envoy HTTP)\n` : ''}  Ctrl-C to stop\n`,
        );
        a.on('revoked', (reason) => process.stderr.write(`agent revoked: ${reason}\n`));
        process.exitCode = await untilSignal(async () => {
          await decisions?.close();
          await shipper?.close(5000);
          await a.stop();
        });
      },
    );

  agent
    .command('list')
    .description('list attested agents with their SPIFFE IDs and SVID expiry')
    .option('--json', 'print JSON')
    .option(...SERVER_OPT)
    .addHelpText('after', '\nExamples:\n  $ nevertrust agent list\n  $ nevertrust agent list --json')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const { agentListSchema } = await import('../../api/agents.js');
      const { agents } = await (await adminClient(cmd)).call('GET', '/v1/admin/agents', undefined, agentListSchema);
      if (o.json) printJson(agents);
      else process.stdout.write(table(agents, ['spiffe_id', 'expires_at', 'banned', 'remote_addr']));
    });

  agent
    .command('ban <spiffe-id>')
    .description('ban an agent: it can no longer renew, sync or obtain SVIDs, and drops its identities')
    .option(...SERVER_OPT)
    .addHelpText('after', '\nExamples:\n  $ nevertrust agent ban spiffe://example.org/spire/agent/join_token/3f2a…')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { banResultSchema } = await import('../../api/agents.js');
      await (await adminClient(cmd)).call('POST', '/v1/admin/agents/ban', { spiffe_id: id }, banResultSchema);
      process.stdout.write(`banned ${id}\n`);
    });
}
