/** Devices (issue #22): the device's key and identity, and its posture collector. */
export { DeviceError, type DeviceErrorCode } from './errors.js';
export { createDeviceCsr, type DeviceKey, deviceIdOf, deviceSpiffeId, FileDeviceKey } from './key.js';
export * from './posture/index.js';
export { derToJoseEs256, signPostureReport } from './report-jws.js';
export {
  DEVICE_DIR_ENV,
  type DeviceInfo,
  DeviceState,
  deviceInfoSchema,
  resolveDeviceDir,
  writeFileAtomic,
} from './state.js';
export {
  collectDeviceReport,
  defaultDeviceId,
  deviceCertNotAfter,
  type EnrollOptions,
  type EnrollToken,
  enrollDevice,
  fetchPinnedRoot,
  parseEnrollToken,
  renewDevice,
  sendDeviceReport,
} from './client.js';
export {
  type DaemonOps,
  DEFAULT_CHECK_MS,
  DEFAULT_REPORT_INTERVAL_MS,
  type DeviceDaemonOptions,
  halfLife,
  reportFacts,
  runDeviceDaemon,
} from './daemon.js';
