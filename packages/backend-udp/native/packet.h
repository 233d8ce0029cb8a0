/* IPv4 packet helpers with flanneld's exact semantics (spec: udp-wire.md). */
#ifndef FLANNEL_UDP_PACKET_H
#define FLANNEL_UDP_PACKET_H

#include <stddef.h>
#include <stdint.h>

/* An IPv4 header (and a TCP header behind it) checked against the bytes
 * actually there. Every packet path reads header fields only through this:
 * after ip4_parse returned IP4_OK, 20 <= ihl <= tot <= the buffer's length,
 * and when `tcp` is set, 20 <= thl and ihl + thl <= tot. */
typedef struct {
  size_t ihl;       /* header length in bytes (IHL * 4) */
  size_t tot;       /* the total-length field */
  uint8_t proto;
  uint8_t df;       /* don't-fragment set */
  uint8_t fragment; /* more-fragments set or a non-zero fragment offset */
  uint16_t frag_off; /* fragment offset (8-byte units); non-zero: not the first fragment */
  uint8_t tcp;      /* an unfragmented TCP packet with a whole TCP header */
  size_t thl;       /* TCP header length in bytes (data offset * 4) when tcp, else 0 */
} ip4_hdr_t;

/* Why ip4_parse refused a packet. */
enum {
  IP4_OK = 0,
  IP4_SHORT = 1,            /* fewer than 20 bytes */
  IP4_NOT_V4 = 2,           /* version is not 4 */
  IP4_BAD_IHL = 3,          /* IHL below 5, or a header longer than the bytes there */
  IP4_BAD_TOTAL_LENGTH = 4, /* total length below the header length or above the bytes there */
};

/* Parses the headers of pkt (len bytes). Bytes past the total length
 * (padding) are allowed here; paths that need an exact packet compare tot
 * with len themselves. Returns IP4_OK or the reason; h is filled on IP4_OK. */
int ip4_parse(const uint8_t *pkt, size_t len, ip4_hdr_t *h);

/* Decrements the TTL and patches the header checksum incrementally the way
 * flanneld does. Returns 0 when the TTL reached zero (drop), 1 otherwise. */
int ip_decrement_ttl(uint8_t *pkt);

/* Builds flanneld's ICMP "net unreachable" reply to `pkt` (len bytes) into
 * out (at least 128 bytes). src is the TUN address (network order). Returns
 * the reply's length, or 0 when flanneld would not answer (ICMP offender,
 * non-first fragment, header of 60 bytes or more) or the offender's header
 * does not parse (ip4_parse). */
size_t icmp_net_unreachable(const uint8_t *pkt, size_t len, uint32_t src, uint8_t *out);

/* Internet checksum of a buffer, folded and complemented. */
uint16_t inet_checksum(const void *data, size_t len);

#endif
