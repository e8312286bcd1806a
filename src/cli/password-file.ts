import { readFileSync } from 'node:fs';
import { CliError } from './errors.js';

/**
 * The password in `file` (`--password-file`), one trailing newline dropped; a file that cannot be
 * read is a usage error naming it.
 */
export function readPasswordFile(file: string): string {
  try {
    return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  } catch (e) {
    throw new CliError(`--password-file: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`, 2);
  }
}
