#include "tcpseg.h"

#include <string.h>
#include <arpa/inet.h>

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

static void ip_fix_checksum(uint8_t *ip, size_t ihl) {
  ip[10] = ip[11] = 0;
  uint16_t c = inet_checksum(ip, ihl);
  memcpy(ip + 10, &c, 2);
}

static uint32_t pseudo_sum(const uint8_t *ip, size_t l4len) {
  uint32_t s = sum16(ip + 12, 8, 0);
  return s + 6 + (uint32_t)l4len;
}

/* Full TCP checksum of one IPv4/TCP packet of len bytes with an ihl-byte IP header. */
static void tcp_fix_checksum(uint8_t *ip, size_t ihl, size_t len) {
  uint8_t *tcp = ip + ihl;
  tcp[16] = tcp[17] = 0;
  uint16_t c = htons((uint16_t)~fold(sum16(tcp, len - ihl, pseudo_sum(ip, len - ihl))));
  memcpy(tcp + 16, &c, 2);
}

/* ---- TUN -> UDP ---- */

int tso_begin(tso_t *t, const struct virtio_net_hdr *h, uint8_t *pkt, size_t len, size_t mtu) {
  unsigned gso = h->gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
  if (gso == VIRTIO_NET_HDR_GSO_NONE) {
    if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
      /* the checksum field holds the pseudo-header sum; finish it */
      size_t start = h->csum_start, at = start + h->csum_offset;
      if (at + 2 > len) return TSO_MALFORMED;
      uint16_t cs = htons((uint16_t)~fold(sum16(pkt + start, len - start, 0)));
      memcpy(pkt + at, &cs, 2);
    }
    return TSO_SEND;
  }
  if (gso != VIRTIO_NET_HDR_GSO_TCPV4) return TSO_MALFORMED;
  ip4_hdr_t ip;
  if (ip4_parse(pkt, len, &ip) != IP4_OK || !ip.tcp || ip.tot != len) return TSO_MALFORMED;
  size_t hlen = ip.ihl + ip.thl;
  if (hlen >= len || hlen >= mtu) return TSO_MALFORMED; /* no payload, or no room for any */
  size_t mss = h->gso_size ? h->gso_size : mtu - hlen;
  if (mss > mtu - hlen) mss = mtu - hlen;
  uint32_t seq0;
  memcpy(&seq0, pkt + ip.ihl + 4, 4);
  *t = (tso_t){
      .pkt = pkt,
      .hlen = hlen,
      .ihl = ip.ihl,
      .payload = len - hlen,
      .mss = mss,
      .id0 = (uint16_t)(pkt[4] << 8 | pkt[5]),
      .seq0 = ntohl(seq0),
      .flags = pkt[ip.ihl + 13],
  };
  return TSO_SEGMENT;
}

size_t tso_next(tso_t *t, uint8_t *out) {
  if (t->off >= t->payload) return 0;
  size_t chunk = t->payload - t->off < t->mss ? t->payload - t->off : t->mss;
  size_t ihl = t->ihl;
  memcpy(out, t->pkt, t->hlen);
  memcpy(out + t->hlen, t->pkt + t->hlen + t->off, chunk);
  size_t slen = t->hlen + chunk;
  uint16_t tot = htons((uint16_t)slen);
  memcpy(out + 2, &tot, 2);
  uint16_t id = htons((uint16_t)(t->id0 + t->index));
  memcpy(out + 4, &id, 2);
  uint32_t seq = htonl(t->seq0 + (uint32_t)t->off);
  memcpy(out + ihl + 4, &seq, 4);
  int last = t->off + chunk >= t->payload;
  out[ihl + 13] = (uint8_t)(last ? t->flags : t->flags & ~(0x01 | 0x08)); /* FIN, PSH on the last only */
  if (t->off) out[ihl + 13] &= (uint8_t)~0x80;                             /* CWR on the first only */
  ip_fix_checksum(out, ihl);
  tcp_fix_checksum(out, ihl, slen);
  t->off += chunk;
  t->index++;
  return slen;
}

/* ---- UDP -> TUN ---- */

/* A wire packet that may be merged: header length, payload, sequence number. */
typedef struct {
  size_t hlen;
  size_t pay;
  uint32_t seq;
} gro_seg_t;

