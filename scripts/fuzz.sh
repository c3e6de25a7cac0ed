#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang, ASan and UBSan,
# and runs each for FUZZ_SECONDS (default 60) from its seed corpus in
# tests/fuzz/corpus/<target>/. New inputs go to build-fuzz/corpus/<target>/ (the
# seeds are not written to); a crash leaves its input in build-fuzz/artifacts/
# and makes this script fail. Usage: scripts/fuzz.sh [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-60}
B=${FUZZ_BUILD:-build-fuzz}
CC=clang cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Debug -DFC_FUZZ=ON >/dev/null
cmake --build "$B" -j "$(nproc)" >/dev/null
mkdir -p "$B/artifacts"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in tests/fuzz/fuzz_*.c; do t=$(basename "$f" .c); targets+=("${t#fuzz_}"); done
fi
failed=0
passed=0
for t in "${targets[@]}"; do
  mkdir -p "$B/corpus/$t" "tests/fuzz/corpus/$t"
  log="$B/fuzz_$t.log"
  if ASAN_OPTIONS=detect_leaks=1 "$B/fuzz_$t" -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
      -artifact_prefix="$B/artifacts/$t-" -timeout=10 -rss_limit_mb=2048 \
      "$B/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "fuzz $t: ok, $runs runs in ${SECONDS_EACH}s, $cov"
    passed=$((passed + 1))
  else
    echo "fuzz $t: FAILED (input in $B/artifacts/, log in $log)"
    grep -E 'ERROR|SUMMARY|deadly' "$log" | head -5
    failed=$((failed + 1))
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
