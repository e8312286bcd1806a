{
  "targets": [
    {
      "target_name": "merkle",
      "sources": ["merkle.c"],
      "cflags": ["-Wall", "-Wextra", "-O2", "-Wno-deprecated-declarations"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
