#define _GNU_SOURCE
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "packet.h"
#include "offload.h"

#define CNT_ADD(l, name, n) atomic_fetch_add_explicit(&(l)->c.name, (n), memory_order_relaxed)

struct loop {
  loop_config_t cfg;
  int sock_fd;
  int stop_fd;
  atomic_int stopping;
  int started;
  int nthreads;
  pthread_t threads[2];
  peer_table_t peers;
  loop_counters_t c;
};

peer_table_t *loop_peers(loop_t *l) { return &l->peers; }
loop_counters_t *loop_counters(loop_t *l) { return &l->c; }

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

loop_t *loop_create(const loop_config_t *cfg, char *err, size_t errlen) {
  loop_t *l = calloc(1, sizeof(*l));
  if (!l) {
    snprintf(err, errlen, "out of memory");
    close(cfg->tun_fd);
    return NULL;
  }
  l->cfg = *cfg;
  l->sock_fd = -1;
  l->stop_fd = -1;
  peers_init(&l->peers);
  set_nonblock(cfg->tun_fd);

  l->sock_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (l->sock_fd < 0) goto fail_errno;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(cfg->port)};
  sa.sin_addr.s_addr = cfg->bind_addr;
  if (bind(l->sock_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
    char a[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &cfg->bind_addr, a, sizeof(a));
    snprintf(err, errlen, "failed to bind UDP socket to %s:%u: %s", a, cfg->port, strerror(errno));
    goto fail;
  }
  if (cfg->mode != MODE_SINGLE) {
    int size = 4 << 20;
    setsockopt(l->sock_fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    setsockopt(l->sock_fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
  }
  if (cfg->mode == MODE_OFFLOAD && offload_setup_socket(l->sock_fd) < 0) {
    snprintf(err, errlen, "failed to enable UDP GRO on the socket: %s", strerror(errno));
    goto fail;
  }
  set_nonblock(l->sock_fd);
  l->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (l->stop_fd < 0) goto fail_errno;
  return l;

fail_errno:
  snprintf(err, errlen, "%s", strerror(errno));
fail:
  if (l->sock_fd >= 0) close(l->sock_fd);
  if (l->stop_fd >= 0) close(l->stop_fd);
  close(cfg->tun_fd);
  peers_destroy(&l->peers);
  free(l);
  return NULL;
}

static int stopping(loop_t *l) { return atomic_load_explicit(&l->stopping, memory_order_relaxed); }

/* Waits until fd is readable or the loop is stopped. Returns 0 to go on, -1 to stop. */
static int wait_readable(loop_t *l, int fd) {
  struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = l->stop_fd, .events = POLLIN}};
  for (;;) {
    if (stopping(l)) return -1;
    int n = poll(p, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || p[1].revents) return -1;
    return 0;
  }
}

/* Writes one packet into the TUN (after a zero virtio header when the TUN
 * has one); retries while the write would block, like flanneld. */
static void tun_write_iov(loop_t *l, const void *buf, size_t len, int with_vnet) {
  static const uint8_t zero_vnet[16];
  struct iovec iov[2] = {{.iov_base = (void *)zero_vnet, .iov_len = 10}, {.iov_base = (void *)buf, .iov_len = len}};
  for (;;) {
    ssize_t n = with_vnet ? writev(l->cfg.tun_fd, iov, 2) : write(l->cfg.tun_fd, buf, len);
    if (n >= 0) return;
    if (errno == EINTR) continue;
    if (errno == EAGAIN && !stopping(l)) {
      struct pollfd p = {.fd = l->cfg.tun_fd, .events = POLLOUT};
      poll(&p, 1, 100);
      continue;
    }
    CNT_ADD(l, tunWriteErrors, 1);
    return;
  }
}

static void tun_write(loop_t *l, const void *buf, size_t len) { tun_write_iov(l, buf, len, l->cfg.vnet_hdr); }

/* TUN -> UDP for one packet: route, ICMP for unknown destinations, TTL.
 * Returns the peer to send to, or NULL when the packet is consumed here. */
