#include "peers.h"

#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

static uint32_t mask_of(int prefix) {
  return prefix == 0 ? 0 : htonl(0xffffffffu << (32 - prefix));
}

void peers_init(peer_table_t *t) {
  pthread_mutex_init(&t->lock, NULL);
  atomic_init(&t->gen, 1);
  t->items = NULL;
  t->len = t->cap = 0;
}

void peers_destroy(peer_table_t *t) {
  free(t->items);
  t->items = NULL;
  t->len = t->cap = 0;
  pthread_mutex_destroy(&t->lock);
}

int peers_set(peer_table_t *t, uint32_t net, int prefix, uint32_t addr, uint16_t port) {
  uint32_t mask = mask_of(prefix);
  net &= mask;
  pthread_mutex_lock(&t->lock);
  for (int i = 0; i < t->len; i++) {
    if (t->items[i].net == net && t->items[i].prefix == prefix) {
      t->items[i].addr = addr;
      t->items[i].port = port;
      atomic_fetch_add(&t->gen, 1);
      pthread_mutex_unlock(&t->lock);
      return 0;
    }
  }
  if (t->len == t->cap) {
    int cap = t->cap ? t->cap * 2 : 16;
    peer_t *n = realloc(t->items, sizeof(peer_t) * (size_t)cap);
    if (!n) {
      pthread_mutex_unlock(&t->lock);
      return -1;
    }
    t->items = n;
    t->cap = cap;
  }
  /* keep longest prefixes first so that the first match is the longest */
  int at = t->len;
  while (at > 0 && t->items[at - 1].prefix < prefix) at--;
  memmove(&t->items[at + 1], &t->items[at], sizeof(peer_t) * (size_t)(t->len - at));
  t->items[at] = (peer_t){.net = net, .mask = mask, .addr = addr, .port = port, .prefix = (uint8_t)prefix};
  t->len++;
  atomic_fetch_add(&t->gen, 1);
  pthread_mutex_unlock(&t->lock);
  return 0;
}

int peers_del(peer_table_t *t, uint32_t net, int prefix) {
  net &= mask_of(prefix);
  int removed = 0;
  pthread_mutex_lock(&t->lock);
  for (int i = 0; i < t->len; i++) {
    if (t->items[i].net == net && t->items[i].prefix == prefix) {
      memmove(&t->items[i], &t->items[i + 1], sizeof(peer_t) * (size_t)(t->len - i - 1));
      t->len--;
      removed = 1;
      break;
    }
  }
  if (removed) atomic_fetch_add(&t->gen, 1);
  pthread_mutex_unlock(&t->lock);
  return removed;
}

int peers_count(peer_table_t *t) {
  pthread_mutex_lock(&t->lock);
  int n = t->len;
  pthread_mutex_unlock(&t->lock);
  return n;
}

int peers_copy(peer_table_t *t, peer_t *out, int max) {
  pthread_mutex_lock(&t->lock);
  int n = t->len;
  if (n > 0 && max > 0) memcpy(out, t->items, sizeof(peer_t) * (size_t)(n < max ? n : max));
  pthread_mutex_unlock(&t->lock);
  return n;
}

void view_init(peer_view_t *v) {
  memset(v, 0, sizeof(*v));
  v->last = -1;
}

void view_destroy(peer_view_t *v) {
  free(v->items);
  memset(v, 0, sizeof(*v));
}

void view_refresh(peer_view_t *v, peer_table_t *t) {
  unsigned gen = atomic_load_explicit(&t->gen, memory_order_acquire);
  if (gen == v->gen) return;
  pthread_mutex_lock(&t->lock);
  if (t->len > v->cap) {
    peer_t *n = realloc(v->items, sizeof(peer_t) * (size_t)t->cap);
    if (!n) { /* keep the old view; try again on the next batch */
      pthread_mutex_unlock(&t->lock);
      return;
    }
    v->items = n;
    v->cap = t->cap;
  }
  if (t->len) memcpy(v->items, t->items, sizeof(peer_t) * (size_t)t->len);
  v->len = t->len;
  v->gen = atomic_load(&t->gen);
  v->last = -1;
  pthread_mutex_unlock(&t->lock);
}

const peer_t *view_route(peer_view_t *v, uint32_t dst) {
  /* The last hit is only a valid answer if no longer prefix sits before it. */
  for (int i = 0; i < v->len; i++) {
    if ((dst & v->items[i].mask) == v->items[i].net) {
      v->last = i;
      return &v->items[i];
    }
  }
  return NULL;
}

int view_check_source(peer_view_t *v, uint32_t from_addr, uint16_t from_port, uint32_t inner_src) {
  if (v->last >= 0 && v->last < v->len) {
    const peer_t *p = &v->items[v->last];
    if (p->addr == from_addr && p->port == from_port && (inner_src & p->mask) == p->net) return SRC_OK;
  }
  int known = 0;
  for (int i = 0; i < v->len; i++) {
    const peer_t *p = &v->items[i];
    if (p->addr != from_addr || p->port != from_port) continue;
    known = 1;
    if ((inner_src & p->mask) == p->net) {
      v->last = i;
      return SRC_OK;
    }
  }
  return known ? SRC_SPOOFED : SRC_UNKNOWN_PEER;
}
