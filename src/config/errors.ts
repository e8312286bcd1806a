/** One problem in the configuration, located precisely enough to fix without guessing. */
import { NevertrustError } from '../errors.js';
export interface ConfigProblem {
  /** `nevertrust.yaml:3:9`, `environment variable NEVERTRUST_SERVER_PORT`, `flag --port`, or `defaults`. */
  where: string;
  file?: string;
  line?: number;
  column?: number;
  /** Dotted field path, e.g. `server.port`. */
  field: string;
  message: string;
  hint?: string;
}

/** Thrown for any bad configuration; its message is the whole human report, one problem per line. */
export class ConfigError extends NevertrustError<'ERR_CONFIG'> {
  override readonly name = 'ConfigError';
  readonly code = 'ERR_CONFIG';
  constructor(readonly problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join('\n'), { status: 400 });
  }
}

export function formatProblem(p: ConfigProblem): string {
  const field = p.field ? ` ${p.field}:` : '';
  return `${p.where}:${field} ${p.message}${p.hint ? ` (hint: ${p.hint})` : ''}`;
}
