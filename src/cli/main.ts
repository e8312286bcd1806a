/**
 * CLI entry point. Exit codes: 0 success, 1 failure at run time (port in use, unreachable database…),
 * 2 bad usage or bad configuration. Errors are one clear line (plus the relevant help for usage
 * errors), never a stack trace.
 */
import { type Command, CommanderError } from 'commander';
import { ConfigError } from '../config/index.js';
import { formatIssue, PolicyLoadError } from '../policy/index.js';
import { StoreOpenError } from '../store/index.js';
import { ServerStartError } from '../server/index.js';
import { CliError } from './errors.js';
import { buildProgram } from './program.js';

/** Errors whose message is already the whole story for a person. */
function isExpected(e: unknown): e is Error {
  return e instanceof StoreOpenError || e instanceof ServerStartError || e instanceof CliError;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  // Commander exits the process itself unless told not to, at every level of the tree.
  const override = (c: Command): void => {
    c.exitOverride();
    for (const sub of c.commands) override(sub);
  };
  override(program);
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version are "errors" to commander; they already printed.
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help')
        return 0;
      return 2;
    }
    if (e instanceof PolicyLoadError) {
      process.stderr.write(`nevertrust: policy rejected\n${e.issues.map(formatIssue).join('\n')}\n`);
      return 2;
    }
    if (e instanceof ConfigError) {
      process.stderr.write(`nevertrust: invalid configuration\n${e.message}\n`);
      return 2;
    }
    if (isExpected(e)) {
      process.stderr.write(`nevertrust: ${e.message}\n`);
      return e instanceof CliError ? e.exitCode : 1;
    }
    process.stderr.write(`nevertrust: unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return 1;
  }
}
