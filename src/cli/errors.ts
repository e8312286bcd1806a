/** An error a command raises for a person: the message is the whole story, `exitCode` 1 (failure) or 2 (usage). */
export class CliError extends Error {
  readonly code = 'ERR_CLI';
  constructor(
    message: string,
    readonly exitCode: 1 | 2 = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}
