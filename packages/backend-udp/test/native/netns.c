/* Test helper: moves the calling thread into a network namespace and back,
 * so that a test can open the udp datapath (TUN and socket) in a namespace it
 * created while the rest of the process stays where it was. A thread's
 * network namespace is its own; devices and sockets keep the namespace they
 * were created in.
 *
 * enter(path) -> fd of the namespace the thread was in (give it to leave)
 * leave(fd)   -> back into that namespace; closes fd
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static napi_value fail(napi_env env, const char *what) {
  char msg[160];
  int e = errno;
  snprintf(msg, sizeof(msg), "%s: %s", what, strerror(e));
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static napi_value enter(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value a;
  char path[512];
  size_t len;
  if (napi_get_cb_info(env, info, &argc, &a, NULL, NULL) != napi_ok || argc != 1 ||
      napi_get_value_string_utf8(env, a, path, sizeof(path), &len) != napi_ok) {
    napi_throw_error(env, NULL, "enter(path)");
    return NULL;
  }
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) return fail(env, "open /proc/thread-self/ns/net");
  int target = open(path, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    close(self);
    return fail(env, path);
  }
  int rc = setns(target, CLONE_NEWNET);
  close(target);
  if (rc < 0) {
    close(self);
    return fail(env, "setns");
  }
  napi_value out;
  napi_create_int32(env, self, &out);
  return out;
}

static napi_value leave(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value a;
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, &a, NULL, NULL) != napi_ok || argc != 1 ||
      napi_get_value_int32(env, a, &fd) != napi_ok) {
    napi_throw_error(env, NULL, "leave(fd)");
    return NULL;
  }
  int rc = setns(fd, CLONE_NEWNET);
  close(fd);
  if (rc < 0) return fail(env, "setns back");
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor d[] = {
      {"enter", NULL, enter, NULL, NULL, NULL, napi_default, NULL},
      {"leave", NULL, leave, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(d) / sizeof(d[0]), d);
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
