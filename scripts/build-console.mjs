#!/usr/bin/env node
/**
 * Builds the console's browser app (issue #24): bundles src/console/web/main.ts into
 * dist/console/app.js and src/console/web/app.css into dist/console/app.css, minified, with source
 * maps. Everything the page needs is in these two files: no CDN, no web worker (elkjs runs from its
 * bundled build in the page), no inline script or style (the console's CSP forbids both).
 *
 * Run by `npm run build` after tsc; `node scripts/build-console.mjs --watch` rebuilds on change.
 */
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { build, context } from 'esbuild';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist/console');

/** @type {import('esbuild').BuildOptions} */
const options = {
  absWorkingDir: root,
  entryPoints: [
    { in: 'src/console/web/main.ts', out: 'app' },
    { in: 'src/console/web/app.css', out: 'app' },
  ],
  outdir,
  bundle: true,
  minify: true,
  sourcemap: true,
  target: 'es2022',
  format: 'esm',
  // The graph page's libraries (cytoscape, elkjs) are a chunk of their own, loaded by that page.
  splitting: true,
  chunkNames: 'chunk-[hash]',
  platform: 'browser',
  // elkjs's package entry (main.js) looks for a Worker; its bundled build lays out in the page.
  alias: { elkjs: 'elkjs/lib/elk.bundled.js' },
  legalComments: 'linked',
  logLevel: 'warning',
};

if (process.argv.includes('--watch')) {
  const ctx = await context(options);
  await ctx.watch();
  console.log(`watching src/console/web → ${outdir}`);
} else {
  // Chunk names carry a content hash: start clean so that no stale chunk is shipped.
  rmSync(outdir, { recursive: true, force: true });
  const result = await build({ ...options, metafile: true });
  for (const [file, out] of Object.entries(result.metafile.outputs)) {
    if (!file.endsWith('.map')) console.log(`${file} ${(out.bytes / 1024).toFixed(0)} KiB`);
  }
}
