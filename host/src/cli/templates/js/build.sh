#!/usr/bin/env bash
# Builds {{name}}.wasm (a WebAssembly component) from app.js with componentize-js, installed
# at its pinned version into node_modules on first use (or given as $COMPONENTIZE_JS).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
cjs="${COMPONENTIZE_JS:-}"
if [[ -z "$cjs" ]]; then
    [[ -x node_modules/.bin/componentize-js ]] || npm install --no-audit --no-fund --loglevel=error
    cjs=node_modules/.bin/componentize-js
fi
"$cjs" app.js --wit wit --world-name plugin --disable stdio random clocks http fetch-event \
    -o {{name}}.wasm >/dev/null
echo "built {{name}}.wasm"
