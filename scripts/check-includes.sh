#!/usr/bin/env bash
# Checks that dependencies between src/ modules point one way (down the floors
# below), that store knows nothing of the hub, and that only store includes
# sqlite3.h. Prints each offending include and exits 1 when there is one.
# Usage: scripts/check-includes.sh
#
# floor 8: main        7: server       6: api cli      5: jobs
# floor 4: sse ws auth 3: pub presence          2: http store tls   1: net hub config
# floor 0: core
set -uo pipefail
cd "$(dirname "$0")/.."
declare -A floor=([core]=0 [net]=1 [hub]=1 [config]=1 [http]=2 [store]=2 [tls]=2 [pub]=3 [presence]=3
                  [sse]=4 [ws]=4 [auth]=4 [jobs]=5 [api]=6 [cli]=6 [server]=7 [main]=8)
bad=0
while IFS= read -r line; do
  file=${line%%:*}
  dep=$(sed -n 's/.*#include "\([a-z_]*\)\/.*/\1/p' <<<"${line#*:}")
  mod=$(cut -d/ -f2 <<<"$file")
  [ "$file" = src/main.c ] && mod=main
  [ -z "$dep" ] || [ "$dep" = "$mod" ] && continue
  why=""
  if [ -z "${floor[$mod]+x}" ]; then why="module $mod has no floor (add it to this script)"
  elif [ -z "${floor[$dep]+x}" ]; then why="module $dep has no floor (add it to this script)"
  elif [ "${floor[$dep]}" -ge "${floor[$mod]}" ]; then why="$mod (floor ${floor[$mod]}) may not include $dep (floor ${floor[$dep]})"
  elif [ "$mod" = store ] && [ "$dep" = hub ]; then why="store must not know the hub"
  fi
  if [ -n "$why" ]; then echo "$line: $why"; bad=1; fi
done < <(grep -Hn '#include "[a-z_]*/' src/*.c src/*/*.[ch] 2>/dev/null)
# SQLite is store's business: nothing outside src/store/ includes it.
while IFS= read -r line; do
  echo "$line: only src/store/ may include sqlite3.h (use store/records.h or store/store.h)"
  bad=1
done < <(grep -Hn '#include *[<"]sqlite3\.h[>"]' src/*.c src/*/*.[ch] 2>/dev/null | grep -v '^src/store/')
[ $bad -eq 0 ] && echo "includes: every dependency points down"
exit $bad
