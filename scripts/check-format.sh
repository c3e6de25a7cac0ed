#!/usr/bin/env bash
# Checks that the C sources follow .clang-format (clang-format from Debian).
# Prints the files that differ and exits 1 when there is one; `make format`
# rewrites them. Usage: scripts/check-format.sh
set -uo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "check-format: clang-format is missing (scripts/deps.sh installs it)"; exit 1; }
bad=0
while IFS= read -r f; do
  if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then echo "not formatted: $f (make format)"; bad=1; fi
done < <(ls src/*.c src/*/*.[ch] tests/unit/*.[ch] tests/fuzz/*.[ch] 2>/dev/null)
[ $bad -eq 0 ] && echo "format: every C file follows .clang-format"
exit $bad
