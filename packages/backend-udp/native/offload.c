#define _GNU_SOURCE
#include "offload.h"

#include <errno.h>

int offload_setup_socket(int sock_fd) {
  errno = ENOTSUP;
  return -1;
}
int offload_setup_tun(int tun_fd) {
  errno = ENOTSUP;
  return -1;
}
void *offload_tun_thread(void *arg) { return NULL; }
void *offload_udp_thread(void *arg) { return NULL; }
