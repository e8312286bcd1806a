/*
 * peercred: the peer credentials (pid, uid, gid) of a connected Unix socket,
 * read with getsockopt(SO_PEERCRED). Node exposes no such API, and the SPIFFE
 * Workload API must identify its caller out of band, from the kernel, never from
 * anything the caller says.
 *
 * getPeerCred(fd: number) -> { pid: number, uid: number, gid: number }
 * Throws an Error (code = errno name, e.g. "ENOTSOCK") when getsockopt fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <node_api.h>

static napi_value throw_errno(napi_env env, int err, const char *what) {
  char msg[256];
  const char *code = "EUNKNOWN";
  switch (err) {
    case EBADF: code = "EBADF"; break;
    case ENOTSOCK: code = "ENOTSOCK"; break;
    case ENOPROTOOPT: code = "ENOPROTOOPT"; break;
    case EINVAL: code = "EINVAL"; break;
    case ENOTCONN: code = "ENOTCONN"; break;
    default: break;
  }
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, code, msg);
  return NULL;
}

static napi_value set_int(napi_env env, napi_value obj, const char *name, double v) {
  napi_value num;
  if (napi_create_double(env, v, &num) != napi_ok) return NULL;
  if (napi_set_named_property(env, obj, name, num) != napi_ok) return NULL;
  return obj;
}

static napi_value get_peer_cred(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "getPeerCred(fd): fd is required");
    return NULL;
  }
  napi_valuetype t;
  if (napi_typeof(env, argv[0], &t) != napi_ok) return NULL;
  if (t != napi_number) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "getPeerCred(fd): fd must be a number");
    return NULL;
  }
  int32_t fd;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok) return NULL;
  if (fd < 0) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "getPeerCred(fd): fd must be >= 0");
    return NULL;
  }

  struct ucred cred;
  socklen_t len = sizeof cred;
  memset(&cred, 0, sizeof cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return throw_errno(env, errno, "getsockopt(SO_PEERCRED)");
  }
  /* A socket without a connected Unix peer reports pid 0 (e.g. socketpair edge cases, TCP on some kernels). */
  if (len != sizeof cred || cred.pid <= 0) {
    napi_throw_error(env, "ENOTCONN", "getsockopt(SO_PEERCRED): no peer process on this socket");
    return NULL;
  }

  napi_value obj;
  if (napi_create_object(env, &obj) != napi_ok) return NULL;
  if (!set_int(env, obj, "pid", (double)cred.pid)) return NULL;
  if (!set_int(env, obj, "uid", (double)cred.uid)) return NULL;
  if (!set_int(env, obj, "gid", (double)cred.gid)) return NULL;
  return obj;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "getPeerCred", NAPI_AUTO_LENGTH, get_peer_cred, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "getPeerCred", fn) != napi_ok) return NULL;
  return exports;
}
