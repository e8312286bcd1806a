import QRCode from 'qrcode';

/**
 * A QR code of `text` as an SVG document, rendered by the server (no script, no external image), for
 * the TOTP enrollment page.
 *
 * @example
 * const svg = await qrSvg('otpauth://totp/nevertrust:alice?secret=…');
 */
export function qrSvg(text: string): Promise<string> {
  return QRCode.toString(text, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
}
