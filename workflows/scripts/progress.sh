#!/bin/sh
# Reports progress to the workflow's stream; other lines become log events.
echo "starting job $FLOWCAST_JOB_ID"
for pct in 25 50 75 100; do
  sleep 0.2
  echo "::sse {\"event\":\"progress\",\"data\":{\"pct\":$pct}}"
done
echo "done"
