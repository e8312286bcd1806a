/**
 * What every command needs from the global flags: the validated configuration and a logger.
 * Flags override the environment, which overrides the file, which overrides the defaults.
 *
 * This module is part of the command tree, so it stays light: the configuration loader (zod, yaml)
 * and the logger (pino) are imported only when a command's action asks for them.
 */
import type { Command } from 'commander';
import type { Config } from '../config/index.js';
import type { Logger } from '../util/logger.js';

export interface GlobalOptions {
  config?: string;
  dataDir?: string;
  logLevel?: string;
}

/** A command flag that sets a config field: `{ flag: '--port', option: 'port', field: ['server', 'port'] }`. */
export interface FlagBinding {
  flag: string;
  option: string;
  field: string[];
  parse?: (v: string) => unknown;
}

export const GLOBAL_BINDINGS: FlagBinding[] = [
  { flag: '--data-dir', option: 'dataDir', field: ['data_dir'] },
  { flag: '--log-level', option: 'logLevel', field: ['log_level'] },
];

export async function resolveConfig(cmd: Command, bindings: FlagBinding[] = []): Promise<Config> {
  const { loadConfig, setIn } = await import('../config/load.js');
  const opts = cmd.optsWithGlobals<GlobalOptions & Record<string, unknown>>();
  const overrides: Record<string, unknown> = {};
  const flagNames: Record<string, string> = {};
  for (const b of [...GLOBAL_BINDINGS, ...bindings]) {
    const raw = opts[b.option];
    if (raw === undefined) continue;
    setIn(overrides, b.field, b.parse && typeof raw === 'string' ? b.parse(raw) : raw);
    flagNames[b.field.join('.')] = b.flag;
  }
  return loadConfig({ file: opts.config, overrides, flagNames });
}

export async function commandLogger(config: Config): Promise<Logger> {
  const { createLogger } = await import('../util/logger.js');
  return createLogger(config.log_level);
}

/** Parses a flag value as an integer, leaving validation (range, type) to the config schema. */
export function intFlag(v: string): unknown {
  return /^-?\d+$/.test(v) ? Number(v) : v;
}
