/* Offload mode. TUN -> UDP: the TUN hands over TCP super-packets (up to 64 KB,
 * IFF_VNET_HDR + TSO4); they are cut here into ordinary IPv4/TCP packets of
 * gso_size payload, each becoming one datagram exactly as in per-packet mode,
 * and sent with UDP GSO (one system call for many datagrams).
 * UDP -> TUN: datagrams are read in batches; consecutive in-order segments
 * of one TCP flow are merged back into one super-packet for the TUN. The
 * wire format is unchanged: one raw IPv4 packet per datagram. */
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

#include "packet.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

#define CNT_ADD(c, name, n) atomic_fetch_add_explicit(&(c)->name, (n), memory_order_relaxed)
#define VNET_LEN ((int)sizeof(struct virtio_net_hdr))
#define SUPER_MAX 65536

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

static uint32_t sum16(const uint8_t *p, size_t len, uint32_t sum) {
  while (len > 1) {
    sum += (uint32_t)(p[0] << 8 | p[1]);
    p += 2;
    len -= 2;
  }
  if (len) sum += (uint32_t)(p[0] << 8);
  return sum;
}

static uint16_t fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)sum;
}

static void ip_fix_checksum(uint8_t *ip) {
  ip[10] = ip[11] = 0;
  uint16_t c = inet_checksum(ip, (size_t)(ip[0] & 0x0f) * 4);
  memcpy(ip + 10, &c, 2);
}

static uint32_t pseudo_sum(const uint8_t *ip, size_t l4len) {
  uint32_t s = sum16(ip + 12, 8, 0);
  return s + 6 + (uint32_t)l4len;
}

