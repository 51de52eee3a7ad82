#!/usr/bin/env bash
# The quick start: replays the recorded KFP run in this folder through the router to a local
# receiver, which prints every webhook it gets and checks its signature. Needs only cargo.
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --quiet -p kfp-event-router
bin=target/debug/kfp-event-router

# A demo signing secret (Standard Webhooks form: whsec_ + base64). Never reuse it.
export QUICKSTART_WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw

"$bin" receive --listen 127.0.0.1:8080 --secret-env QUICKSTART_WEBHOOK_SECRET &
receiver=$!
trap 'kill "$receiver" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null && break
  sleep 0.1
done

"$bin" run --config examples/quickstart/router.toml
