import { pino, type Logger } from 'pino';
import { redactSecretFields } from './secret-keys.js';

export type { Logger } from 'pino';

/**
 * Structured JSON logs on stdout. Secrets never reach a log: fields whose names are of a secret
 * family (`isSecretKey`: tokens, passwords, API/private/signing keys, session ids, cookies,
 * authorization…) are redacted at any depth, in log objects and child bindings, as a second line
 * of defence behind not logging them in the first place.
 */
export function createLogger(level: string = 'info', destination: NodeJS.WritableStream = process.stdout): Logger {
  const logger = pino(
    {
      level,
      base: { service: 'nevertrust' },
      timestamp: pino.stdTimeFunctions.isoTime,
      // One predicate with the audit log's scrubbing (pino's own `redact` takes fixed paths only).
      formatters: { log: redactSecretFields, bindings: redactSecretFields },
    },
    destination as pino.DestinationStream,
  );
  // pino applies the bindings formatter to the root only; children (which inherit this) scrub here.
  const child = logger.child as unknown as (this: Logger, b: pino.Bindings, o?: unknown) => Logger;
  logger.child = function (this: Logger, bindings: pino.Bindings, options?: unknown) {
    return child.call(this, redactSecretFields(bindings), options);
  } as unknown as Logger['child'];
  return logger;
}
