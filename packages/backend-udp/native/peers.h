/* Peer table: subnet -> (PublicIP, port), written from JavaScript, read by the
 * forwarding threads without locks on the fast path (each thread keeps its own
 * snapshot and refreshes it when the generation counter moves). */
#ifndef FLANNEL_UDP_PEERS_H
#define FLANNEL_UDP_PEERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef struct {
  uint32_t net;  /* network byte order, already masked */
  uint32_t mask; /* network byte order */
  uint32_t addr; /* peer PublicIP, network byte order */
  uint16_t port; /* network byte order */
  uint8_t prefix;
} peer_t;

typedef struct {
  pthread_mutex_t lock;
  atomic_uint gen;
  peer_t *items; /* sorted by prefix length, longest first */
  int len, cap;
} peer_table_t;

/* A thread's private copy of the table. */
typedef struct {
  unsigned gen;
  peer_t *items;
  int len, cap;
  int last; /* index of the last hit (most recently used), -1 when none */
} peer_view_t;

void peers_init(peer_table_t *t);
void peers_destroy(peer_table_t *t);
/* Inserts or replaces the entry for net/prefix. Returns 0, or -1 on ENOMEM. */
int peers_set(peer_table_t *t, uint32_t net, int prefix, uint32_t addr, uint16_t port);
/* Removes the entry for net/prefix. Returns 1 when removed, 0 when absent. */
int peers_del(peer_table_t *t, uint32_t net, int prefix);
int peers_count(peer_table_t *t);
/* Copies up to max entries (longest prefix first) into out; returns the table's length. */
int peers_copy(peer_table_t *t, peer_t *out, int max);

void view_init(peer_view_t *v);
void view_destroy(peer_view_t *v);
/* Refreshes the view when the table changed (cheap atomic compare otherwise). */
void view_refresh(peer_view_t *v, peer_table_t *t);
/* Longest-prefix match of a destination (network order); NULL when none. */
const peer_t *view_route(peer_view_t *v, uint32_t dst);
/* Result of checking a datagram's sender and its inner source address. */
enum { SRC_OK = 0, SRC_UNKNOWN_PEER = 1, SRC_SPOOFED = 2 };
int view_check_source(peer_view_t *v, uint32_t from_addr, uint16_t from_port, uint32_t inner_src);

#endif
