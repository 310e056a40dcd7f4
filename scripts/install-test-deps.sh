#!/usr/bin/env bash
# Installs the system packages the test suite drives for real. Idempotent; needs root (as in CI) or sudo.
set -euo pipefail
packages=(nghttp2-client prometheus python3-grpcio protobuf-compiler protobuf-compiler-grpc docker-compose openssl)
if [ ${#packages[@]} -eq 0 ]; then exit 0; fi
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
