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
 *
 * And the CA's ECDSA P-256 / SHA-256 signature on a certificate: Node's sign() sets up a fresh
 * provider context for every call (about a third of the signature's cost); here the key is
 * decoded once per CA generation and thread and kept in an opaque handle. Nonces come from
 * OpenSSL's own ECDSA code (private key, digest and fresh randomness), as with Node.
 *
 *   signer(pkcs8: DER PrivateKeyInfo of a P-256 key) -> opaque handle (key freed with the handle)
 *   sign(handle, message: bytes) -> Buffer, DER ECDSA-Sig-Value
 */
#include <node_api.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/obj_mac.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

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

/* Tags the handles this module made, so sign() never takes another module's external as a key. */
static const napi_type_tag SIGNER_TAG = {0x6e65766572747275ULL, 0x7374703235367367ULL};

static void free_signer(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  EC_KEY_free((EC_KEY *)data);
}

static napi_value signer(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  unsigned char *der;
  size_t der_len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 ||
      !bytes_of(env, argv[0], &der, &der_len) || der_len > 4096) {
    napi_throw_type_error(env, NULL, "signer(pkcs8) takes the DER PrivateKeyInfo as a Uint8Array");
    return NULL;
  }
  const unsigned char *p = der;
  EVP_PKEY *pkey = d2i_AutoPrivateKey(NULL, &p, (long)der_len);
  EC_KEY *key = pkey && EVP_PKEY_get_base_id(pkey) == EVP_PKEY_EC ? EVP_PKEY_get1_EC_KEY(pkey) : NULL;
  EVP_PKEY_free(pkey);
  const EC_GROUP *g = key ? EC_KEY_get0_group(key) : NULL;
  if (!g || EC_GROUP_get_curve_name(g) != NID_X9_62_prime256v1 || !EC_KEY_get0_private_key(key)) {
    EC_KEY_free(key);
    napi_throw_type_error(env, NULL, "not a P-256 private key");
    return NULL;
  }
  napi_value out;
  if (napi_create_external(env, key, free_signer, NULL, &out) != napi_ok ||
      napi_type_tag_object(env, out, &SIGNER_TAG) != napi_ok) {
    EC_KEY_free(key);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  return out;
}

static napi_value sign(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  bool tagged = false;
  void *data = NULL;
  unsigned char *msg;
  size_t msg_len;
  napi_valuetype kind = napi_undefined;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_typeof(env, argv[0], &kind) != napi_ok || kind != napi_external ||
      napi_check_object_type_tag(env, argv[0], &SIGNER_TAG, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, argv[0], &data) != napi_ok || !bytes_of(env, argv[1], &msg, &msg_len)) {
    napi_throw_type_error(env, NULL, "sign(signer, message) takes a handle from signer() and a Uint8Array");
    return NULL;
  }
  EC_KEY *key = (EC_KEY *)data;
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(msg, msg_len, digest);
  unsigned char sig[80];
  unsigned int sig_len = 0;
  if ((size_t)ECDSA_size(key) > sizeof sig || ECDSA_sign(0, digest, sizeof digest, sig, &sig_len, key) != 1) {
    napi_throw_error(env, NULL, "ECDSA signing failed");
    return NULL;
  }
  napi_value out;
  if (napi_create_buffer_copy(env, sig_len, sig, NULL, &out) != napi_ok) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  return out;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {{"verify", verify}, {"signer", signer}, {"sign", sign}};
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn) != napi_ok) return NULL;
    if (napi_set_named_property(env, exports, fns[i].name, fn) != napi_ok) return NULL;
  }
  return exports;
}
