/** Asking a person before a command destroys something; `--yes` skips the question in scripts. */
import { createInterface } from 'node:readline';

/**
 * Asks `question` on stderr and reads one line from stdin: true only for `y` or `yes`. No answer
 * (stdin closed or not a terminal with nothing piped) is a no.
 *
 * @example
 * if (!o.yes && !(await confirm('Reset MFA for alice?'))) throw new CliError('aborted: nothing changed');
 */
export function confirm(question: string): Promise<boolean> {
  return new Promise((resolveAnswer) => {
    const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: process.stdin.isTTY });
    let answered = false;
    rl.on('close', () => {
      if (!answered) {
        process.stderr.write('\n');
        resolveAnswer(false);
      }
    });
    rl.question(`${question} [y/N] `, (a) => {
      answered = true;
      rl.close();
      resolveAnswer(/^\s*y(es)?\s*$/i.test(a));
    });
  });
}
