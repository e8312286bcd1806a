/** Error kinds of a device's own side (its key, its identity). Messages never include key material. */
import { NevertrustError } from '../../errors.js';

export type DeviceErrorCode =
  | 'ERR_DEVICE_KEY_INSECURE'
  | 'ERR_DEVICE_KEY_INVALID'
  | 'ERR_DEVICE_KEY_EXISTS'
  | 'ERR_DEVICE_KEY_MISSING'
  | 'ERR_DEVICE_ID_INVALID'
  | 'ERR_DEVICE_NOT_ENROLLED'
  | 'ERR_DEVICE_STATE_INVALID'
  | 'ERR_DEVICE_SERVER_MISMATCH'
  | 'ERR_DEVICE_SERVER_REFUSED';

/** Codes that are the caller's doing (a bad id, not enrolled yet, a token for another server, a refusal). */
const CALLER_FAULTS = new Set<DeviceErrorCode>([
  'ERR_DEVICE_ID_INVALID',
  'ERR_DEVICE_NOT_ENROLLED',
  'ERR_DEVICE_SERVER_MISMATCH',
  'ERR_DEVICE_SERVER_REFUSED',
]);

/** Thrown by the device key and identity helpers; `code` names the broken rule. */
export class DeviceError extends NevertrustError<DeviceErrorCode> {
  override readonly name = 'DeviceError';
  constructor(
    readonly code: DeviceErrorCode,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    // A key file or state directory problem is this machine's (internal).
    super(message, { status: CALLER_FAULTS.has(code) ? 400 : 500, cause: options.cause });
  }
}
