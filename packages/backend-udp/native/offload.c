/* Offload mode. TUN -> UDP: the TUN hands over TCP super-packets (up to 64 KB,
 * IFF_VNET_HDR + TSO4); they are cut here into ordinary IPv4/TCP packets of
 * gso_size payload, each becoming one datagram exactly as in per-packet mode,
 * and sent with UDP GSO (one system call for many datagrams).
 * UDP -> TUN: datagrams are read in batches; consecutive in-order segments
 * of one TCP flow are merged back into one super-packet for the TUN. The
 * wire format is unchanged: one raw IPv4 packet per datagram. The packet
 * work itself (cutting, merging) is in tcpseg.c; this file does the I/O. */
#define _GNU_SOURCE
#include "offload.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <netinet/udp.h>
#include <sys/ioctl.h>
#include <sys/uio.h>

#include "tcpseg.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

#define CNT_ADD(c, name, n) atomic_fetch_add_explicit(&(c)->name, (n), memory_order_relaxed)
#define VNET_LEN ((int)TCPSEG_VNET_LEN)
#define SUPER_MAX TCPSEG_SUPER_MAX

#ifndef UDP_GRO
#define UDP_GRO 104
#endif

/* UDP GRO lets the kernel hand over runs of datagrams from one sender in one
 * buffer; without it (older kernels) datagrams simply arrive one by one. */
int offload_setup_socket(int sock_fd) {
  int one = 1;
  setsockopt(sock_fd, SOL_UDP, UDP_GRO, &one, sizeof(one));
  return 0;
}

int offload_setup_tun(int tun_fd) {
  return ioctl(tun_fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4);
}

/* ---- TUN -> UDP ---- */

typedef struct {
  uint8_t *seg;          /* segments laid out back to back, each at most seg_cap */
  struct iovec iov[64];
  struct sockaddr_in to;
  char cbuf[CMSG_SPACE(sizeof(uint16_t))];
} gso_out_t;

/* Sends `count` segments of `size` bytes (the last may be shorter, `last`) in
 * one UDP GSO call per at most 64 segments / 64 KB. */
static void gso_send(loop_t *l, gso_out_t *o, uint8_t **segs, size_t *lens, int count) {
  loop_counters_t *c = loop_counters(l);
  int i = 0;
  while (i < count) {
    size_t size = lens[i];
    int n = 0;
    size_t total = 0;
    while (i + n < count && n < 64 && (n == 0 || (total + lens[i + n] <= 65000 && lens[i + n] <= size))) {
      o->iov[n] = (struct iovec){.iov_base = segs[i + n], .iov_len = lens[i + n]};
      total += lens[i + n];
      n++;
      if (lens[i + n - 1] < size) break; /* a shorter segment must be the last */
    }
    struct msghdr m = {.msg_name = &o->to, .msg_namelen = sizeof(o->to), .msg_iov = o->iov, .msg_iovlen = (size_t)n};
    if (n > 1) {
      m.msg_control = o->cbuf;
      m.msg_controllen = sizeof(o->cbuf);
      struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
      cm->cmsg_level = SOL_UDP;
      cm->cmsg_type = UDP_SEGMENT;
      cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t gso = (uint16_t)size;
      memcpy(CMSG_DATA(cm), &gso, sizeof(gso));
    }
    CNT_ADD(c, udpSendCalls, 1);
    ssize_t r;
    do {
      r = sendmsg(loop_sock_fd(l), &m, 0);
      if (r < 0 && errno == EAGAIN) {
        struct pollfd p = {.fd = loop_sock_fd(l), .events = POLLOUT};
        poll(&p, 1, 100);
      }
    } while (r < 0 && (errno == EINTR || errno == EAGAIN) && !loop_stopping(l));
    if (r < 0) {
      CNT_ADD(c, sendErrors, (uint64_t)n);
    } else {
      CNT_ADD(c, txPackets, (uint64_t)n);
      CNT_ADD(c, txBytes, (uint64_t)total);
    }
    i += n;
  }
}

