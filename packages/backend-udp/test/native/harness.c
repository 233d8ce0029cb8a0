/* Test harness for the datapath's packet code (native/packet.c, tcpseg.c,
 * peers.c), built by the tests with AddressSanitizer and UBSan. Each input
 * packet sits in a heap block of exactly its length, so that any read past
 * it is reported. It checks what the code promises about its output and
 * prints one line per record on stdout; a broken promise is printed on
 * stderr ("violation: ...") and makes the exit status 3.
 *
 * Input (file named by argv[1], little endian): records of
 *   u8 op, u32 body length, body
 * op 'P': body = one packet: ip4_parse, the ICMP reply, TTL, source check
 *   -> "P <rc> <ihl> <tot> <proto> <fragment> <tcp> <thl> <icmp length>"
 * op 'T': body = u16 mtu, virtio_net_hdr (10 bytes), packet: tso_begin/next
 *   -> "T <result> <segments> <payload bytes>"
 * op 'G': body = (u16 length, packet) ...: gro_add each, then gro_flush
 *   -> "G <packets out> <segments of each, comma separated>"
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "packet.h"
#include "peers.h"
#include "tcpseg.h"

static unsigned record;
static int violations;

static void violation(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "violation: record %u: ", record);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  violations++;
}

/* A copy of b[0..len) in a heap block of exactly len bytes. */
static uint8_t *exact(const uint8_t *b, size_t len) {
  uint8_t *p = malloc(len);
  if (!p && len) abort();
  if (len) memcpy(p, b, len);
  return p;
}

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* The TCP checksum of an IPv4/TCP packet is right (sums to 0xffff). */
static int tcp_checksum_ok(const uint8_t *ip, size_t ihl, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 12; i < 20; i += 2) sum += (uint32_t)(ip[i] << 8 | ip[i + 1]);
  sum += 6 + (uint32_t)(len - ihl);
  const uint8_t *p = ip + ihl;
  size_t n = len - ihl;
  for (size_t i = 0; i + 1 < n; i += 2) sum += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (n & 1) sum += (uint32_t)(p[n - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return sum == 0xffff;
}

static void run_parse(const uint8_t *body, size_t len) {
  uint8_t *pkt = exact(body, len);
  ip4_hdr_t h;
  memset(&h, 0, sizeof(h));
  int rc = ip4_parse(pkt, len, &h);
  if (rc == IP4_OK) {
    if (h.ihl < 20 || h.ihl > h.tot || h.tot > len) violation("ip4_parse: ihl %zu tot %zu len %zu", h.ihl, h.tot, len);
    if (h.tcp && (h.thl < 20 || h.ihl + h.thl > h.tot)) violation("ip4_parse: thl %zu beyond tot %zu", h.thl, h.tot);
    if (!h.tcp && h.thl) violation("ip4_parse: thl without tcp");
  }
  uint8_t *reply = malloc(128);
  size_t n = icmp_net_unreachable(pkt, len, htonl(0x0a050100), reply);
  if (n > 128) violation("icmp reply of %zu bytes", n);
  if (n && rc != IP4_OK) violation("icmp reply to a packet that does not parse (%d)", rc);
  if (n && (inet_checksum(reply, 20) != 0 || inet_checksum(reply + 20, n - 20) != 0)) violation("icmp checksums");
  free(reply);
  if (len >= 20) {
    uint8_t *copy = exact(pkt, len);
    ip_decrement_ttl(copy);
    free(copy);
    peer_table_t t;
    peers_init(&t);
    peers_set(&t, htonl(0x0a050300), 24, htonl(0xc0000203), htons(8285));
    peers_set(&t, htonl(0x0a050000), 16, htonl(0xc0000204), htons(8285));
    peer_view_t v;
    view_init(&v);
    view_refresh(&v, &t);
    uint32_t src;
    memcpy(&src, pkt + 12, 4);
    view_check_source(&v, htonl(0xc0000203), htons(8285), src);
    view_destroy(&v);
    peers_destroy(&t);
  }
  printf("P %d %zu %zu %u %u %u %zu %zu\n", rc, h.ihl, h.tot, rc == IP4_OK ? h.proto : 0, h.fragment, h.tcp, h.thl, n);
  free(pkt);
}

static void run_tso(const uint8_t *body, size_t blen) {
  if (blen < 2 + TCPSEG_VNET_LEN) {
    violation("short T record");
    return;
  }
  size_t mtu = le16(body);
  struct virtio_net_hdr vh;
  memcpy(&vh, body + 2, sizeof(vh));
  size_t len = blen - 2 - TCPSEG_VNET_LEN;
  const uint8_t *orig = body + 2 + TCPSEG_VNET_LEN;
  uint8_t *pkt = exact(orig, len);
  tso_t t;
  int rc = tso_begin(&t, &vh, pkt, len, mtu);
  unsigned segs = 0;
  size_t bytes = 0;
  if (rc == TSO_SEGMENT) {
    ip4_hdr_t h;
    if (ip4_parse(pkt, len, &h) != IP4_OK || !h.tcp) violation("segmenting a packet that does not parse");
    size_t hlen = h.ihl + h.thl;
    for (;;) {
      uint8_t *out = malloc(mtu);
      size_t slen = tso_next(&t, out);
      if (!slen) {
        free(out);
        break;
      }
      segs++;
      ip4_hdr_t s;
      if (slen > mtu) violation("segment of %zu bytes, mtu %zu", slen, mtu);
      else if (ip4_parse(out, slen, &s) != IP4_OK || !s.tcp || s.tot != slen || s.ihl != h.ihl || s.thl != h.thl)
        violation("segment %u does not parse as the super-packet's headers", segs);
      else if (inet_checksum(out, s.ihl) != 0 || !tcp_checksum_ok(out, s.ihl, slen))
        violation("segment %u checksums", segs);
      else if (memcmp(out + hlen, pkt + hlen + bytes, slen - hlen) != 0)
        violation("segment %u payload is not the super-packet's bytes", segs);
      else if (ntohl(*(const uint32_t *)(const void *)(out + h.ihl + 4)) != ntohl(*(const uint32_t *)(const void *)(pkt + h.ihl + 4)) + (uint32_t)bytes)
        violation("segment %u sequence number", segs);
      bytes += slen - hlen;
      free(out);
      if (segs > 70000) {
        violation("no end of segments");
        break;
      }
    }
    if (bytes != len - hlen) violation("segments carry %zu of %zu payload bytes", bytes, len - hlen);
  } else if (rc != TSO_SEND && rc != TSO_MALFORMED) {
    violation("tso_begin returned %d", rc);
  }
  printf("T %d %u %zu\n", rc, segs, bytes);
  free(pkt);
}

typedef struct {
  uint8_t **in;
  size_t *lens;
  int count;
  int cursor;
  char out[4096];
  int emitted;
} gro_check_t;

/* Checks each packet the coalescer hands over against the inputs it came from. */
static void on_emit(void *ctx, uint8_t *buf, size_t len, int segs) {
  gro_check_t *c = ctx;
  const uint8_t *pkt = buf + TCPSEG_VNET_LEN;
  size_t plen = len - TCPSEG_VNET_LEN;
  struct virtio_net_hdr vh;
  memcpy(&vh, buf, sizeof(vh));
  size_t used = strlen(c->out);
  snprintf(c->out + used, sizeof(c->out) - used, "%s%d", c->emitted ? "," : "", segs);
  c->emitted++;
  if (segs < 1 || c->cursor + segs > c->count) {
    violation("emitted %d segments with %d of %d inputs left", segs, c->count - c->cursor, c->count);
    return;
  }
  int first = c->cursor;
  c->cursor += segs;
  if (segs == 1) {
    static const uint8_t zero[sizeof(struct virtio_net_hdr)];
    if (memcmp(buf, zero, sizeof(zero)) != 0) violation("a single packet with a virtio header");
    if (plen != c->lens[first] || memcmp(pkt, c->in[first], plen) != 0) violation("packet %d not passed through as it is", first);
    return;
  }
  ip4_hdr_t h;
  if (ip4_parse(pkt, plen, &h) != IP4_OK || !h.tcp || h.ihl != 20 || h.tot != plen) {
    violation("merged packet does not parse");
    return;
  }
  size_t hlen = 20 + h.thl;
  if (vh.gso_type != VIRTIO_NET_HDR_GSO_TCPV4 || vh.hdr_len != hlen || vh.csum_start != 20 || vh.csum_offset != 16)
    violation("merged packet's virtio header");
  if (inet_checksum(pkt, 20) != 0) violation("merged packet's IP checksum");
  /* the same headers as the first input but for total length, IP id, checksums, sequence, PSH */
  static const int skip[] = {2, 3, 4, 5, 10, 11, 24, 25, 26, 27, 33, 36, 37};
  uint8_t flags = 0;
  size_t off = hlen;
  for (int i = first; i < first + segs; i++) {
    ip4_hdr_t s;
    if (ip4_parse(c->in[i], c->lens[i], &s) != IP4_OK || !s.tcp || s.ihl != 20 || s.tot != c->lens[i] || 20 + s.thl != hlen) {
      violation("input %d merged although its headers do not parse as the first's", i);
      return;
    }
    for (size_t b = 0; b < hlen; b++) {
      int ignore = 0;
      for (size_t k = 0; k < sizeof(skip) / sizeof(skip[0]); k++) ignore |= (size_t)skip[k] == b;
      if (!ignore && c->in[i][b] != c->in[first][b]) violation("input %d merged with a different header byte %zu", i, b);
      if (!ignore && i == first && pkt[b] != c->in[first][b]) violation("merged header byte %zu changed", b);
    }
    flags |= c->in[i][33];
    size_t pay = c->lens[i] - hlen;
    if (off + pay > plen || memcmp(pkt + off, c->in[i] + hlen, pay) != 0) violation("input %d payload not in place", i);
    off += pay;
  }
  if (off != plen) violation("merged packet of %zu bytes, inputs %zu", plen, off);
  if (pkt[33] != flags) violation("merged TCP flags %#x, inputs %#x", pkt[33], flags);
}

static void run_gro(const uint8_t *body, size_t blen) {
  gro_check_t c;
  memset(&c, 0, sizeof(c));
  c.in = calloc(blen / 2 + 1, sizeof(*c.in));
  c.lens = calloc(blen / 2 + 1, sizeof(*c.lens));
  for (size_t at = 0; at + 2 <= blen;) {
    size_t len = le16(body + at);
    at += 2;
    if (len > blen - at) {
      violation("short G record");
      break;
    }
    c.in[c.count] = exact(body + at, len);
    c.lens[c.count] = len;
    c.count++;
    at += len;
  }
  gro_t g = {.buf = malloc(TCPSEG_VNET_LEN + TCPSEG_SUPER_MAX), .emit = on_emit, .ctx = &c};
  for (int i = 0; i < c.count; i++) gro_add(&g, c.in[i], c.lens[i]);
  gro_flush(&g);
  if (c.cursor != c.count) violation("%d of %d packets came out", c.cursor, c.count);
  printf("G %d %s\n", c.emitted, c.emitted ? c.out : "-");
  for (int i = 0; i < c.count; i++) free(c.in[i]);
  free(c.in);
  free(c.lens);
  free(g.buf);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s CORPUS\n", argv[0]);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0); /* lines before a sanitizer's abort must get out */
  FILE *f = fopen(argv[1], "rb");
  if (!f) {
    perror(argv[1]);
    return 2;
  }
  uint8_t head[5];
  while (fread(head, 1, 5, f) == 5) {
    size_t len = (size_t)head[1] | (size_t)head[2] << 8 | (size_t)head[3] << 16 | (size_t)head[4] << 24;
    uint8_t *body = malloc(len ? len : 1);
    if (!body || fread(body, 1, len, f) != len) {
      fprintf(stderr, "record %u: truncated corpus\n", record);
      return 2;
    }
    if (head[0] == 'P') run_parse(body, len);
    else if (head[0] == 'T') run_tso(body, len);
    else if (head[0] == 'G') run_gro(body, len);
    else violation("unknown op %u", head[0]);
    free(body);
    record++;
  }
  fclose(f);
  fflush(stdout);
  return violations ? 3 : 0;
}
