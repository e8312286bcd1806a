#!/usr/bin/env node
// Thin launcher: the CLI lives in dist/ (built by `npm run build`, which `npm install` runs via `prepare`).
import { main } from '../dist/cli/main.js';

// Output piped into `head` and the like: a closed pipe ends the command quietly, as in other CLIs.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

main(process.argv).then(
  (code) => {
    if (typeof code === 'number') process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`nevertrust: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
