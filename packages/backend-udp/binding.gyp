{
  "targets": [
    {
      "target_name": "flannel_udp",
      "sources": [
        "native/addon.c",
        "native/loop.c",
        "native/peers.c",
        "native/packet.c",
        "native/offload.c",
        "native/tcpseg.c"
      ],
      "cflags": ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-lpthread"]
    }
  ]
}
