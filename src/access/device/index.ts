/** Devices (issue #22): the device's key and identity, and its posture collector. */
export { DeviceError, type DeviceErrorCode } from './errors.js';
export { createDeviceCsr, type DeviceKey, deviceSpiffeId, FileDeviceKey, isDeviceSpiffeId } from './key.js';
export * from './posture/index.js';
