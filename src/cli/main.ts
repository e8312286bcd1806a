/**
 * CLI entry point. Exit codes: 0 success, 1 failure at run time (port in use, unreachable database…),
 * 2 bad usage or bad configuration. Errors are one clear line (plus the relevant help for usage
 * errors), never a stack trace.
 *
 * Only light modules are imported here: the error classes of heavy modules (the policy engine, the
 * server) are looked up when an error of that name arrives, by which time its module is loaded.
 */
import { type Command, CommanderError } from 'commander';
import { ConfigError } from '../config/errors.js';
import type { formatIssue as FormatIssue, PolicyLoadError as PolicyLoadErrorClass } from '../policy/yamldoc.js';
import { isNevertrustError } from '../errors.js';
import { CliError } from './errors.js';
import { buildProgram } from './program.js';

/** The policy engine's PolicyLoadError (and its formatter), if `e` is one. */
async function asPolicyLoadError(
  e: unknown,
): Promise<{ error: PolicyLoadErrorClass; format: typeof FormatIssue } | undefined> {
  if (!(e instanceof Error) || e.name !== 'PolicyLoadError') return undefined;
  const { PolicyLoadError, formatIssue } = await import('../policy/yamldoc.js');
  return e instanceof PolicyLoadError ? { error: e, format: formatIssue } : undefined;
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
    const policyError = await asPolicyLoadError(e);
    if (policyError) {
      process.stderr.write(
        `nevertrust: policy rejected\n${policyError.error.issues.map(policyError.format).join('\n')}\n`,
      );
      return 2;
    }
    if (e instanceof ConfigError) {
      process.stderr.write(`nevertrust: invalid configuration\n${e.message}\n`);
      return 2;
    }
    // Every error of ours is one line that already tells the whole story; a stack is only for bugs.
    if (isNevertrustError(e)) {
      process.stderr.write(`nevertrust: ${e.message}\n`);
      return e instanceof CliError ? e.exitCode : 1;
    }
    process.stderr.write(`nevertrust: unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return 1;
  }
}
