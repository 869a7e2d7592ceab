#!/usr/bin/env bash
# Stream with curl -N, publish with curl -d, resume with Last-Event-ID.
# Needs a running hub (make run); HUB overrides its address.
set -euo pipefail
HUB=${HUB:-http://127.0.0.1:8080}
TOPIC=${TOPIC:-demo}

out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "== subscribe for 3 seconds in the background"
curl -sN --max-time 3 "$HUB/events?topic=$TOPIC" > "$out" &
reader=$!
# The stream is subscribed once its first bytes (retry:) arrive.
for _ in $(seq 100); do grep -q '^retry:' "$out" && break; sleep 0.05; done

echo "== publish three events"
first=$(curl -sf -d topic="$TOPIC" -d data="hello" "$HUB/events")
curl -sf -d topic="$TOPIC" -d data="world" -d event=greeting "$HUB/events"; echo
curl -sf -H 'Content-Type: application/json' \
     -d "{\"topic\": \"$TOPIC\", \"data\": {\"n\": 3}}" "$HUB/events"; echo
echo "first answer: $first"
wait "$reader" || true
echo "== what the subscriber saw"
cat "$out"

first_id=$(echo "$first" | sed 's/[^0-9]//g')
echo "== resume after id $first_id: exactly what came after it"
curl -sN --max-time 2 -H "Last-Event-ID: $first_id" "$HUB/events?topic=$TOPIC" || true
