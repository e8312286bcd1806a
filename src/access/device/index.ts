/** Devices (issue #22): the device's key and identity, and its posture collector. */
export * from './posture/index.js';
