/** Runs Debian's nginx as a child process with its own prefix, config and ports (tests and benchmarks). */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const NGINX = '/usr/sbin/nginx';
export const hasNginx = (): boolean => existsSync(NGINX);

export interface RunningNginx {
  child: ChildProcess;
  log: () => string;
  stop(): Promise<void>;
}

/** Starts nginx with `http` block contents `httpBody`, waiting until `port` accepts connections. */
export async function startNginx(dir: string, httpBody: string, port: number, workers = 1): Promise<RunningNginx> {
  mkdirSync(join(dir, 'logs'), { recursive: true });
  const conf = join(dir, 'nginx.conf');
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  writeFileSync(
    conf,
    `${user}worker_processes ${workers};
error_log ${join(dir, 'logs', 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${join(dir, 'body')};
  proxy_temp_path ${join(dir, 'proxy')};
  fastcgi_temp_path ${join(dir, 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'uwsgi')};
  scgi_temp_path ${join(dir, 'scgi')};
${httpBody}
}
`,
  );
  let out = '';
  const child = spawn(NGINX, ['-p', dir, '-c', conf, '-g', `daemon off; pid ${join(dir, 'nginx.pid')};`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (out += d));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited: ${out}`);
    const ok = await new Promise<boolean>((r) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`nginx did not listen on ${port}: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    child,
    log: () => out,
    async stop() {
      if (child.exitCode === null) child.kill('SIGQUIT');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Where the documented nginx configuration lives (the first `nginx` block of the page). */
export const NGINX_DOC = fileURLToPath(new URL('../../docs/enforcement.md', import.meta.url));

/**
 * The nginx `server` block of docs/enforcement.md, with only its ports and file paths replaced, so
 * that tests run exactly what the docs tell operators to run. Each replacement must match exactly
 * once: a doc edit that moves one of them fails here instead of silently testing something else.
 */
export function documentedNginxServer(o: {
  port: number;
  cert: string;
  key: string;
  decisionPort: number;
  appPort: number;
}): string {
  const doc = readFileSync(NGINX_DOC, 'utf8');
  const block = /```nginx\n([\s\S]*?)```/.exec(doc)?.[1];
  if (!block) throw new Error(`${NGINX_DOC}: no \`\`\`nginx block`);
  const swaps: [string, string][] = [
    ['listen 443 ssl;', `listen 127.0.0.1:${o.port} ssl;`],
    ['/etc/nginx/tls/server.crt', o.cert],
    ['/etc/nginx/tls/server.key', o.key],
    ['http://127.0.0.1:8181/', `http://127.0.0.1:${o.decisionPort}/`],
    ['http://127.0.0.1:8080;', `http://127.0.0.1:${o.appPort};`],
  ];
  let out = block;
  for (const [from, to] of swaps) {
    const n = out.split(from).length - 1;
    if (n !== 1) throw new Error(`${NGINX_DOC}: expected "${from}" once in the nginx block, found it ${n} times`);
    out = out.replace(from, to);
  }
  return out;
}
