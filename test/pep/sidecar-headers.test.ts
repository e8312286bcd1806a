/**
 * The request head the sidecar writes to an app or a tunnel: every byte is one the sidecar can
 * vouch for. Values from Node's parser are latin1 strings; a value the sidecar adds (a user name
 * from a claim, say) could hold characters whose low byte is CR or LF if written as latin1.
 */
import { describe, expect, it } from 'vitest';
import { HeaderValueError, requestHead } from '../../src/pep/sidecar/headers.js';

describe('requestHead', () => {
  it('writes the request line and each header, repeats as separate lines', () => {
    expect(requestHead('GET', '/v1/x', { host: 'ps', 'set-cookie': ['a=1', 'b=2'], 'x-latin1': 'caf\u00e9' })).toBe(
      'GET /v1/x HTTP/1.1\r\nhost: ps\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nx-latin1: caf\u00e9\r\n\r\n',
    );
  });

  it.each([
    ['CR LF', 'alice\r\nx-nevertrust-peer-id: spiffe://example.org/admin'],
    ['a bare LF', 'alice\nx-evil: 1'],
    ['NUL', 'a\u0000b'],
    // as latin1, U+010A would be written as its low byte: 0x0A, a line feed
    ['U+010D U+010A (low bytes CR LF)', 'alice\u010d\u010ax-evil: 1'],
    ['a character beyond latin1', '\u7528\u6237'],
  ])('refuses a value with %s', (_what, value) => {
    expect(() => requestHead('GET', '/', { 'x-nevertrust-user': value })).toThrow(HeaderValueError);
  });

  it('refuses a method that is not a token and a target with a space or a control character', () => {
    expect(() => requestHead('GET /admin HTTP/1.1\r\nx:', '/', {})).toThrow(HeaderValueError);
    expect(() => requestHead('GET', '/v1/a HTTP/1.1\r\nHost: x\r\n\r\nGET /admin', {})).toThrow(HeaderValueError);
    expect(() => requestHead('GET', '/v1/a b', {})).toThrow(HeaderValueError);
    expect(() => requestHead('GET', '', {})).toThrow(HeaderValueError);
    expect(requestHead('GET', '/v1/a?b=%20&c=caf\u00e9', {})).toBe('GET /v1/a?b=%20&c=caf\u00e9 HTTP/1.1\r\n\r\n');
  });

  it('refuses a header name that is not a token', () => {
    expect(() => requestHead('GET', '/', { 'x evil': '1' })).toThrow(HeaderValueError);
    expect(() => requestHead('GET', '/', { 'x-a\r\nx-b': '1' })).toThrow(HeaderValueError);
  });
});
