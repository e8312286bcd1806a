/** Error kinds of a device's own side (its key, its identity). Messages never include key material. */
import { NevertrustError } from '../../errors.js';

export type DeviceErrorCode =
  | 'ERR_DEVICE_KEY_INSECURE'
  | 'ERR_DEVICE_KEY_INVALID'
  | 'ERR_DEVICE_KEY_EXISTS'
  | 'ERR_DEVICE_KEY_MISSING'
  | 'ERR_DEVICE_ID_INVALID';

/** Thrown by the device key and identity helpers; `code` names the broken rule. */
export class DeviceError extends NevertrustError<DeviceErrorCode> {
  override readonly name = 'DeviceError';
  constructor(
    readonly code: DeviceErrorCode,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    // A bad device id is the caller's fault; a key file problem is this machine's (internal).
    super(message, { status: code === 'ERR_DEVICE_ID_INVALID' ? 400 : 500, cause: options.cause });
  }
}
