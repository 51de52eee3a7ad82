#!/usr/bin/env bash
# Installs the pinned toolchains of plugins written in Python and JavaScript, once, into
# $CARGO_TARGET_DIR/tools (default target dir: <workspace>/target):
#   python: a virtualenv with componentize-py (toolchain/requirements.txt)
#   js:     @bytecodealliance/componentize-js and @bytecodealliance/jco (toolchain/package-lock.json, npm ci)
# Usage: toolchain.sh python|js...   Prints nothing when already installed. Safe to run from
# concurrent processes (a file lock serialises them); reinstalls when a pin changes.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
tools="$target_dir/tools"
pins="$root/plugins/toolchain"
mkdir -p "$tools"

exec 9>"$tools/.lock"
flock 9

# Whether $1 was installed from the pin file $2 (its hash is kept in $1/.pinned).
installed() {
    [[ -f "$1/.pinned" ]] && [[ "$(cat "$1/.pinned")" == "$(sha256sum "$2" | cut -d' ' -f1)" ]]
}

for lang in "$@"; do
    case "$lang" in
    python)
        dir="$tools/python"
        installed "$dir" "$pins/requirements.txt" && continue
        echo "installing the Python plugin toolchain into $dir" >&2
        rm -rf "$dir"
        python3 -m venv "$dir"
        "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$pins/requirements.txt"
        sha256sum "$pins/requirements.txt" | cut -d' ' -f1 >"$dir/.pinned"
        ;;
    js)
        dir="$tools/node"
        installed "$dir" "$pins/package-lock.json" && continue
        echo "installing the JavaScript plugin toolchain into $dir" >&2
        rm -rf "$dir"
        mkdir -p "$dir"
        cp "$pins/package.json" "$pins/package-lock.json" "$dir/"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
        sha256sum "$pins/package-lock.json" | cut -d' ' -f1 >"$dir/.pinned"
        ;;
    *)
        echo "error: unknown toolchain $lang (python or js)" >&2
        exit 1
        ;;
    esac
done
