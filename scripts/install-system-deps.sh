#!/usr/bin/env bash
# Installs the Debian packages that tests and benchmarks use, when they are missing:
#   openssl  — independent certificate checks in the identity tests
#   nginx    — auth_request tests and the sidecar benchmark peer (enforcement)
#   curl     — a real client with client certificates (HTTP/1.1 and HTTP/2) against the sidecar
#   chromium — the real browser (through playwright-core) for the access proxy's login flows
# Safe to run again; does nothing when everything is present. Needs root (or sudo) for apt-get.
set -euo pipefail

want=(openssl nginx curl chromium)
missing=()
for pkg in "${want[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
