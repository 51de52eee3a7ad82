#!/usr/bin/env bash
# Builds {{name}}.wasm (a WebAssembly component) from app.py with componentize-py, installed
# at its pinned version into .venv on first use (or given as $COMPONENTIZE_PY).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
cpy="${COMPONENTIZE_PY:-}"
if [[ -z "$cpy" ]]; then
    if [[ ! -x .venv/bin/componentize-py ]]; then
        python3 -m venv .venv
        .venv/bin/pip install --quiet componentize-py==0.25.1
    fi
    cpy=.venv/bin/componentize-py
fi
env -u VIRTUAL_ENV "$cpy" --quiet -d wit -w plugin componentize app -p . -o {{name}}.wasm
echo "built {{name}}.wasm"
