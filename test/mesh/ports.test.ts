/**
 * A service port taken between the mesh choosing it and the service binding it (another process
 * got it meanwhile) does not fail `nevertrust up`: the services start again on new ports.
 */
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { serverPlugins } from '../../src/cli/server-plugins.js';
import { loadConfig } from '../../src/config/index.js';
import { LocalMesh } from '../../src/mesh/local-mesh.js';
import { STEPS, type Step } from '../../src/mesh/scenario.js';
import { createLogger } from '../../src/util/logger.js';
import { tempDir } from '../support/tmp.js';

let squatter: Server | undefined;
afterAll(() => squatter?.close());

describe('local mesh ports', () => {
  it('starts the services again on new ports when one was taken meanwhile', async () => {
    squatter = createServer();
    await new Promise<void>((r) => squatter?.listen(0, '127.0.0.1', () => r()));
    const taken = (squatter.address() as { port: number }).port;
    const dir = tempDir();
    const config = loadConfig({
      env: {},
      cwd: dir,
      overrides: { data_dir: join(dir, 'data'), server: { port: 0, agent_port: 0 } },
    });
    const lines: string[] = [];
    const logger = createLogger('warn', {
      write: (l: string) => {
        lines.push(l);
        return true;
      },
    } as unknown as NodeJS.WritableStream);
    let calls = 0;
    const free = async () =>
      new Promise<number>((resolve) => {
        const s = createServer();
        s.listen(0, '127.0.0.1', () => {
          const p = (s.address() as { port: number }).port;
          s.close(() => resolve(p));
        });
      });
    // the first service port handed out is one another process holds
    const choosePort = async () => (calls++ === 0 ? taken : free());
    const mesh = await LocalMesh.start({ config, logger, plugins: serverPlugins(config), choosePort });
    try {
      const ports = [...mesh.services.values()].map((s) => s.port);
      expect(ports).not.toContain(taken);
      expect(lines.some((l) => l.includes('a service port was taken meanwhile'))).toBe(true);
      // Past the 3 s after which stopping the first services escalates to SIGKILL: that must have
      // reached only those, not the services started again on new ports.
      await new Promise((r) => setTimeout(r, 3500));
      expect([...mesh.services.values()].every((s) => s.process?.exitCode === null && !s.process.signalCode)).toBe(
        true,
      );
      // and the mesh works: the first allowed call of the scenario goes through
      const step = STEPS.find((s) => s.kind === 'allowed') as Step;
      const r = await mesh.run(step);
      expect(r.asExpected, r.detail).toBe(true);
    } finally {
      await mesh.stop();
    }
  }, 120_000);
});