static const peer_t *outbound(loop_t *l, peer_view_t *v, uint8_t *pkt, size_t len) {
  if (len < 20 || (pkt[0] >> 4) != 4) {
    CNT_ADD(l, dropMalformed, 1);
    return NULL;
  }
  uint32_t dst;
  memcpy(&dst, pkt + 16, 4);
  const peer_t *p = view_route(v, dst);
  if (!p) {
    uint8_t reply[128];
    size_t n = icmp_net_unreachable(pkt, len, l->cfg.tun_addr, reply);
    if (n) {
      tun_write(l, reply, n);
      CNT_ADD(l, icmpUnreachableSent, 1);
    } else {
      CNT_ADD(l, dropNoRoute, 1);
    }
    return NULL;
  }
  if (!ip_decrement_ttl(pkt)) {
    CNT_ADD(l, dropTtl, 1);
    return NULL;
  }
  return p;
}

/* UDP -> TUN for one datagram: header, sender and source checks, TTL. Returns 1 to deliver. */
static int inbound(loop_t *l, peer_view_t *v, const struct sockaddr_in *from, uint8_t *pkt, size_t len) {
  ip4_hdr_t h;
  /* flanneld forwards anything of 20 bytes; checking sources means checking headers */
  if (len < 20 || (l->cfg.verify_source && ip4_parse(pkt, len, &h) != IP4_OK)) {
    CNT_ADD(l, dropMalformed, 1);
    return 0;
  }
  if (l->cfg.verify_source) {
    uint32_t src;
    memcpy(&src, pkt + 12, 4);
    int r = view_check_source(v, from->sin_addr.s_addr, from->sin_port, src);
    if (r == SRC_UNKNOWN_PEER) {
      CNT_ADD(l, dropUnknownPeer, 1);
      return 0;
    }
    if (r == SRC_SPOOFED) {
      CNT_ADD(l, dropSpoofedSource, 1);
      return 0;
    }
  }
  if (!ip_decrement_ttl(pkt)) {
    CNT_ADD(l, dropTtl, 1);
    return 0;
  }
  return 1;
}

static void fill_dest(struct sockaddr_in *sa, const peer_t *p) {
  memset(sa, 0, sizeof(*sa));
  sa->sin_family = AF_INET;
  sa->sin_addr.s_addr = p->addr;
  sa->sin_port = p->port;
}

/* ---- per-packet mode: one thread, one packet per syscall (flanneld's loop) ---- */