/* Full TCP checksum of one IPv4/TCP packet. */
static void tcp_fix_checksum(uint8_t *ip, size_t len) {
  size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
  uint8_t *tcp = ip + ihl;
  tcp[16] = tcp[17] = 0;
  uint16_t c = htons((uint16_t)~fold(sum16(tcp, len - ihl, pseudo_sum(ip, len - ihl))));
  memcpy(tcp + 16, &c, 2);
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
  uint8_t *in = malloc(SUPER_MAX + VNET_LEN);
  uint8_t *out = malloc(64 * (mtu + 64));
  uint8_t *segs[128];
  size_t lens[128];
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
      if (len >= 20 && (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && h.csum_start + h.csum_offset + 2u <= len) {
        /* the checksum field holds the pseudo-header sum; finish it */
        uint16_t cs = htons((uint16_t)~fold(sum16(pkt + h.csum_start, len - h.csum_start, 0)));
        if ((h.gso_type & ~VIRTIO_NET_HDR_GSO_ECN) == VIRTIO_NET_HDR_GSO_NONE) memcpy(pkt + h.csum_start + h.csum_offset, &cs, 2);
      }
      const peer_t *peer = loop_outbound(l, &v, pkt, len);
      if (!peer) continue;
      o.to = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = peer->port};
      o.to.sin_addr.s_addr = peer->addr;
      size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;
      if ((h.gso_type & ~VIRTIO_NET_HDR_GSO_ECN) != VIRTIO_NET_HDR_GSO_TCPV4 || pkt[9] != 6 || len < ihl + 20) {
        segs[0] = pkt;
        lens[0] = len;
        gso_send(l, &o, segs, lens, 1);
        continue;
      }
      /* cut the super-packet into wire-format packets of gso_size payload */
      CNT_ADD(c, superPackets, 1);
      size_t thl = (size_t)(pkt[ihl + 12] >> 4) * 4;
      size_t hlen = ihl + thl;
      size_t mss = h.gso_size ? h.gso_size : mtu - hlen;
      if (hlen + mss > mtu) mss = mtu - hlen;
      uint16_t id0 = (uint16_t)(pkt[4] << 8 | pkt[5]);
      uint32_t seq0;
      memcpy(&seq0, pkt + ihl + 4, 4);
      seq0 = ntohl(seq0);
      uint8_t flags = pkt[ihl + 13];
      size_t payload = len - hlen;
      int n = 0;
      for (size_t off = 0; off < payload && n < 128; off += mss) {
        size_t chunk = payload - off < mss ? payload - off : mss;
        uint8_t *s = out + (size_t)(n % 64) * (mtu + 64);
        if (n == 64) { /* buffer full: flush the first 64 */
          gso_send(l, &o, segs, lens, 64);
          n = 0;
          s = out;
        }
        memcpy(s, pkt, hlen);
        memcpy(s + hlen, pkt + hlen + off, chunk);
        size_t slen = hlen + chunk;
        uint16_t tot = htons((uint16_t)slen);
        memcpy(s + 2, &tot, 2);
        uint16_t id = htons((uint16_t)(id0 + off / mss));
        memcpy(s + 4, &id, 2);
        uint32_t seq = htonl(seq0 + (uint32_t)off);
        memcpy(s + ihl + 4, &seq, 4);
        int last = off + chunk >= payload;
        s[ihl + 13] = (uint8_t)(last ? flags : flags & ~(0x01 | 0x08)); /* FIN, PSH on the last only */
        if (off) s[ihl + 13] &= (uint8_t)~0x80;                            /* CWR on the first only */
        ip_fix_checksum(s);
        tcp_fix_checksum(s, slen);
        segs[n] = s;
        lens[n] = slen;
        n++;
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

/* True when b continues a (same flow, next bytes, same headers otherwise). */
static int tcp_continues(const uint8_t *a, size_t alen, size_t apay_end_seq_off, const uint8_t *b, size_t blen, uint32_t next_seq) {
  (void)alen;
  (void)apay_end_seq_off;
  if ((b[0] & 0x0f) != 5 || b[9] != 6 || memcmp(a + 12, b + 12, 8) != 0) return 0;
  const uint8_t *ta = a + 20, *tb = b + 20;
  size_t thl = (size_t)(ta[12] >> 4) * 4;
  if ((size_t)(tb[12] >> 4) * 4 != thl || blen <= 20 + thl) return 0;
  if (memcmp(ta, tb, 4) != 0) return 0;                    /* ports */
  uint32_t seq;
  memcpy(&seq, tb + 4, 4);
  if (ntohl(seq) != next_seq) return 0;
  if (memcmp(ta + 8, tb + 8, 4) != 0) return 0;            /* ack */
  if (tb[13] != 0x10 && tb[13] != 0x18) return 0;          /* ACK or ACK|PSH */
  if (memcmp(ta + 14, tb + 14, 2) != 0) return 0;          /* window */
  if (memcmp(ta + 20, tb + 20, thl - 20) != 0) return 0;   /* options (timestamps) */
  uint16_t fa, fb;
  memcpy(&fa, a + 6, 2);
  memcpy(&fb, b + 6, 2);
  if ((ntohs(fa) & 0x3fff) || (ntohs(fb) & 0x3fff)) return 0; /* no fragments */
  return a[1] == b[1] && a[8] == b[8];
}

typedef struct {
  uint8_t *buf; /* vnet header + super-packet */
  size_t len;   /* packet length (without the vnet header) */
  size_t mss;
  int segs;
  uint32_t next_seq;
} merge_t;

static void merge_flush(loop_t *l, merge_t *m) {
  if (!m->len) return;
  struct virtio_net_hdr h;
  memset(&h, 0, sizeof(h));
  uint8_t *pkt = m->buf + VNET_LEN;
  if (m->segs > 1) {
    size_t thl = (size_t)(pkt[32] >> 4) * 4;
    h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
    h.gso_size = (uint16_t)m->mss;
    h.hdr_len = (uint16_t)(20 + thl);
    h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    h.csum_start = 20;
    h.csum_offset = 16;
    uint16_t tot = htons((uint16_t)m->len);
    memcpy(pkt + 2, &tot, 2);
    ip_fix_checksum(pkt);
    uint16_t ps = htons(fold(pseudo_sum(pkt, m->len - 20)));
    memcpy(pkt + 36, &ps, 2);
    CNT_ADD(loop_counters(l), superPackets, 1);
  }
  memcpy(m->buf, &h, sizeof(h));
  loop_tun_write_raw(l, m->buf, (size_t)VNET_LEN + m->len);
  m->len = 0;
  m->segs = 0;
}

/* Adds one accepted inner packet: merged into the pending super-packet when it continues it. */
static void merge_add(loop_t *l, merge_t *m, const uint8_t *pkt, size_t len) {
  if (m->len && m->segs < 64 && m->len + len - 40 <= SUPER_MAX - 256) {
    const uint8_t *head = m->buf + VNET_LEN;
    size_t thl = (size_t)(head[32] >> 4) * 4;
    size_t pay = len - 20 - thl;
    if (pay <= m->mss && tcp_continues(head, m->len, 0, pkt, len, m->next_seq)) {
      memcpy(m->buf + VNET_LEN + m->len, pkt + 20 + thl, pay);
      m->len += pay;
      m->segs++;
      m->next_seq += (uint32_t)pay;
      ((uint8_t *)head)[33] |= pkt[33]; /* keep PSH of the last */
      if (pay < m->mss) merge_flush(l, m); /* a short segment ends the run */
      return;
    }
  }
  merge_flush(l, m);
  memcpy(m->buf + VNET_LEN, pkt, len);
  m->len = len;
  m->segs = 1;
  size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;
  if (ihl == 20 && pkt[9] == 6 && len >= 40 && len > 20 + (size_t)(pkt[32] >> 4) * 4 && (pkt[33] == 0x10 || pkt[33] == 0x18)) {
    size_t thl = (size_t)(pkt[32] >> 4) * 4;
    uint32_t seq;
    memcpy(&seq, pkt + 24, 4);
    m->mss = len - 20 - thl;
    m->next_seq = ntohl(seq) + (uint32_t)m->mss;
    if (pkt[33] & 0x08) merge_flush(l, m); /* PSH: deliver now */
  } else {
    merge_flush(l, m); /* not mergeable */
  }
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
  merge_t m = {.buf = malloc(SUPER_MAX + VNET_LEN)};
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
          merge_add(l, &m, pkt, plen);
        }
      }
      merge_flush(l, &m);
      if (n < NB || loop_stopping(l)) break;
    }
  }
done:
  free(data);
  free(m.buf);
  view_destroy(&v);
  return NULL;
}
