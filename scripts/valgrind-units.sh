#!/usr/bin/env bash
# Runs every unit test (build/test_*) under valgrind memcheck: any error or
# definite/indirect/possible leak fails the run. Usage: scripts/valgrind-units.sh [BUILD_DIR]
# (a RelWithDebInfo build without sanitizers; the default is build/).
set -uo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
failed=0
for t in "$B"/test_*; do
  [ -x "$t" ] || continue
  log="$B/valgrind-$(basename "$t").log"
  if (cd "$B" && valgrind --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible \
      --errors-for-leak-kinds=definite,indirect,possible --track-fds=no --quiet "./$(basename "$t")") >"$log" 2>&1; then
    echo "valgrind $(basename "$t"): clean"
  else
    echo "valgrind $(basename "$t"): FAILED (see $log)"
    failed=$((failed + 1))
  fi
done
echo "valgrind: $failed failed"
[ "$failed" -eq 0 ]
