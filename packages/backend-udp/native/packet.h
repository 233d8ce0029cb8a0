/* IPv4 packet helpers with flanneld's exact semantics (spec: udp-wire.md). */
#ifndef FLANNEL_UDP_PACKET_H
#define FLANNEL_UDP_PACKET_H

#include <stddef.h>
#include <stdint.h>

/* Decrements the TTL and patches the header checksum incrementally the way
 * flanneld does. Returns 0 when the TTL reached zero (drop), 1 otherwise. */
int ip_decrement_ttl(uint8_t *pkt);

/* Builds flanneld's ICMP "net unreachable" reply to `pkt` (len bytes) into
 * out (at least 128 bytes). src is the TUN address (network order). Returns
 * the reply's length, or 0 when flanneld would not answer (ICMP offender,
 * non-first fragment, header of 60 bytes or more). */
size_t icmp_net_unreachable(const uint8_t *pkt, size_t len, uint32_t src, uint8_t *out);

/* Internet checksum of a buffer, folded and complemented. */
uint16_t inet_checksum(const void *data, size_t len);

#endif
