#include "packet.h"

#include <string.h>
#include <arpa/inet.h>

uint16_t inet_checksum(const void *data, size_t len) {
  const uint8_t *p = data;
  uint64_t sum = 0;
  while (len > 1) {
    sum += (uint32_t)(p[0] << 8 | p[1]);
    p += 2;
    len -= 2;
  }
  if (len) sum += (uint32_t)(p[0] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons((uint16_t)~sum);
}

int ip4_parse(const uint8_t *pkt, size_t len, ip4_hdr_t *h) {
  if (len < 20) return IP4_SHORT;
  if ((pkt[0] >> 4) != 4) return IP4_NOT_V4;
  size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;
  if (ihl < 20 || ihl > len) return IP4_BAD_IHL;
  size_t tot = (size_t)pkt[2] << 8 | pkt[3];
  if (tot < ihl || tot > len) return IP4_BAD_TOTAL_LENGTH;
  uint16_t frag = (uint16_t)(pkt[6] << 8 | pkt[7]);
  h->ihl = ihl;
  h->tot = tot;
  h->proto = pkt[9];
  h->df = (frag & 0x4000) != 0;
  h->fragment = (frag & 0x3fff) != 0;
  h->frag_off = (uint16_t)(frag & 0x1fff);
  h->tcp = 0;
  h->thl = 0;
  if (h->proto == 6 && !h->fragment && tot - ihl >= 20) {
    size_t thl = (size_t)(pkt[ihl + 12] >> 4) * 4;
    if (thl >= 20 && thl <= tot - ihl) {
      h->tcp = 1;
      h->thl = thl;
    }
  }
  return IP4_OK;
}

int ip_decrement_ttl(uint8_t *pkt) {
  if (--pkt[8] == 0) return 0;
  /* RFC 1624 style, as flanneld: add 0x0100 (network order) with end-around carry */
  uint16_t check;
  memcpy(&check, pkt + 10, 2);
  if (check >= htons(0xffffu - 0x100)) {
    check += htons(0x100) + 1;
  } else {
    check += htons(0x100);
  }
  memcpy(pkt + 10, &check, 2);
  return 1;
}

size_t icmp_net_unreachable(const uint8_t *pkt, size_t len, uint32_t src, uint8_t *out) {
  ip4_hdr_t h;
  if (ip4_parse(pkt, len, &h) != IP4_OK) return 0;
  size_t ihl = h.ihl;
  if (h.proto == 1 /* ICMP */ || h.frag_off != 0 || ihl >= 60) return 0;
  size_t quoted = ihl + 8;
  size_t total = 20 + 8 + quoted;
  memset(out, 0, total);
  /* IPv4 header */
  out[0] = 0x45;
  uint16_t tot = htons((uint16_t)total);
  memcpy(out + 2, &tot, 2);
  out[8] = 8; /* TTL */
  out[9] = 1; /* ICMP */
  memcpy(out + 12, &src, 4);
  memcpy(out + 16, pkt + 12, 4); /* to the offender's source */
  uint16_t c = inet_checksum(out, 20);
  memcpy(out + 10, &c, 2);
  /* ICMP destination unreachable, net unreachable, then the offender's header + 8 bytes */
  out[20] = 3;
  out[21] = 0;
  memcpy(out + 28, pkt, quoted <= len ? quoted : len);
  c = inet_checksum(out + 20, 8 + quoted);
  memcpy(out + 22, &c, 2);
  return total;
}
