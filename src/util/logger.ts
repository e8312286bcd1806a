import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * Structured JSON logs on stdout. Secrets never reach a log: known secret-bearing fields are redacted
 * as a second line of defence behind not logging them in the first place.
 */
export function createLogger(level: string = 'info', destination: NodeJS.WritableStream = process.stdout): Logger {
  return pino(
    {
      level,
      base: { service: 'nevertrust' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['*.password', '*.token', '*.privateKey', '*.private_key', '*.key', 'req.headers.authorization'],
        censor: '[redacted]',
      },
    },
    destination as pino.DestinationStream,
  );
}
