#!/usr/bin/env bash
# Checks that the man page documents every option: each `--option` that
# `flowcast serve --help` and each command's --help list must appear in
# packaging/flowcast.1 (where roff writes `\-\-option`).
# Usage: scripts/check-manpage.sh [BINARY] [MANPAGE]; exits 1 naming what is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/build/flowcast}
page=${2:-$here/packaging/flowcast.1}
text=$(sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' "$page")
missing=()
for cmd in serve publish subscribe start token users backup version; do
  for opt in $("$bin" "$cmd" --help | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u); do
    case "$opt" in --help|--name) continue ;; esac
    if ! grep -qE -- "(^|[^a-z0-9-])${opt}([^a-z0-9-]|$)" <<<"$text"; then
      missing+=("$cmd $opt")
    fi
  done
done
for cmd in serve publish subscribe start token users backup version; do
  grep -qE "^\.(B|BI|TP|BR)?.*\b$cmd\b" <<<"$text" || missing+=("command $cmd")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "check-manpage: $page does not document:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi
echo "check-manpage: every option of every command is in $page"
