import type { Command } from 'commander';
import { VERSION } from '../version.js';

export function registerVersionCommand(program: Command): void {
  program
    .command('version')
    .description('print the nevertrust version (with --json: version, Node.js and platform)')
    .option('--json', 'machine-readable output')
    .addHelpText('after', '\nExamples:\n  $ nevertrust version\n  $ nevertrust version --json')
    .action((opts: { json?: boolean }) => {
      if (opts.json) {
        process.stdout.write(
          `${JSON.stringify({ version: VERSION, node: process.version, platform: `${process.platform}-${process.arch}` })}\n`,
        );
      } else process.stdout.write(`nevertrust ${VERSION}\n`);
    });
}
