/** An error a command raises for a person: the message is the whole story, `exitCode` 1 (failure) or 2 (usage). */
import { NevertrustError } from '../errors.js';
export class CliError extends NevertrustError<'ERR_CLI'> {
  override readonly name = 'CliError';
  readonly code = 'ERR_CLI';
  constructor(
    message: string,
    readonly exitCode: 1 | 2 = 1,
  ) {
    // Exit 2 is the user's mistake (usage), exit 1 a failure at run time.
    super(message, { status: exitCode === 2 ? 400 : 500 });
  }
}
