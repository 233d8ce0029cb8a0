/* TCP/IPv4 segmentation (super-packets from the TUN cut into wire packets)
 * and coalescing (wire packets merged back into super-packets for the TUN).
 * Pure packet code: no system calls, no loop state, so that it can be run
 * on its own (the sanitizer harness in the tests links this file). Every
 * header field is read through ip4_parse (packet.h). */
#ifndef FLANNEL_UDP_TCPSEG_H
#define FLANNEL_UDP_TCPSEG_H

#include <stddef.h>
#include <stdint.h>
#include <linux/virtio_net.h>

#include "packet.h"

#define TCPSEG_VNET_LEN ((size_t)sizeof(struct virtio_net_hdr))
/* Largest packet read from or written to the TUN (without the virtio header). */
#define TCPSEG_SUPER_MAX 65536
/* Most segments merged into one super-packet. */
#define TCPSEG_MERGE_MAX 64

/* ---- TUN -> UDP ---- */

/* What to do with one packet read from a TUN with a virtio header. */
enum {
  TSO_MALFORMED = -1, /* drop (and count): headers or virtio header inconsistent */
  TSO_SEND = 0,       /* send as it is, one datagram */
  TSO_SEGMENT = 1,    /* a TCP super-packet: take its segments with tso_next */
};

typedef struct {
  const uint8_t *pkt;
  size_t hlen;    /* IPv4 + TCP header length */
  size_t ihl;
  size_t payload; /* TCP payload bytes of the super-packet */
  size_t mss;     /* payload bytes per segment, at least 1 */
  size_t off;     /* payload bytes already cut */
  uint16_t id0;
  uint32_t seq0;
  uint8_t flags;
  unsigned index;
} tso_t;

/* Checks pkt (len bytes, read behind virtio header h) and prepares it: a
 * checksum left for us to finish (VIRTIO_NET_HDR_F_NEEDS_CSUM) is finished
 * in place when the packet is sent as one. For TSO_SEGMENT, the segments
 * are mss = min(gso_size, mtu - headers) payload bytes each; pkt must stay
 * unchanged (but for its TTL and header checksum) until the last tso_next. */
int tso_begin(tso_t *t, const struct virtio_net_hdr *h, uint8_t *pkt, size_t len, size_t mtu);

/* Writes the next segment (a complete IPv4/TCP packet, both checksums set,
 * at most mtu bytes) into out. Returns its length, or 0 when all are out. */
size_t tso_next(tso_t *t, uint8_t *out);

/* ---- UDP -> TUN ---- */

/* Receives each packet the coalescer is done with: buf starts with the
 * virtio header (zero for a packet that was not merged), len counts it
 * too; segs is how many wire packets it holds. */
typedef void (*gro_emit_fn)(void *ctx, uint8_t *buf, size_t len, int segs);

typedef struct {
  uint8_t *buf; /* TCPSEG_VNET_LEN + TCPSEG_SUPER_MAX bytes, the caller's */
  gro_emit_fn emit;
  void *ctx;
  /* the pending packet */
  size_t len;  /* without the virtio header */
  size_t hlen; /* its IPv4 + TCP header length */
  size_t mss;  /* payload of its first segment */
  int segs;    /* wire packets in it; 0 when none is pending */
  uint32_t next_seq;
} gro_t;

/* Takes one inner packet accepted from a peer (len bytes): merged into the
 * pending super-packet when it continues it; otherwise the pending one is
 * emitted and this one becomes pending (when it can start a run) or is
 * emitted unchanged. Only unfragmented IPv4/TCP packets without IP options,
 * whose total length is exactly len, with a whole TCP header, payload and
 * ACK or ACK|PSH alone are merged; all else passes through as it is. */
void gro_add(gro_t *g, const uint8_t *pkt, size_t len);

/* Emits the pending packet, if any. */
void gro_flush(gro_t *g);

#endif
