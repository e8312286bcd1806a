import { afterEach, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/index.js';
import { readBody, type RunningServer, sendJson, startServer } from '../../src/server/index.js';
import { createLogger } from '../../src/util/logger.js';
import { tempDir } from '../support/tmp.js';

const logger = createLogger('silent');
const running: RunningServer[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) await s.close();
});

function config(extra: Record<string, unknown> = {}) {
  return configSchema.parse({ data_dir: tempDir(), server: { port: 0, shutdown_timeout: 5 }, ...extra });
}

describe('server process', () => {
  it('graceful shutdown: stops accepting, finishes in-flight requests, then closes the store', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    let pluginClosed = false;
    const server = await startServer({
      config: config(),
      logger,
      plugins: [
        {
          name: 'slow',
          register: ({ router }) => {
            router.on('GET', '/slow', async (_req, res) => {
              entered();
              await gate;
              sendJson(res, 200, { done: true });
            });
          },
          close: () => {
            pluginClosed = true;
          },
        },
      ],
    });
    const inflight = fetch(`${server.url}/slow`);
    await inside;
    const closing = server.close();
    // New connections are refused while the in-flight request is still running.
    await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();
    expect(pluginClosed).toBe(false);
    release();
    const res = await inflight;
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ done: true });
    await closing;
    expect(pluginClosed).toBe(true);
    await expect(server.store.ping()).rejects.toThrow();
  });

  it('an oversized body is refused with 413, and a handler error is a 500 without internals', async () => {
    const server = await startServer({
      config: config(),
      logger,
      plugins: [
        {
          name: 'echo',
          register: ({ router }) => {
            router.on('POST', '/echo', async (req, res) =>
              sendJson(res, 200, { n: (await readBody(req, 1024)).length }),
            );
            router.on('GET', '/boom', () => {
              throw new Error('secret internal detail');
            });
          },
        },
      ],
    });
    running.push(server);
    expect((await fetch(`${server.url}/echo`, { method: 'POST', body: 'x'.repeat(10) })).status).toBe(200);
    const big = await fetch(`${server.url}/echo`, { method: 'POST', body: 'x'.repeat(4096) });
    expect(big.status).toBe(413);
    const boom = await fetch(`${server.url}/boom`);
    expect(boom.status).toBe(500);
    expect(await boom.text()).not.toContain('secret internal detail');
  });

  it('a plugin that fails to register stops the start and releases the port', async () => {
    const cfg = config();
    await expect(
      startServer({
        config: cfg,
        logger,
        plugins: [
          {
            name: 'bad',
            register: () => {
              throw new Error('plugin failed');
            },
          },
        ],
      }),
    ).rejects.toThrow('plugin failed');
  });
});
