/**
 * Every command in the docs works as written. For README.md and each docs/*.md, the fenced ```sh
 * blocks whose first line is a marker comment are run in document order, in a fresh directory:
 *
 *   # doc-test                               run with bash -euo pipefail; must exit 0
 *   # doc-test: background until <text>      long-running (server, agent, a service): started by this
 *                                            harness, ready when its output contains <text>, stopped
 *                                            when the file is done
 *
 * `nevertrust` / `npx nevertrust` run bin/nevertrust.js of this checkout (a shim on PATH); the ports
 * 8181, 8081 and 8443 are replaced by free ports, also exported as NEVERTRUST_SERVER_PORT and
 * NEVERTRUST_SERVER_AGENT_PORT; `examples/` and `node_modules/nevertrust` link to the checkout.
 * The convention is described for writers in docs/quickstart.md ("Checked commands").
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, freePort } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

interface DocBlock {
  file: string;
  line: number;
  kind: 'run' | 'background';
  ready?: string;
  script: string;
}

/** The marked ```sh blocks of one Markdown text, in order. */
function extractBlocks(file: string, text: string): DocBlock[] {
  const blocks: DocBlock[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(sh|bash|shell)\s*$/.test(lines[i] ?? '')) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i] ?? ''); i++) body.push(lines[i] ?? '');
    const marker = body[0]?.match(/^# doc-test(?::\s*background until (.+))?\s*$/);
    if (!marker) continue;
    blocks.push({
      file,
      line: start + 1,
      kind: marker[1] ? 'background' : 'run',
      ready: marker[1]?.trim(),
      script: body.slice(1).join('\n'),
    });
  }
  return blocks;
}

const docFiles = [
  'README.md',
  ...readdirSync(join(REPO, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`),
];
const byFile = docFiles
  .map((f) => ({ file: f, blocks: extractBlocks(f, readFileSync(join(REPO, f), 'utf8')) }))
  .filter((f) => f.blocks.length > 0);

interface Sandbox {
  dir: string;
  env: NodeJS.ProcessEnv;
  ports: Record<string, number>;
}

async function sandbox(): Promise<Sandbox> {
  const dir = tempDir('nevertrust-doc-');
  const bin = join(dir, '.doc-bin');
  mkdirSync(bin);
  const shim = join(bin, 'nevertrust');
  writeFileSync(shim, `#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`);
  chmodSync(shim, 0o755);
  symlinkSync(join(REPO, 'examples'), join(dir, 'examples'));
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(REPO, join(dir, 'node_modules', 'nevertrust'));
  const ports = { '8181': await freePort(), '8081': await freePort(), '8443': await freePort() };
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATH: `${bin}:${process.env.PATH ?? ''}`,
    NEVERTRUST_SERVER_PORT: String(ports['8181']),
    NEVERTRUST_SERVER_AGENT_PORT: String(ports['8081']),
  };
  for (const k of ['NEVERTRUST_DATA_DIR', 'NEVERTRUST_CONFIG', 'NEVERTRUST_ADMIN_TOKEN', 'SPIFFE_ENDPOINT_SOCKET'])
    delete env[k];
  return { dir, env, ports };
}

/** The block's text as it will run: our CLI, our ports. */
function prepare(script: string, ports: Record<string, number>): string {
  let s = script.replace(/\bnpx nevertrust\b/g, 'nevertrust');
  for (const [doc, real] of Object.entries(ports)) s = s.replace(new RegExp(`\\b${doc}\\b`, 'g'), String(real));
  return s;
}

function runBlock(sb: Sandbox, script: string, timeoutMs = 30_000) {
  return new Promise<{ code: number | null; output: string }>((resolveRun) => {
    const child = spawn('bash', ['-euo', 'pipefail', '-c', script], { cwd: sb.dir, env: sb.env });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolveRun({ code, output });
    });
  });
}

function startBlock(sb: Sandbox, script: string, ready: string, timeoutMs = 30_000) {
  return new Promise<ChildProcess>((resolveStart, reject) => {
    // Its own process group, so that stopping it stops whatever the block started.
    const child = spawn('bash', ['-euo', 'pipefail', '-c', script], { cwd: sb.dir, env: sb.env, detached: true });
    let output = '';
    const timer = setTimeout(() => {
      stop(child);
      reject(new Error(`not ready within ${timeoutMs} ms (waiting for "${ready}"):\n${output}`));
    }, timeoutMs);
    const onData = (d: Buffer) => {
      output += d.toString();
      if (output.includes(ready)) {
        clearTimeout(timer);
        resolveStart(child);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (!output.includes(ready)) reject(new Error(`exited with ${code} before ready:\n${output}`));
    });
  });
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return Promise.resolve();
  const closed = new Promise<void>((r) => child.once('close', () => r()));
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {}
  const kill = setTimeout(() => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {}
  }, 5_000);
  return closed.finally(() => clearTimeout(kill));
}

describe('commands in the docs work as written', () => {
  it('finds marked blocks, including the quickstart', () => {
    expect(byFile.map((f) => f.file)).toContain('docs/quickstart.md');
  });

  for (const { file, blocks } of byFile) {
    describe(file, () => {
      const background: ChildProcess[] = [];
      let sb: Sandbox;
      afterAll(async () => {
        for (const child of background.reverse()) await stop(child);
      });

      for (const [i, block] of blocks.entries()) {
        it(`block ${i + 1} (${file}:${block.line})${block.kind === 'background' ? ' in the background' : ''}`, async () => {
          sb ??= await sandbox();
          const script = prepare(block.script, sb.ports);
          if (block.kind === 'background') {
            background.push(await startBlock(sb, script, block.ready ?? ''));
            return;
          }
          const { code, output } = await runBlock(sb, script);
          expect(code, `${file}:${block.line} failed (exit ${code}):\n${script}\n--- output ---\n${output}`).toBe(0);
        }, 60_000);
      }
    });
  }
});
