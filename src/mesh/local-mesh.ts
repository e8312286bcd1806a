/**
 * `nevertrust up`: a whole zero-trust mesh on one machine, on the embedded default. In this
 * process: the server (CA, registration, agent endpoint, policies, decision APIs, audit) and one
 * node agent. As child processes: the three example services, each started from its own binary
 * path so the agent can tell them apart by process attestation (`unix:uid` + `unix:path`), with no
 * secret in their configuration. Their decisions come back over the IPC channel and are recorded in
 * the audit log, as an agent would ship them. Beside them, people's access (people.ts).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { NodeAgent } from '../agent/node-agent.js';
import { requirePeerCredentials } from '../agent/peercred.js';
import type { Config } from '../config/index.js';
import { DuplicateEntryError } from '../store/index.js';
import { type RunningServer, type ServerEvent, type ServerPlugin, startServer } from '../server/index.js';
import { packageRoot } from '../util/package-root.js';
import { listen } from '../util/listen.js';
import type { Logger } from '../util/logger.js';
import { judge, SERVICES, type ServiceName, type Step, type StepResult } from './scenario.js';
import { meshConsole, People } from './people.js';
import { cleanExit, ServiceStartError, serviceBinary } from './processes.js';

export { ServiceStartError } from './processes.js';

export interface ServiceInfo {
  name: ServiceName;
  spiffeId: string;
  binary: string;
  port: number;
  driverPort: number;
  publicPort?: number;
  process?: ChildProcess;
  ready: boolean;
}

export interface MeshDecision {
  time: number;
  service: string;
  outcome: string;
  source?: string;
  target?: string;
  method?: string;
  path?: string;
  policy?: string;
  rule?: string;
  reason: string;
}

export interface LocalMeshOptions {
  config: Config;
  logger: Logger;
  /** The server's plugins for this config (the CLI's full set, audit included). */
  plugins: ServerPlugin[];
  /** Policies the services enforce; default: the payments example. */
  policies?: string;
  /** Picks each service port; default: a free port below the ephemeral range (tests hand out a taken one). */
  choosePort?: () => Promise<number>;
  /**
   * People's access (the built-in OpenID provider, the back-office app and the access proxy):
   * `port` is the proxy's (default a free one), `policies` what it enforces (default the
   * back-office example's); `false` leaves it out.
   */
  people?: { port?: number; policies?: string } | false;
}

/** `port` if it can be bound on 127.0.0.1 now (0: whichever the system gives), else undefined. */
async function bindable(port: number): Promise<number | undefined> {
  const s = createServer();
  try {
    const bound = await listen(s, { host: '127.0.0.1', port });
    await new Promise((r) => s.close(r));
    return bound;
  } catch {
    return undefined;
  }
}

