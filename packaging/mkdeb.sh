#!/usr/bin/env bash
# Builds the Debian package from a staged install tree.
# Usage: packaging/mkdeb.sh STAGE_DIR VERSION OUT_DIR
# STAGE_DIR holds a `make install PREFIX=/usr SYSCONFDIR=/etc` tree; the package
# goes to OUT_DIR/flowcast_VERSION_ARCH.deb (its path is printed).
set -euo pipefail
stage=$1 version=$2 out=$3
here=$(cd "$(dirname "$0")" && pwd)
arch=$(dpkg --print-architecture)
bin="$stage/usr/bin/flowcast"
[ -x "$bin" ] || { echo "mkdeb: no $bin (run make install into the stage first)" >&2; exit 1; }

# Depends: the packages that ship the shared libraries the binary links.
deps=$(ldd "$bin" | awk '/=> \//{print $3}' | while read -r lib; do
  dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || true
done | cut -d: -f1 | sort -u | paste -sd, - | sed 's/,/, /g')

mkdir -p "$stage/DEBIAN" "$out"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CONTROL
Package: flowcast
Version: $version
Architecture: $arch
Maintainer: flowcast maintainers <flowcast@localhost>
Installed-Size: $size
Depends: adduser, ${deps:-libc6}
Section: net
Priority: optional
Homepage: https://github.com/flowcast/flowcast
Description: real-time event server: publish over HTTP, subscribe over SSE and WebSocket
 flowcast keeps named, retained channels of events that clients publish to
 with HTTP POST and follow with Server-Sent Events or WebSocket, resuming
 after a disconnection. It also runs JSON workflows as jobs. The package
 ships the binary, its man page, a hardened systemd unit running as the
 system user flowcast, an example config and example workflows.
CONTROL
echo /etc/flowcast/flowcast.conf >"$stage/DEBIAN/conffiles"
install -m 755 "$here/postinst" "$here/postrm" "$stage/DEBIAN/"
deb="$out/flowcast_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
