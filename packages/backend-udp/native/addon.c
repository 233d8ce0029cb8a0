/* N-API glue: TUN open and the forwarding loop's control surface. */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>

#include "loop.h"
#include "offload.h"

#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, "EINVAL", "invalid arguments: " #call); \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

static void throw_errno(napi_env env, int err, const char *what) {
  char msg[256];
  snprintf(msg, sizeof(msg), "%s: %s", what, strerror(err));
  const char *name = strerrorname_np(err);
  napi_throw_error(env, name ? name : "EIO", msg);
}

static int get_string(napi_env env, napi_value v, char *buf, size_t len) {
  size_t n;
  return napi_get_value_string_utf8(env, v, buf, len, &n) == napi_ok ? 0 : -1;
}

static int get_ip4(napi_env env, napi_value v, uint32_t *out) {
  char s[64];
  if (get_string(env, v, s, sizeof(s)) < 0) return -1;
  struct in_addr a;
  if (inet_pton(AF_INET, s, &a) != 1) return -1;
  *out = a.s_addr;
  return 0;
}

static napi_value prop(napi_env env, napi_value obj, const char *name) {
  napi_value v;
  if (napi_get_named_property(env, obj, name, &v) != napi_ok) return NULL;
  return v;
}

static int prop_int(napi_env env, napi_value obj, const char *name, int32_t *out) {
  napi_value v = prop(env, obj, name);
  return v && napi_get_value_int32(env, v, out) == napi_ok ? 0 : -1;
}

static int prop_bool(napi_env env, napi_value obj, const char *name, bool *out) {
  napi_value v = prop(env, obj, name);
  return v && napi_get_value_bool(env, v, out) == napi_ok ? 0 : -1;
}

/* openTun(name, vnetHdr) -> { fd, name } */
static napi_value open_tun(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[IFNAMSIZ];
  bool vnet = false;
  if (argc < 2 || get_string(env, argv[0], name, sizeof(name)) < 0 ||
      napi_get_value_bool(env, argv[1], &vnet) != napi_ok) {
    napi_throw_error(env, "EINVAL", "openTun(name: string, vnetHdr: boolean)");
    return NULL;
  }
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    throw_errno(env, errno, "open /dev/net/tun");
    return NULL;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0);
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    close(fd);
    throw_errno(env, e, "TUNSETIFF");
    return NULL;
  }
  if (vnet && offload_setup_tun(fd) < 0) {
    int e = errno;
    close(fd);
    throw_errno(env, e, "TUNSETOFFLOAD");
    return NULL;
  }
  napi_value out, v;
  CHECK(napi_create_object(env, &out));
  CHECK(napi_create_int32(env, fd, &v));
  CHECK(napi_set_named_property(env, out, "fd", v));
  CHECK(napi_create_string_utf8(env, ifr.ifr_name, NAPI_AUTO_LENGTH, &v));
  CHECK(napi_set_named_property(env, out, "name", v));
  return out;
}

/* closeFd(fd): releases a TUN fd that never reached a loop. */
static napi_value close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  close(fd);
  return NULL;
}

static void finalize_loop(napi_env env, void *data, void *hint) { loop_free(data); }

static loop_t *get_loop(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p) {
    napi_throw_error(env, "EINVAL", "not a loop handle");
    return NULL;
  }
  return p;
}

/* createLoop({ tunFd, bindAddr, port, tunAddr, mtu, mode, batch, verifySource, vnetHdr }) */
static napi_value create_loop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value o;
  CHECK(napi_get_cb_info(env, info, &argc, &o, NULL, NULL));
  loop_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  int32_t fd, port, mtu, mode, batch;
  bool verify, vnet;
  if (argc < 1 || prop_int(env, o, "tunFd", &fd) < 0 || prop_int(env, o, "port", &port) < 0 ||
      prop_int(env, o, "mtu", &mtu) < 0 || prop_int(env, o, "mode", &mode) < 0 ||
      prop_int(env, o, "batch", &batch) < 0 || prop_bool(env, o, "verifySource", &verify) < 0 ||
      prop_bool(env, o, "vnetHdr", &vnet) < 0 || get_ip4(env, prop(env, o, "bindAddr"), &cfg.bind_addr) < 0 ||
      get_ip4(env, prop(env, o, "tunAddr"), &cfg.tun_addr) < 0 || port < 0 || port > 65535 ||
      mtu < 68 || mtu > 65535 || mode < MODE_SINGLE || mode > MODE_OFFLOAD || batch < 1 || batch > 1024) {
    napi_throw_error(env, "EINVAL", "createLoop: invalid configuration");
    return NULL;
  }
  cfg.tun_fd = fd;
  cfg.port = (uint16_t)port;
  cfg.mtu = mtu;
  cfg.mode = mode;
  cfg.batch = batch;
  cfg.verify_source = verify;
  cfg.vnet_hdr = vnet;
  char err[256] = "";
  loop_t *l = loop_create(&cfg, err, sizeof(err));
  if (!l) {
    napi_throw_error(env, "ELOOP_CREATE", err);
    return NULL;
  }
  napi_value ext;
  if (napi_create_external(env, l, finalize_loop, NULL, &ext) != napi_ok) {
    loop_free(l);
    napi_throw_error(env, "ENOMEM", "createLoop: cannot wrap the loop");
    return NULL;
  }
  return ext;
}

static napi_value start_loop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value h;
  CHECK(napi_get_cb_info(env, info, &argc, &h, NULL, NULL));
  loop_t *l = get_loop(env, h);
  if (!l) return NULL;
  char err[256] = "";
  if (loop_start(l, err, sizeof(err)) < 0) napi_throw_error(env, "ETHREAD", err);
  return NULL;
}