static int gro_candidate(const uint8_t *pkt, size_t len, gro_seg_t *s) {
  ip4_hdr_t h;
  if (ip4_parse(pkt, len, &h) != IP4_OK || !h.tcp || h.ihl != 20 || h.tot != len) return 0;
  uint8_t flags = pkt[20 + 13];
  if (flags != 0x10 && flags != 0x18) return 0; /* ACK or ACK|PSH */
  s->hlen = 20 + h.thl;
  if (len <= s->hlen) return 0;
  s->pay = len - s->hlen;
  uint32_t seq;
  memcpy(&seq, pkt + 24, 4);
  s->seq = ntohl(seq);
  return 1;
}

/* True when candidate b (header s) continues the pending packet a: same
 * flow, the next bytes, the same headers otherwise. Both were checked by
 * gro_candidate, so both have s->hlen header bytes. */
static int gro_continues(const gro_t *g, const uint8_t *a, const uint8_t *b, const gro_seg_t *s) {
  if (s->hlen != g->hlen || s->seq != g->next_seq || s->pay > g->mss) return 0;
  if (memcmp(a + 12, b + 12, 8) != 0) return 0;                     /* addresses */
  if (a[1] != b[1] || a[8] != b[8] || ((a[6] ^ b[6]) & 0x40)) return 0; /* TOS, TTL, DF */
  if (memcmp(a + 20, b + 20, 4) != 0) return 0;                     /* ports */
  if (memcmp(a + 28, b + 28, 4) != 0) return 0;                     /* ack */
  if (memcmp(a + 34, b + 34, 2) != 0) return 0;                     /* window */
  return memcmp(a + 40, b + 40, s->hlen - 40) == 0;                 /* options (timestamps) */
}

void gro_flush(gro_t *g) {
  if (!g->segs) return;
  struct virtio_net_hdr h;
  memset(&h, 0, sizeof(h));
  uint8_t *pkt = g->buf + TCPSEG_VNET_LEN;
  if (g->segs > 1) {
    h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
    h.gso_size = (uint16_t)g->mss;
    h.hdr_len = (uint16_t)g->hlen;
    h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    h.csum_start = 20;
    h.csum_offset = 16;
    uint16_t tot = htons((uint16_t)g->len);
    memcpy(pkt + 2, &tot, 2);
    ip_fix_checksum(pkt, 20);
    uint16_t ps = htons(fold(pseudo_sum(pkt, g->len - 20)));
    memcpy(pkt + 36, &ps, 2);
  }
  memcpy(g->buf, &h, sizeof(h));
  size_t len = g->len;
  int segs = g->segs;
  g->len = 0;
  g->segs = 0;
  g->emit(g->ctx, g->buf, TCPSEG_VNET_LEN + len, segs);
}

void gro_add(gro_t *g, const uint8_t *pkt, size_t len) {
  gro_seg_t s;
  int candidate = gro_candidate(pkt, len, &s);
  uint8_t *head = g->buf + TCPSEG_VNET_LEN;
  if (candidate && g->segs && g->segs < TCPSEG_MERGE_MAX && g->len + s.pay <= TCPSEG_SUPER_MAX - 256 &&
      gro_continues(g, head, pkt, &s)) {
    memcpy(head + g->len, pkt + s.hlen, s.pay);
    g->len += s.pay;
    g->segs++;
    g->next_seq += (uint32_t)s.pay;
    head[33] |= pkt[33]; /* keep PSH of the last */
    if (s.pay < g->mss || (pkt[33] & 0x08)) gro_flush(g); /* a short or pushed segment ends the run */
    return;
  }
  gro_flush(g);
  if (len > TCPSEG_SUPER_MAX) return; /* never from the loop (it drops what exceeds the MTU) */
  memcpy(head, pkt, len);
  g->len = len;
  g->segs = 1;
  if (!candidate) {
    gro_flush(g); /* not mergeable: delivered as it is */
    return;
  }
  g->hlen = s.hlen;
  g->mss = s.pay;
  g->next_seq = s.seq + (uint32_t)s.pay;
  if (pkt[33] & 0x08) gro_flush(g); /* PSH: deliver now */
}