/** Linux's range for ephemeral ports (outgoing connections and `listen(0)`), if it can be read. */
function ephemeralRange(): [number, number] | undefined {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return lo && hi ? [lo, hi] : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A free port for a service, chosen below the ephemeral range where the system allows: a port
 * from `listen(0)` is free only until the service binds it, and in between any outgoing
 * connection may be given it (seen in tests as EADDRINUSE). Services are told their peers' ports
 * before they start, so ports are chosen first.
 */
async function freePort(): Promise<number> {
  const lo = ephemeralRange()?.[0] ?? 0;
  if (lo > 12_000) {
    for (let i = 0; i < 50; i++) {
      const port = await bindable(10_000 + Math.floor(Math.random() * (lo - 10_000)));
      if (port) return port;
    }
  }
  const port = await bindable(0);
  if (!port) throw new Error('no free TCP port on 127.0.0.1');
  return port;
}

export class LocalMesh {
  readonly decisions: MeshDecision[] = [];
  readonly counts = { allow: 0, deny: 0 };
  readonly results: StepResult[] = [];
  private stopping = false;
  /** Counts starts and stops of the services, so exits of an earlier set are not taken as failures. */
  private generation = 0;

  /** People's access, once started (see people.ts). */
  people: People | undefined;

  private constructor(
    readonly server: RunningServer,
    readonly agent: NodeAgent,
    readonly services: Map<ServiceName, ServiceInfo>,
    private readonly opts: LocalMeshOptions,
  ) {}

  static async start(opts: LocalMeshOptions): Promise<LocalMesh> {
    const { config, logger } = opts;
    const choosePort = opts.choosePort ?? freePort;
    const root = packageRoot();
    const policies = resolve(opts.policies ?? config.policies ?? join(root, 'examples', 'policies', 'payments'));
    const dataDir = resolve(config.data_dir);
    // The in-process agent attests the services by SO_PEERCRED: without the addon nothing could
    // start, so say what to build before starting anything (not after 30 s of denied workloads).
    requirePeerCredentials();
    // With people's access, the mesh's access proxy vouches for console admins (docs/console.md).
    const serverConfig: Config = {
      ...config,
      policies,
      ...(opts.people === false ? {} : { console: meshConsole(config.console, config.trust_domain) }),
    };
    const server = await startServer({ config: serverConfig, logger, plugins: opts.plugins });
    try {
      // Workloads reach the socket in <data-dir>/public; the data dir is traverse-only for others.
      mkdirSync(join(dataDir, 'public'), { recursive: true, mode: 0o755 });
      chmodSync(dataDir, 0o711);
      const token = randomBytes(16).toString('hex');
      await server.store.joinTokens.create(token, 600);
      const bundlePem = await (await fetch(`${server.url}/v1/bundle?format=pem`)).text();
      const agentPort = server.endpoints.find((e) => e.label === 'agent port')?.where.match(/:(\d+)/)?.[1];
      const socket = join(dataDir, 'public', 'agent.sock');
      const agent = new NodeAgent({
        serverUrl: `https://${config.server.host}:${agentPort ?? config.server.agent_port}`,
        trustDomain: config.trust_domain,
        trustBundlePem: bundlePem,
        joinToken: token,
        dir: join(dataDir, 'agent'),
        socketPath: socket,
        logger,
      });
      await agent.start();

      const binDir = join(dataDir, 'bin');
      mkdirSync(binDir, { recursive: true, mode: 0o755 });
      const uid = process.getuid?.() ?? 0;
      const services = new Map<ServiceName, ServiceInfo>();
      for (const name of SERVICES) {
        const binary = serviceBinary(binDir, name);
        const spiffeId = `spiffe://${config.trust_domain}/ns/payments/sa/${name}`;
        try {
          await server.store.entries.create({
            spiffeId,
            parentId: agent.id,
            selectors: [`unix:uid:${uid}`, `unix:path:${binary}`],
            x509SvidTtl: config.ca.x509_svid_ttl,
            jwtSvidTtl: config.ca.jwt_svid_ttl,
            dnsNames: [],
            hint: name,
            admin: false,
            expiresAt: null,
          });
        } catch (e) {
          if (!(e instanceof DuplicateEntryError)) throw e;
        }
        services.set(name, {
          name,
          spiffeId,
          binary,
          port: await choosePort(),
          driverPort: await choosePort(),
          publicPort: name === 'api-gateway' ? await choosePort() : undefined,
          ready: false,
        });
      }
      const mesh = new LocalMesh(server, agent, services, opts);
      // People's access starts beside the services (it needs none of them): start-up stays short.
      const people =
        opts.people === false
          ? undefined
          : People.start({
              server,
              plugins: opts.plugins,
              trustDomain: config.trust_domain,
              dataDir,
              kekFile: resolve(config.ca.kek_file ?? join(dataDir, 'kek')),
              socket,
              agentUrl: `https://${config.server.host}:${agentPort ?? config.server.agent_port}`,
              agentId: agent.id,
              binDir,
              bundlePem,
              policies: opts.people?.policies,
              ports: {
                proxy: opts.people?.port ?? (await choosePort()),
                idp: await choosePort(),
                app: await choosePort(),
              },
              svidTtl: { x509: config.ca.x509_svid_ttl, jwt: config.ca.jwt_svid_ttl },
              consoleUpstream: `http://127.0.0.1:${server.port}`,
              logger,
            }).then((p) => {
              mesh.people = p;
            });
      people?.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
      try {
        for (let attempt = 1; ; attempt++) {
          try {
            await mesh.startServices(socket, policies);
            break;
          } catch (e) {
            // A port taken between choosing it and binding it: all services again, on new ports.
            if (attempt >= 3 || !(e instanceof ServiceStartError && e.addressInUse)) throw e;
            logger.warn(
              { service: e.service, attempt },
              'a service port was taken meanwhile; starting the services on new ports',
            );
            await mesh.stopServices();
            for (const svc of services.values()) {
              svc.port = await choosePort();
              svc.driverPort = await choosePort();
              if (svc.publicPort !== undefined) svc.publicPort = await choosePort();
            }
          }
        }
        await people;
      } catch (e) {
        // Both halves settled first, so stopping leaves nothing running behind.
        await people?.catch(() => {});
        await mesh.stop().catch(() => {});
        throw e;
      }
      return mesh;
    } catch (e) {
      await server.close().catch(() => {});
      throw e;
    }
  }

  private async startServices(socket: string, policies: string): Promise<void> {
    const root = packageRoot();
    const generation = ++this.generation;
    const peers = Object.fromEntries(
      [...this.services.values()].map((s) => [s.name, { url: `https://127.0.0.1:${s.port}`, spiffe_id: s.spiffeId }]),
    );
    const readyAll = [...this.services.values()].map(
      (svc) =>
        new Promise<void>((resolveReady, reject) => {
          const child = fork(join(root, 'examples', 'payments', `${svc.name}.mjs`), [], {
            execPath: svc.binary,
            cwd: root,
            stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
            env: {
              PATH: process.env.PATH,
              SPIFFE_ENDPOINT_SOCKET: `unix://${socket}`,
              NT_POLICIES: policies,
              NT_PORT: String(svc.port),
              NT_DRIVER_PORT: String(svc.driverPort),
              NT_PUBLIC_PORT: svc.publicPort ? String(svc.publicPort) : '',
              NT_PEERS: JSON.stringify(peers),
            },
          });
          svc.process = child;
          let stderr = '';
          child.stderr?.on('data', (d: Buffer) => {
            stderr = (stderr + d.toString()).slice(-4000);
          });
          const timer = setTimeout(
            () => reject(new ServiceStartError(svc.name, 'did not start within 30 s', stderr)),
            30_000,
          );
          child.on('message', (m: { type?: string; event?: ServerEvent; service?: string }) => {
            if (m.type === 'ready') {
              svc.ready = true;
              clearTimeout(timer);
              resolveReady();
            } else if (m.type === 'decision' && m.event) this.onDecision(String(m.service), m.event);
          });
          child.on('exit', (code, signal) => {
            const wasReady = svc.ready;
            svc.ready = false;
            clearTimeout(timer);
            if (this.stopping || generation !== this.generation) return;
            const clean = wasReady && cleanExit(code, signal);
            this.opts.logger[clean ? 'warn' : 'error']({ service: svc.name, code, signal, stderr }, 'service exited');
            reject(new ServiceStartError(svc.name, `exited with ${code ?? signal}`, stderr));
          });
        }),
    );
    await Promise.all(readyAll);
  }

  private onDecision(service: string, e: ServerEvent): void {
    // The service is the enforcement point; the server records what it reports.
    this.server.events.record({ ...e, enforcer: service });
    if (e.outcome === 'allow') this.counts.allow++;
    else this.counts.deny++;
    this.decisions.push({
      time: Date.now(),
      service,
      outcome: e.outcome,
      source: e.source.spiffe_id ?? e.source.user ?? e.source.service ?? e.source.id,
      target: e.target.spiffe_id ?? e.target.service ?? e.target.id,
      method: e.target.method,
      path: e.target.path ?? e.target.resource,
      policy: e.policy,
      rule: e.rule,
      reason: e.reason,
    });
    if (this.decisions.length > 500) this.decisions.shift();
  }

  /** Runs one step of the scenario and records whether it ended as the policy says it must. */
  async run(step: Step): Promise<StepResult> {
    let status = 0;
    let detail = '';
    const to = this.services.get(step.to);
    if (!to) throw new Error(`unknown service ${step.to}`);
    if (step.from === 'anonymous') {
      // A client with no certificate: the TLS handshake itself must fail (or the request be refused).
      status = await new Promise<number>((r) => {
        const sock = tlsConnect({ host: '127.0.0.1', port: to.port, rejectUnauthorized: false }, () => {
          sock.write(`${step.method} ${step.path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`);
        });
        let buf = '';
        sock.on('data', (d) => {
          buf += d.toString();
          const m = /^HTTP\/1\.1 (\d{3})/.exec(buf);
          if (m) {
            sock.destroy();
            r(Number(m[1]));
          }
        });
        sock.on('error', (e) => {
          detail = e.message;
          r(0);
        });
        sock.on('close', () => r(0));
        sock.setTimeout(5000, () => sock.destroy());
      });
      detail ||= status === 0 ? 'TLS session refused' : '';
    } else {
      const from = this.services.get(step.from);
      if (!from) throw new Error(`unknown service ${step.from}`);
      try {
        const res = await fetch(`http://127.0.0.1:${from.driverPort}/__demo/call`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ peer: step.to, method: step.method, path: step.path, body: step.body }),
          signal: AbortSignal.timeout(10_000),
        });
        const out = (await res.json()) as { status: number; body: string };
        status = out.status;
        detail = out.body.slice(0, 200);
      } catch (e) {
        detail = (e as Error).message;
        status = -1;
      }
    }
    const result = { step, status, asExpected: judge(step, status), detail };
    this.results.push(result);
    if (this.results.length > 2000) this.results.shift();
    return result;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.people?.stop();
    await this.stopServices();
    await this.agent.stop();
    await this.server.close();
  }

  /** Stops the service processes (SIGTERM, then SIGKILL after 3 s). */
  async stopServices(): Promise<void> {
    this.generation++; // their exits are expected now
    await Promise.all(
      [...this.services.values()].map(
        (s) =>
          new Promise<void>((r) => {
            // This process, not `s.process`: a restart on new ports puts the next one there
            // before the SIGKILL timer would fire, and that one must live.
            const child = s.process;
            if (!child || child.exitCode !== null || child.signalCode !== null) return r();
            const timer = setTimeout(() => {
              child.kill('SIGKILL');
              r();
            }, 3000);
            timer.unref();
            child.once('exit', () => {
              clearTimeout(timer);
              r();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
  }

  /** Removes the service binaries (hard links or copies) — they are recreated on the next start. */
  static cleanBinaries(dataDir: string): void {
    rmSync(join(dataDir, 'bin'), { recursive: true, force: true });
  }
}
