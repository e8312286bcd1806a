/*
 * ECDSA P-256 / SHA-256 signature check on a raw uncompressed public point, for CSR proof of
 * possession. Node's key import rebuilds the curve group and fully validates every key (about a
 * scalar multiplication); here the group is built once per thread and the point is only decoded,
 * which for a prime-order curve like P-256 (cofactor 1) still proves it is a valid public key:
 * EC_POINT_oct2point refuses points that are not on the curve, and the point at infinity has no
 * uncompressed encoding. Uses the OpenSSL that Node itself links.
 *
 *   verify(point: 65-byte 0x04||X||Y, message: bytes, signature: DER ECDSA-Sig-Value) -> boolean
 *   throws TypeError on a point that is not a valid P-256 point.
 */
#include <node_api.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/obj_mac.h>
#include <openssl/sha.h>

static __thread EC_GROUP *group;

static int bytes_of(napi_env env, napi_value v, unsigned char **data, size_t *len) {
  bool is_typed = false;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed) return 0;
  napi_typedarray_type type;
  size_t length;
  void *ptr;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, &length, &ptr, &buffer, &offset) != napi_ok) return 0;
  if (type != napi_uint8_array) return 0;
  *data = (unsigned char *)ptr;
  *len = length;
  return 1;
}

static napi_value verify(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3) {
    napi_throw_type_error(env, NULL, "verify(point, message, signature) takes three Uint8Arrays");
    return NULL;
  }
  unsigned char *point, *msg, *sig;
  size_t point_len, msg_len, sig_len;
  if (!bytes_of(env, argv[0], &point, &point_len) || !bytes_of(env, argv[1], &msg, &msg_len) ||
      !bytes_of(env, argv[2], &sig, &sig_len)) {
    napi_throw_type_error(env, NULL, "verify(point, message, signature) takes three Uint8Arrays");
    return NULL;
  }
  if (point_len != 65 || point[0] != 0x04) {
    napi_throw_type_error(env, NULL, "not an uncompressed P-256 point");
    return NULL;
  }
  if (!group) group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
  if (!group) {
    napi_throw_error(env, NULL, "P-256 group unavailable");
    return NULL;
  }
  EC_POINT *pub = EC_POINT_new(group);
  EC_KEY *key = EC_KEY_new();
  int result = -2;
  if (pub && key && EC_KEY_set_group(key, group) == 1) {
    /* oct2point checks that the point is on the curve. */
    if (EC_POINT_oct2point(group, pub, point, point_len, NULL) == 1 && EC_KEY_set_public_key(key, pub) == 1) {
      unsigned char digest[SHA256_DIGEST_LENGTH];
      SHA256(msg, msg_len, digest);
      result = ECDSA_verify(0, digest, sizeof digest, sig, (int)sig_len, key) == 1 ? 1 : 0;
    } else {
      result = -1;
    }
  }
  EC_KEY_free(key);
  EC_POINT_free(pub);
  if (result == -1) {
    napi_throw_type_error(env, NULL, "not a valid P-256 point");
    return NULL;
  }
  if (result == -2) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  napi_value out;
  napi_get_boolean(env, result == 1, &out);
  return out;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_value fn;
  if (napi_create_function(env, "verify", NAPI_AUTO_LENGTH, verify, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "verify", fn) != napi_ok) return NULL;
  return exports;
}
