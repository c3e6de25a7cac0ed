#!/usr/bin/env bash
# Installs the Debian packages flowcast needs to build, test and run.
# Idempotent: installs only what is missing. Uses sudo when not root.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config git
  node-llhttp libuv1-dev libjansson-dev libsqlite3-dev
  libwslay-dev libjwt-dev libsodium-dev libhiredis-dev libssl-dev
  libcmocka-dev sqlite3 liburing-dev
  redis-server # cluster-mode tests start their own on a free port; flowcast itself needs only libhiredis
  clang libclang-rt-dev clang-format
  chromium
  man-db groff-base
  python3-prometheus-client # tests: the strict OpenMetrics and Prometheus parsers check /metrics
  libnghttp2-dev # HTTP/2 (over TLS by ALPN, and h2c)
  nghttp2-client python3-h2 # tests and bench: nghttp, h2load, hostile HTTP/2 clients
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

# node and npm may come from elsewhere (NodeSource ships npm inside nodejs, and
# Debian's npm package then conflicts): only install them when the commands are missing.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
