#!/usr/bin/env bash
# Runs {{name}}.wasm over events.jsonl (a recorded KFP run) with test-config.toml through
# `kfp-event-router plugin test`, and checks that every event got the configured field.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
router="${KFP_EVENT_ROUTER:-kfp-event-router}"
out="$("$router" plugin test {{name}}.wasm --events events.jsonl --config test-config.toml)"
events="$(grep -c '^--- event ' <<<"$out" || true)"
tagged="$(grep -c '"Cluster":"test"' <<<"$out" || true)"
if [[ "$events" -eq 0 || "$tagged" -ne "$events" ]]; then
    echo "FAIL: $tagged of $events events got the field" >&2
    exit 1
fi
echo "ok: all $events events got the field"
