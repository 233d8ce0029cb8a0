/* The forwarding loop: TUN <-> UDP on its own thread(s). */
#ifndef FLANNEL_UDP_LOOP_H
#define FLANNEL_UDP_LOOP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "peers.h"

/* Counters exposed to JavaScript; names match the JS `UdpCounters` keys. */
#define LOOP_COUNTERS(X)  \
  X(txPackets)            \
  X(txBytes)              \
  X(rxPackets)            \
  X(rxBytes)              \
  X(dropUnknownPeer)      \
  X(dropSpoofedSource)    \
  X(dropTtl)              \
  X(dropMalformed)        \
  X(dropTruncated)        \
  X(dropNoRoute)          \
  X(icmpUnreachableSent)  \
  X(sendErrors)           \
  X(tunWriteErrors)       \
  X(tunReads)             \
  X(superPackets)         \
  X(udpSendCalls)         \
  X(udpRecvCalls)

typedef struct {
#define X(name) atomic_uint_fast64_t name;
  LOOP_COUNTERS(X)
#undef X
} loop_counters_t;

enum { MODE_SINGLE = 0, MODE_BATCH = 1, MODE_OFFLOAD = 2 };

typedef struct {
  int tun_fd;            /* owned; closed by loop_stop */
  uint32_t bind_addr;    /* network order */
  uint16_t port;         /* host order */
  uint32_t tun_addr;     /* network order; source of ICMP replies */
  int mtu;               /* TUN MTU */
  int mode;              /* MODE_* */
  int batch;             /* packets per recvmmsg/sendmmsg */
  int verify_source;     /* drop datagrams from non-peers / spoofed inner sources */
  int vnet_hdr;          /* the TUN was opened with IFF_VNET_HDR */
} loop_config_t;

typedef struct loop loop_t;

/* Creates the UDP socket and the loop (not yet running). On failure returns
 * NULL and writes a message into err. The TUN fd is owned from here on, also
 * on failure. */
loop_t *loop_create(const loop_config_t *cfg, char *err, size_t errlen);
int loop_start(loop_t *l, char *err, size_t errlen);
/* Stops the threads, joins them, closes the TUN fd and the socket. Idempotent. */
void loop_stop(loop_t *l);
void loop_free(loop_t *l);
peer_table_t *loop_peers(loop_t *l);
loop_counters_t *loop_counters(loop_t *l);

#endif
