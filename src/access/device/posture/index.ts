/** The Linux posture collector (issue #22): one module per signal, each a pure parser and a runner. */
export { collectPosture, type CollectPostureOptions, POSTURE_COLLECTOR_VERSION } from './collect.js';
export { collectDisk, parseLsblk } from './disk.js';
export { collectEdr, EXAMPLE_EDR_PROCESS_NAMES, matchEdr } from './edr.js';
export { type ProbeOptions, type ProbeResult, runProbe } from './exec.js';
export {
  collectFirewall,
  combineFirewall,
  parseFirewalldState,
  parseIptablesRules,
  parseNftRuleset,
  parseUfwStatus,
} from './firewall.js';
export { collectKernel, collectOs, parseOsRelease } from './os.js';
export { collectUpdates, parseAptCheck, parseAptGetSimulation } from './updates.js';
