#!/usr/bin/env bash
# How fast `callboard serve` refuses hostile requests (issue 17): a WebSocket upgrade from a
# foreign Origin, a POST batch of 500 operations, and 100 entities x 100 relations x 100
# relations. Each is sent 21 times with curl against a server on the demo catalog; the median of
# curl's time_total is printed with the status and the answer.
#
#   loadtests/refusals.sh [path/to/callboard]   # default: the debug build in the cache folder
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/callboard/target}/debug/callboard}"
PORT="${PORT:-7011}"
URL="http://127.0.0.1:$PORT/graphql"
WORK="$(mktemp -d)"
"$BIN" serve --data-dir "$WORK/data" --location deploy/demo/catalog-info.yaml --listen "127.0.0.1:$PORT" \
  >"$WORK/serve.out" 2>"$WORK/serve.err" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done

python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
apply = "mutation($e: JSON!) { applyEntity(entity: $e) { status } }"
batch = [{"query": apply, "variables": {"e": {"apiVersion": "backstage.io/v1alpha1", "kind": "Resource",
          "metadata": {"name": f"batched-{i}"}, "spec": {"type": "database", "owner": "team-a"}}}} for i in range(500)]
open(f"{work}/batch.json", "w").write(json.dumps(batch))
deep = "{ entities(first: 100) { nodes { ... on Component { dependsOn(first: 100) { ... on Component { dependsOn(first: 100) { ref } } } } } } }"
open(f"{work}/deep.json", "w").write(json.dumps({"query": deep}))
PY

median() { sort -n | awk '{ t[NR] = $1 } END { printf "%.2f ms (median of %d)\n", t[int((NR + 1) / 2)] * 1000, NR }'; }
upgrade=(-H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13'
         -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' -H 'Origin: https://evil.example')
json=(-H 'Content-Type: application/json')

echo "WebSocket upgrade from https://evil.example: $(for _ in $(seq 21); do curl -s -o /dev/null -w '%{time_total}\n' "${upgrade[@]}" "$URL"; done | median)"
echo "  $(curl -s -w ' (HTTP %{http_code})' "${upgrade[@]}" "$URL")"
echo "POST batch of 500 operations: $(for _ in $(seq 21); do curl -s -o /dev/null -w '%{time_total}\n' "${json[@]}" --data-binary "@$WORK/batch.json" "$URL"; done | median)"
echo "  $(curl -s -w ' (HTTP %{http_code})' "${json[@]}" --data-binary "@$WORK/batch.json" "$URL")"
echo "100 x 100 x 100 relations: $(for _ in $(seq 21); do curl -s -o /dev/null -w '%{time_total}\n' "${json[@]}" --data-binary "@$WORK/deep.json" "$URL"; done | median)"
echo "  $(curl -s -w ' (HTTP %{http_code})' "${json[@]}" --data-binary "@$WORK/deep.json" "$URL")"
echo "for scale, { entities(first: 1) { totalCount } }: $(for _ in $(seq 21); do curl -s -o /dev/null -w '%{time_total}\n' "${json[@]}" --data '{"query":"{ entities(first: 1) { totalCount } }"}' "$URL"; done | median)"
