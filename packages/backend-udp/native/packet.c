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
  size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;
  uint16_t frag;
  memcpy(&frag, pkt + 6, 2);
  if (pkt[9] == 1 /* ICMP */ || (ntohs(frag) & 0x1fff) != 0 || ihl >= 60) return 0;
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