static void *single_thread(void *arg) {
  loop_t *l = arg;
  peer_view_t v;
  view_init(&v);
  size_t cap = (size_t)l->cfg.mtu;
  uint8_t *buf = malloc(cap + 1);
  struct pollfd p[3] = {
      {.fd = l->cfg.tun_fd, .events = POLLIN},
      {.fd = l->sock_fd, .events = POLLIN},
      {.fd = l->stop_fd, .events = POLLIN},
  };
  while (buf && !stopping(l)) {
    int n = poll(p, 3, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || p[2].revents) break;
    int active;
    do {
      active = 0;
      view_refresh(&v, &l->peers);
      ssize_t r = read(l->cfg.tun_fd, buf, cap);
      if (r >= 0) {
        active = 1;
        CNT_ADD(l, tunReads, 1);
        const peer_t *peer = outbound(l, &v, buf, (size_t)r);
        if (peer) {
          struct sockaddr_in to;
          fill_dest(&to, peer);
          CNT_ADD(l, udpSendCalls, 1);
          if (sendto(l->sock_fd, buf, (size_t)r, 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
            CNT_ADD(l, sendErrors, 1);
          } else {
            CNT_ADD(l, txPackets, 1);
            CNT_ADD(l, txBytes, (uint64_t)r);
          }
        }
      }
      struct sockaddr_in from;
      socklen_t fl = sizeof(from);
      r = recvfrom(l->sock_fd, buf, cap + 1, 0, (struct sockaddr *)&from, &fl);
      CNT_ADD(l, udpRecvCalls, 1);
      if (r >= 0) {
        active = 1;
        if ((size_t)r > cap) {
          CNT_ADD(l, dropTruncated, 1);
        } else if (inbound(l, &v, &from, buf, (size_t)r)) {
          CNT_ADD(l, rxPackets, 1);
          CNT_ADD(l, rxBytes, (uint64_t)r);
          tun_write(l, buf, (size_t)r);
        }
      }
    } while (active && !stopping(l));
  }
  free(buf);
  view_destroy(&v);
  return NULL;
}

/* ---- batch mode: two threads, recvmmsg/sendmmsg ---- */

typedef struct {
  int n;
  size_t cap;
  uint8_t *data;
  struct mmsghdr *msgs;
  struct iovec *iov;
  struct sockaddr_in *addrs;
} batch_t;

static int batch_alloc(batch_t *b, int n, size_t cap) {
  b->n = n;
  b->cap = cap;
  b->data = malloc((size_t)n * cap);
  b->msgs = calloc((size_t)n, sizeof(*b->msgs));
  b->iov = calloc((size_t)n, sizeof(*b->iov));
  b->addrs = calloc((size_t)n, sizeof(*b->addrs));
  return b->data && b->msgs && b->iov && b->addrs ? 0 : -1;
}

static void batch_free(batch_t *b) {
  free(b->data);
  free(b->msgs);
  free(b->iov);
  free(b->addrs);
}

/* Sends msgs[0..count) with sendmmsg, skipping a datagram the kernel refuses. */
static void send_all(loop_t *l, struct mmsghdr *msgs, int count) {
  int done = 0;
  while (done < count && !stopping(l)) {
    CNT_ADD(l, udpSendCalls, 1);
    int n = sendmmsg(l->sock_fd, msgs + done, (unsigned)(count - done), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd p = {.fd = l->sock_fd, .events = POLLOUT};
        poll(&p, 1, 100);
        continue;
      }
      CNT_ADD(l, sendErrors, 1);
      done++;
      continue;
    }
    for (int i = done; i < done + n; i++) {
      CNT_ADD(l, txPackets, 1);
      CNT_ADD(l, txBytes, msgs[i].msg_len);
    }
    done += n;
  }
}

static void *batch_tun_thread(void *arg) {
  loop_t *l = arg;
  peer_view_t v;
  view_init(&v);
  batch_t b;
  size_t cap = (size_t)l->cfg.mtu;
  if (batch_alloc(&b, l->cfg.batch, cap) < 0) goto out;
  while (wait_readable(l, l->cfg.tun_fd) == 0) {
    for (;;) {
      view_refresh(&v, &l->peers);
      int count = 0, reads = 0;
      while (reads < b.n) {
        uint8_t *pkt = b.data + (size_t)count * cap;
        ssize_t r = read(l->cfg.tun_fd, pkt, cap);
        if (r < 0) break;
        reads++;
        CNT_ADD(l, tunReads, 1);
        const peer_t *peer = outbound(l, &v, pkt, (size_t)r);
        if (!peer) continue;
        fill_dest(&b.addrs[count], peer);
        b.iov[count] = (struct iovec){.iov_base = pkt, .iov_len = (size_t)r};
        b.msgs[count].msg_hdr = (struct msghdr){
            .msg_name = &b.addrs[count],
            .msg_namelen = sizeof(struct sockaddr_in),
            .msg_iov = &b.iov[count],
            .msg_iovlen = 1,
        };
        count++;
      }
      if (count) send_all(l, b.msgs, count);
      if (reads < b.n || stopping(l)) break;
    }
  }
out:
  batch_free(&b);
  view_destroy(&v);
  return NULL;
}

