/*
 * RFC 6962 hashing of a whole append batch in one call, on the OpenSSL Node links. In JavaScript
 * every leaf and node hash is a crypto call with its own string-to-bytes copy and Buffer (about
 * 3 µs each on a small VM, two per event); here a batch of events costs one call.
 *
 *   append(data, ends, stack, size) -> Buffer
 *     data:  the batch's leaves, concatenated (Uint8Array)
 *     ends:  Uint32Array, ends[i] = end offset of leaf i in data (ascending, last = data.length)
 *     stack: the tree's right edge before the batch, largest subtree first, 32 bytes each
 *            (one entry per set bit of `size`)
 *     size:  leaves in the tree before the batch (a safe integer below 2^53)
 *   returns n leaf hashes (SHA-256(0x00 || leaf)), then every interior node the batch completed
 *   (SHA-256(0x01 || left || right)) in completion order (by leaf, then level upwards), then the
 *   new right edge, largest first, 32 bytes each. The caller derives the nodes' levels and indexes
 *   and the edge's sizes from `size` and n; this file only hashes.
 */
#include <node_api.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>

#define HASH 32
#define MAX_EDGE 64

static int typed(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *count) {
  bool is_typed = false;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed) return 0;
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, count, data, &buffer, &offset) != napi_ok) return 0;
  return type == want;
}

static void leaf_hash(const unsigned char *p, size_t len, unsigned char *out) {
  static const unsigned char zero = 0;
  SHA256_CTX c;
  SHA256_Init(&c);
  SHA256_Update(&c, &zero, 1);
  SHA256_Update(&c, p, len);
  SHA256_Final(out, &c);
}

static void node_hash(const unsigned char *left, const unsigned char *right, unsigned char *out) {
  unsigned char buf[1 + 2 * HASH];
  buf[0] = 1;
  memcpy(buf + 1, left, HASH);
  memcpy(buf + 1 + HASH, right, HASH);
  SHA256(buf, sizeof buf, out);
}

static int popcount53(uint64_t v) {
  int n = 0;
  for (; v; v &= v - 1) n++;
  return n;
}

static napi_value append(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  const char *usage = "append(data: Uint8Array, ends: Uint32Array, stack: Uint8Array, size: number)";
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  unsigned char *data, *stack_in;
  uint32_t *ends;
  size_t data_len, n, stack_len;
  double size_d;
  if (!typed(env, argv[0], napi_uint8_array, (void **)&data, &data_len) ||
      !typed(env, argv[1], napi_uint32_array, (void **)&ends, &n) ||
      !typed(env, argv[2], napi_uint8_array, (void **)&stack_in, &stack_len) ||
      napi_get_value_double(env, argv[3], &size_d) != napi_ok) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  if (!(size_d >= 0 && size_d <= 9007199254740991.0) || size_d != (double)(uint64_t)size_d) {
    napi_throw_range_error(env, NULL, "size must be a safe non-negative integer");
    return NULL;
  }
  uint64_t size = (uint64_t)size_d;
  if (size + n > 9007199254740991ULL) {
    napi_throw_range_error(env, NULL, "the tree would exceed 2^53 leaves");
    return NULL;
  }
  int depth = popcount53(size);
  if (stack_len != (size_t)depth * HASH) {
    napi_throw_range_error(env, NULL, "stack must hold one 32-byte hash per set bit of size");
    return NULL;
  }
  uint32_t prev = 0;
  for (size_t i = 0; i < n; i++) {
    if (ends[i] < prev || ends[i] > data_len) {
      napi_throw_range_error(env, NULL, "ends must ascend within data");
      return NULL;
    }
    prev = ends[i];
  }
  /* Interior nodes completed: for each leaf index i, one per trailing one-bit of i. */
  size_t nodes = 0;
  for (uint64_t i = size; i < size + n; i++) {
    for (uint64_t v = i; v & 1; v >>= 1) nodes++;
  }
  int depth_after = popcount53(size + n);
  size_t out_len = (n + nodes + (size_t)depth_after) * HASH;
  void *out_data;
  napi_value out;
  if (napi_create_buffer(env, out_len == 0 ? 1 : out_len, &out_data, &out) != napi_ok) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  unsigned char *leaves = (unsigned char *)out_data;
  unsigned char *node_out = leaves + n * HASH;
  unsigned char edge[MAX_EDGE][HASH];
  memcpy(edge, stack_in, stack_len);
  int top = depth; /* entries in edge */
  uint64_t count = size;
  uint32_t start = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char h[HASH];
    leaf_hash(data + start, ends[i] - start, leaves + i * HASH);
    start = ends[i];
    memcpy(h, leaves + i * HASH, HASH);
    /* The leaf merges with an equal-sized subtree on the edge once per trailing one-bit of count. */
    for (uint64_t v = count; v & 1; v >>= 1) {
      top--;
      node_hash(edge[top], h, h);
      memcpy(node_out, h, HASH);
      node_out += HASH;
    }
    memcpy(edge[top], h, HASH);
    top++;
    count++;
  }
  memcpy(node_out, edge, (size_t)top * HASH);
  if (out_len == 0) {
    /* An empty batch on an empty tree: nothing to return. */
    if (napi_create_buffer(env, 0, &out_data, &out) != napi_ok) return NULL;
  }
  return out;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_value fn;
  if (napi_create_function(env, "append", NAPI_AUTO_LENGTH, append, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "append", fn) != napi_ok) return NULL;
  return exports;
}
