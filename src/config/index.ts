export { formatDuration, parseDuration } from '../util/duration.js';
export { type ConfigProblem, ConfigError, formatProblem } from './errors.js';
export {
  configLeafPaths,
  DEFAULT_CONFIG_FILE,
  ENV_PREFIX,
  envOverrides,
  type LoadConfigOptions,
  loadConfig,
  setIn,
} from './load.js';
export { type Config, type ConfigInput, configSchema, type LogLevel, logLevels } from './schema.js';
