/* Offload mode: TCP super-packets from the TUN (IFF_VNET_HDR + TSO), segmented
 * here into wire-format IPv4 packets and sent with UDP GSO; UDP GRO on receive. */
#ifndef FLANNEL_UDP_OFFLOAD_H
#define FLANNEL_UDP_OFFLOAD_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "loop.h"

int offload_setup_socket(int sock_fd);
/* Enables TSO on a TUN opened with IFF_VNET_HDR. */
int offload_setup_tun(int tun_fd);
void *offload_tun_thread(void *arg);
void *offload_udp_thread(void *arg);

/* Loop internals shared with offload.c. */
int loop_tun_fd(loop_t *l);
int loop_sock_fd(loop_t *l);
const loop_config_t *loop_config(loop_t *l);
int loop_wait_readable(loop_t *l, int fd);
int loop_stopping(loop_t *l);
/* Writes buf as is (it already starts with the virtio header). */
void loop_tun_write_raw(loop_t *l, const void *buf, size_t len);
const peer_t *loop_outbound(loop_t *l, peer_view_t *v, uint8_t *pkt, size_t len);
int loop_inbound(loop_t *l, peer_view_t *v, const struct sockaddr_in *from, uint8_t *pkt, size_t len);
void loop_send_all(loop_t *l, struct mmsghdr *msgs, int count);

#endif
