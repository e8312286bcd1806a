/**
 * Flag choices copied into the command tree, so that building it does not load the module (and its
 * zod schemas) that defines the values. The compiler holds the copy to the original: every value of
 * `T`, and nothing else.
 *
 * @example
 * const LEVELS = exactly<LogLevel>()(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);
 */
export function exactly<T extends string>() {
  return <const A extends readonly T[]>(values: A & ([Exclude<T, A[number]>] extends [never] ? unknown : never)): A =>
    values;
}