static napi_value stop_loop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value h;
  CHECK(napi_get_cb_info(env, info, &argc, &h, NULL, NULL));
  loop_t *l = get_loop(env, h);
  if (l) loop_stop(l);
  return NULL;
}

/* setPeer(h, net, prefix, addr, port) */
static napi_value set_peer(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value a[5];
  CHECK(napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  loop_t *l = argc == 5 ? get_loop(env, a[0]) : NULL;
  if (!l) return NULL;
  uint32_t net, addr;
  int32_t prefix, port;
  if (get_ip4(env, a[1], &net) < 0 || napi_get_value_int32(env, a[2], &prefix) != napi_ok ||
      get_ip4(env, a[3], &addr) < 0 || napi_get_value_int32(env, a[4], &port) != napi_ok ||
      prefix < 0 || prefix > 32 || port < 1 || port > 65535) {
    napi_throw_error(env, "EINVAL", "setPeer(handle, net, prefix, addr, port)");
    return NULL;
  }
  if (peers_set(loop_peers(l), net, prefix, addr, htons((uint16_t)port)) < 0)
    napi_throw_error(env, "ENOMEM", "setPeer: out of memory");
  return NULL;
}

/* delPeer(h, net, prefix) -> boolean */
static napi_value del_peer(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value a[3];
  CHECK(napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  loop_t *l = argc == 3 ? get_loop(env, a[0]) : NULL;
  if (!l) return NULL;
  uint32_t net;
  int32_t prefix;
  if (get_ip4(env, a[1], &net) < 0 || napi_get_value_int32(env, a[2], &prefix) != napi_ok ||
      prefix < 0 || prefix > 32) {
    napi_throw_error(env, "EINVAL", "delPeer(handle, net, prefix)");
    return NULL;
  }
  napi_value out;
  CHECK(napi_get_boolean(env, peers_del(loop_peers(l), net, prefix) == 1, &out));
  return out;
}

static napi_value counters(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value h;
  CHECK(napi_get_cb_info(env, info, &argc, &h, NULL, NULL));
  loop_t *l = get_loop(env, h);
  if (!l) return NULL;
  loop_counters_t *c = loop_counters(l);
  napi_value out, v;
  CHECK(napi_create_object(env, &out));
#define X(name)                                                                                   \
  CHECK(napi_create_double(env, (double)atomic_load_explicit(&c->name, memory_order_relaxed), &v)); \
  CHECK(napi_set_named_property(env, out, #name, v));
  LOOP_COUNTERS(X)
#undef X
  CHECK(napi_create_int32(env, peers_count(loop_peers(l)), &v));
  CHECK(napi_set_named_property(env, out, "peers", v));
  return out;
}

static napi_value ip4_string(napi_env env, uint32_t addr) {
  char buf[INET_ADDRSTRLEN];
  napi_value v;
  inet_ntop(AF_INET, &addr, buf, sizeof(buf));
  if (napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &v) != napi_ok) return NULL;
  return v;
}

/* listPeers(h) -> [{ net, prefix, addr, port }], longest prefix first: the table as the loop reads it. */
static napi_value list_peers(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value h;
  CHECK(napi_get_cb_info(env, info, &argc, &h, NULL, NULL));
  loop_t *l = get_loop(env, h);
  if (!l) return NULL;
  peer_t *items = NULL;
  int n = peers_count(loop_peers(l));
  for (;;) {
    peer_t *grown = realloc(items, sizeof(peer_t) * (size_t)(n > 0 ? n : 1));
    if (!grown) {
      free(items);
      napi_throw_error(env, "ENOMEM", "listPeers: out of memory");
      return NULL;
    }
    items = grown;
    int now = peers_copy(loop_peers(l), items, n);
    if (now <= n) {
      n = now;
      break;
    }
    n = now; /* the table grew meanwhile: copy again */
  }
  napi_value out, o, v;
  if (napi_create_array_with_length(env, (size_t)n, &out) != napi_ok) goto fail;
  for (int i = 0; i < n; i++) {
    if (napi_create_object(env, &o) != napi_ok) goto fail;
    if (!(v = ip4_string(env, items[i].net)) || napi_set_named_property(env, o, "net", v) != napi_ok) goto fail;
    if (napi_create_int32(env, items[i].prefix, &v) != napi_ok || napi_set_named_property(env, o, "prefix", v) != napi_ok)
      goto fail;
    if (!(v = ip4_string(env, items[i].addr)) || napi_set_named_property(env, o, "addr", v) != napi_ok) goto fail;
    if (napi_create_int32(env, ntohs(items[i].port), &v) != napi_ok || napi_set_named_property(env, o, "port", v) != napi_ok)
      goto fail;
    if (napi_set_element(env, out, (uint32_t)i, o) != napi_ok) goto fail;
  }
  free(items);
  return out;
fail:
  free(items);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor d[] = {
      {"openTun", NULL, open_tun, NULL, NULL, NULL, napi_default, NULL},
      {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_default, NULL},
      {"createLoop", NULL, create_loop, NULL, NULL, NULL, napi_default, NULL},
      {"start", NULL, start_loop, NULL, NULL, NULL, napi_default, NULL},
      {"stop", NULL, stop_loop, NULL, NULL, NULL, napi_default, NULL},
      {"setPeer", NULL, set_peer, NULL, NULL, NULL, napi_default, NULL},
      {"delPeer", NULL, del_peer, NULL, NULL, NULL, napi_default, NULL},
      {"counters", NULL, counters, NULL, NULL, NULL, napi_default, NULL},
      {"listPeers", NULL, list_peers, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(d) / sizeof(d[0]), d);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