void *offload_tun_thread(void *arg) {
  loop_t *l = arg;
  loop_counters_t *c = loop_counters(l);
  int fd = loop_tun_fd(l);
  peer_view_t v;
  view_init(&v);
  size_t mtu = (size_t)loop_config(l)->mtu;
  size_t slot = mtu + 64;
  uint8_t *in = malloc(SUPER_MAX + VNET_LEN);
  uint8_t *out = malloc(64 * slot);
  uint8_t *segs[64];
  size_t lens[64];
  gso_out_t o;
  memset(&o, 0, sizeof(o));
  if (!in || !out) goto done;
  while (loop_wait_readable(l, fd) == 0) {
    for (;;) {
      ssize_t r = read(fd, in, SUPER_MAX + VNET_LEN);
      if (r < 0 || loop_stopping(l)) break;
      CNT_ADD(c, tunReads, 1);
      view_refresh(&v, loop_peers(l));
      if (r < VNET_LEN) continue;
      struct virtio_net_hdr h;
      memcpy(&h, in, sizeof(h));
      uint8_t *pkt = in + VNET_LEN;
      size_t len = (size_t)r - VNET_LEN;
      tso_t t;
      int what = tso_begin(&t, &h, pkt, len, mtu);
      if (what == TSO_MALFORMED) {
        CNT_ADD(c, dropMalformed, 1);
        continue;
      }
      const peer_t *peer = loop_outbound(l, &v, pkt, len);
      if (!peer) continue;
      o.to = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = peer->port};
      o.to.sin_addr.s_addr = peer->addr;
      if (what == TSO_SEND) {
        segs[0] = pkt;
        lens[0] = len;
        gso_send(l, &o, segs, lens, 1);
        continue;
      }
      /* cut the super-packet into wire-format packets of gso_size payload */
      CNT_ADD(c, superPackets, 1);
      int n = 0;
      size_t slen;
      while ((slen = tso_next(&t, out + (size_t)n * slot)) > 0) {
        segs[n] = out + (size_t)n * slot;
        lens[n] = slen;
        if (++n == 64) { /* buffer full: send these first */
          gso_send(l, &o, segs, lens, n);
          n = 0;
        }
      }
      if (n) gso_send(l, &o, segs, lens, n);
    }
  }
done:
  free(in);
  free(out);
  view_destroy(&v);
  return NULL;
}

/* ---- UDP -> TUN ---- */

/* The coalescer's output goes into the TUN as it is (virtio header first). */
static void tun_emit(void *ctx, uint8_t *buf, size_t len, int segs) {
  loop_t *l = ctx;
  if (segs > 1) CNT_ADD(loop_counters(l), superPackets, 1);
  loop_tun_write_raw(l, buf, len);
}

void *offload_udp_thread(void *arg) {
  loop_t *l = arg;
  loop_counters_t *c = loop_counters(l);
  int sock = loop_sock_fd(l);
  enum { NB = 16, BIG = 65536 };
  size_t mtu = (size_t)loop_config(l)->mtu;
  peer_view_t v;
  view_init(&v);
  uint8_t *data = malloc((size_t)NB * BIG);
  struct mmsghdr msgs[NB];
  struct iovec iov[NB];
  struct sockaddr_in addrs[NB];
  char ctl[NB][CMSG_SPACE(sizeof(int))];
  gro_t m = {.buf = malloc(SUPER_MAX + VNET_LEN), .emit = tun_emit, .ctx = l};
  if (!data || !m.buf) goto done;
  while (loop_wait_readable(l, sock) == 0) {
    for (;;) {
      for (int i = 0; i < NB; i++) {
        iov[i] = (struct iovec){.iov_base = data + (size_t)i * BIG, .iov_len = BIG};
        msgs[i].msg_hdr = (struct msghdr){.msg_name = &addrs[i], .msg_namelen = sizeof(addrs[i]), .msg_iov = &iov[i],
                                          .msg_iovlen = 1, .msg_control = ctl[i], .msg_controllen = sizeof(ctl[i])};
      }
      CNT_ADD(c, udpRecvCalls, 1);
      int n = recvmmsg(sock, msgs, NB, MSG_DONTWAIT, NULL);
      if (n <= 0) break;
      view_refresh(&v, loop_peers(l));
      for (int i = 0; i < n; i++) {
        uint8_t *buf = iov[i].iov_base;
        size_t len = msgs[i].msg_len;
        size_t gso = len;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msgs[i].msg_hdr); cm; cm = CMSG_NXTHDR(&msgs[i].msg_hdr, cm)) {
          if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
            int g;
            memcpy(&g, CMSG_DATA(cm), sizeof(g));
            if (g > 0) gso = (size_t)g;
          }
        }
        if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
          CNT_ADD(c, dropTruncated, 1);
          continue;
        }
        /* one datagram = one inner packet; GRO only glued them together */
        for (size_t off = 0; off < len; off += gso) {
          uint8_t *pkt = buf + off;
          size_t plen = len - off < gso ? len - off : gso;
          if (plen > mtu) {
            CNT_ADD(c, dropTruncated, 1);
            continue;
          }
          if (!loop_inbound(l, &v, &addrs[i], pkt, plen)) continue;
          CNT_ADD(c, rxPackets, 1);
          CNT_ADD(c, rxBytes, plen);
          gro_add(&m, pkt, plen);
        }
      }
      gro_flush(&m);
      if (n < NB || loop_stopping(l)) break;
    }
  }
done:
  free(data);
  free(m.buf);
  view_destroy(&v);
  return NULL;
}
