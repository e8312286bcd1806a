{
  "targets": [
    {
      "target_name": "p256",
      "sources": ["p256.c"],
      "cflags": ["-Wall", "-Wextra", "-O2", "-Wno-deprecated-declarations"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
