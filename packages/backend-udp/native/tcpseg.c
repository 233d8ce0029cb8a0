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

int tso_begin(tso_t *t, const struct virtio_net_hdr *h, uint8_t *pkt, size_t len, size_t mtu) {
  if (len >= 20 && (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && h->csum_start + h->csum_offset + 2u <= len) {
    /* the checksum field holds the pseudo-header sum; finish it */
    uint16_t cs = htons((uint16_t)~fold(sum16(pkt + h->csum_start, len - h->csum_start, 0)));
    if ((h->gso_type & ~VIRTIO_NET_HDR_GSO_ECN) == VIRTIO_NET_HDR_GSO_NONE) memcpy(pkt + h->csum_start + h->csum_offset, &cs, 2);
  }
  size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;
  if ((h->gso_type & ~VIRTIO_NET_HDR_GSO_ECN) != VIRTIO_NET_HDR_GSO_TCPV4 || pkt[9] != 6 || len < ihl + 20) return TSO_SEND;
  /* cut the super-packet into wire-format packets of gso_size payload */
  size_t thl = (size_t)(pkt[ihl + 12] >> 4) * 4;
  size_t hlen = ihl + thl;
  size_t mss = h->gso_size ? h->gso_size : mtu - hlen;
  if (hlen + mss > mtu) mss = mtu - hlen;
  uint32_t seq0;
  memcpy(&seq0, pkt + ihl + 4, 4);
  *t = (tso_t){
      .pkt = pkt,
      .hlen = hlen,
      .ihl = ihl,
      .payload = len - hlen,
      .mss = mss,
      .id0 = (uint16_t)(pkt[4] << 8 | pkt[5]),
      .seq0 = ntohl(seq0),
      .flags = pkt[ihl + 13],
  };
  return TSO_SEGMENT;
}

size_t tso_next(tso_t *t, uint8_t *out) {
  if (t->off >= t->payload) return 0;
  size_t off = t->off, mss = t->mss, ihl = t->ihl, hlen = t->hlen;
  size_t chunk = t->payload - off < mss ? t->payload - off : mss;
  memcpy(out, t->pkt, hlen);
  memcpy(out + hlen, t->pkt + hlen + off, chunk);
  size_t slen = hlen + chunk;
  uint16_t tot = htons((uint16_t)slen);
  memcpy(out + 2, &tot, 2);
  uint16_t id = htons((uint16_t)(t->id0 + off / mss));
  memcpy(out + 4, &id, 2);
  uint32_t seq = htonl(t->seq0 + (uint32_t)off);
  memcpy(out + ihl + 4, &seq, 4);
  int last = off + chunk >= t->payload;
  out[ihl + 13] = (uint8_t)(last ? t->flags : t->flags & ~(0x01 | 0x08)); /* FIN, PSH on the last only */
  if (off) out[ihl + 13] &= (uint8_t)~0x80;                              /* CWR on the first only */
  ip_fix_checksum(out);
  tcp_fix_checksum(out, slen);
  t->off += mss;
  t->index++;
  return slen;
}

/* ---- UDP -> TUN ---- */

/* True when b continues a (same flow, next bytes, same headers otherwise). */
static int tcp_continues(const uint8_t *a, const uint8_t *b, size_t blen, uint32_t next_seq) {
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

void gro_flush(gro_t *g) {
  if (!g->len) return;
  struct virtio_net_hdr h;
  memset(&h, 0, sizeof(h));
  uint8_t *pkt = g->buf + TCPSEG_VNET_LEN;
  if (g->segs > 1) {
    size_t thl = (size_t)(pkt[32] >> 4) * 4;
    h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
    h.gso_size = (uint16_t)g->mss;
    h.hdr_len = (uint16_t)(20 + thl);
    h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    h.csum_start = 20;
    h.csum_offset = 16;
    uint16_t tot = htons((uint16_t)g->len);
    memcpy(pkt + 2, &tot, 2);
    ip_fix_checksum(pkt);
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
  if (g->len && g->segs < TCPSEG_MERGE_MAX && g->len + len - 40 <= TCPSEG_SUPER_MAX - 256) {
    uint8_t *head = g->buf + TCPSEG_VNET_LEN;
    size_t thl = (size_t)(head[32] >> 4) * 4;
    size_t pay = len - 20 - thl;
    if (pay <= g->mss && tcp_continues(head, pkt, len, g->next_seq)) {
      memcpy(head + g->len, pkt + 20 + thl, pay);
      g->len += pay;
      g->segs++;
      g->next_seq += (uint32_t)pay;
      head[33] |= pkt[33]; /* keep PSH of the last */
      if (pay < g->mss) gro_flush(g); /* a short segment ends the run */
      return;
    }
  }
  gro_flush(g);
  memcpy(g->buf + TCPSEG_VNET_LEN, pkt, len);
  g->len = len;
  g->segs = 1;
  size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;
  if (ihl == 20 && pkt[9] == 6 && len >= 40 && len > 20 + (size_t)(pkt[32] >> 4) * 4 && (pkt[33] == 0x10 || pkt[33] == 0x18)) {
    size_t thl = (size_t)(pkt[32] >> 4) * 4;
    uint32_t seq;
    memcpy(&seq, pkt + 24, 4);
    g->mss = len - 20 - thl;
    g->next_seq = ntohl(seq) + (uint32_t)g->mss;
    if (pkt[33] & 0x08) gro_flush(g); /* PSH: deliver now */
  } else {
    gro_flush(g); /* not mergeable */
  }
}