static void *batch_udp_thread(void *arg) {
  loop_t *l = arg;
  peer_view_t v;
  view_init(&v);
  batch_t b;
  size_t cap = (size_t)l->cfg.mtu + 1; /* one spare byte detects truncation */
  if (batch_alloc(&b, l->cfg.batch, cap) < 0) goto out;
  while (wait_readable(l, l->sock_fd) == 0) {
    for (;;) {
      for (int i = 0; i < b.n; i++) {
        b.iov[i] = (struct iovec){.iov_base = b.data + (size_t)i * cap, .iov_len = cap};
        b.msgs[i].msg_hdr = (struct msghdr){
            .msg_name = &b.addrs[i],
            .msg_namelen = sizeof(struct sockaddr_in),
            .msg_iov = &b.iov[i],
            .msg_iovlen = 1,
        };
      }
      CNT_ADD(l, udpRecvCalls, 1);
      int n = recvmmsg(l->sock_fd, b.msgs, (unsigned)b.n, MSG_DONTWAIT, NULL);
      if (n <= 0) break;
      view_refresh(&v, &l->peers);
      for (int i = 0; i < n; i++) {
        uint8_t *pkt = b.iov[i].iov_base;
        size_t len = b.msgs[i].msg_len;
        if (len >= cap || (b.msgs[i].msg_hdr.msg_flags & MSG_TRUNC)) {
          CNT_ADD(l, dropTruncated, 1);
          continue;
        }
        if (!inbound(l, &v, &b.addrs[i], pkt, len)) continue;
        CNT_ADD(l, rxPackets, 1);
        CNT_ADD(l, rxBytes, len);
        tun_write(l, pkt, len);
      }
      if (n < b.n || stopping(l)) break;
    }
  }
out:
  batch_free(&b);
  view_destroy(&v);
  return NULL;
}

int loop_start(loop_t *l, char *err, size_t errlen) {
  void *(*fns[2])(void *) = {NULL, NULL};
  if (l->cfg.mode == MODE_SINGLE) {
    fns[0] = single_thread;
  } else if (l->cfg.mode == MODE_BATCH) {
    fns[0] = batch_tun_thread;
    fns[1] = batch_udp_thread;
  } else {
    fns[0] = offload_tun_thread;
    fns[1] = offload_udp_thread;
  }
  for (int i = 0; i < 2 && fns[i]; i++) {
    int rc = pthread_create(&l->threads[i], NULL, fns[i], l);
    if (rc != 0) {
      snprintf(err, errlen, "failed to start the forwarding thread: %s", strerror(rc));
      loop_stop(l);
      return -1;
    }
    l->nthreads++;
  }
  l->started = 1;
  return 0;
}

void loop_stop(loop_t *l) {
  if (atomic_exchange(&l->stopping, 1) == 0) {
    uint64_t one = 1;
    if (write(l->stop_fd, &one, sizeof(one)) < 0) { /* the flag alone still stops the loop */ }
  }
  for (int i = 0; i < l->nthreads; i++) pthread_join(l->threads[i], NULL);
  l->nthreads = 0;
  if (l->cfg.tun_fd >= 0) close(l->cfg.tun_fd);
  if (l->sock_fd >= 0) close(l->sock_fd);
  if (l->stop_fd >= 0) close(l->stop_fd);
  l->cfg.tun_fd = l->sock_fd = l->stop_fd = -1;
}

void loop_free(loop_t *l) {
  if (!l) return;
  loop_stop(l);
  peers_destroy(&l->peers);
  free(l);
}

/* Accessors for the offload threads, which live in offload.c. */
int loop_tun_fd(loop_t *l) { return l->cfg.tun_fd; }
int loop_sock_fd(loop_t *l) { return l->sock_fd; }
const loop_config_t *loop_config(loop_t *l) { return &l->cfg; }
int loop_wait_readable(loop_t *l, int fd) { return wait_readable(l, fd); }
int loop_stopping(loop_t *l) { return stopping(l); }
void loop_tun_write_raw(loop_t *l, const void *buf, size_t len) { tun_write_iov(l, buf, len, 0); }
const peer_t *loop_outbound(loop_t *l, peer_view_t *v, uint8_t *pkt, size_t len) {
  return outbound(l, v, pkt, len);
}
int loop_inbound(loop_t *l, peer_view_t *v, const struct sockaddr_in *from, uint8_t *pkt, size_t len) {
  return inbound(l, v, from, pkt, len);
}
void loop_send_all(loop_t *l, struct mmsghdr *msgs, int count) { send_all(l, msgs, count); }
