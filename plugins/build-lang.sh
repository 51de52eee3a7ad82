#!/usr/bin/env bash
# Builds the bundled plugins written in Python (plugins/*/app.py, with componentize-py) and
# JavaScript (plugins/*/app.js, with componentize-js) into $CARGO_TARGET_DIR/plugins/<dir>.wasm,
# installing their pinned toolchains first (toolchain.sh). A plugin whose sources, helper,
# WIT and toolchain pins did not change since its last build is not built again; a file lock
# serialises concurrent runs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
out="$target_dir/plugins"
stage="$target_dir/plugin-build"
tools="$target_dir/tools"
mkdir -p "$out" "$stage"

exec 8>"$out/.lang.lock"
flock 8

# The hash of everything a build of plugin folder $1 in language $2 reads.
inputs() {
    local helper pin
    case "$2" in
    python) helper="$root/plugin-sdk/python/kfp_plugin.py" pin="$root/plugins/toolchain/requirements.txt" ;;
    js) helper="$root/plugin-sdk/js/kfp-plugin.js" pin="$root/plugins/toolchain/package-lock.json" ;;
    esac
    cat "$1"/app.* "$helper" "$pin" "$root/wit/0.2.0/world.wit" | sha256sum | cut -d' ' -f1
}

status=0
for dir in "$root"/plugins/*/; do
    dir="${dir%/}"
    name="$(basename "$dir")"
    if [[ -f "$dir/app.py" ]]; then lang=python
    elif [[ -f "$dir/app.js" ]]; then lang=js
    else continue
    fi
    dst="$out/$name.wasm"
    hash="$(inputs "$dir" "$lang")"
    if [[ -f "$dst" && -f "$out/.$name.inputs" && "$(cat "$out/.$name.inputs")" == "$hash" ]]; then
        printf '%-20s %9d bytes  %s (unchanged)\n' "$name" "$(stat -c %s "$dst")" "$dst"
        continue
    fi
    bash "$root/plugins/toolchain.sh" "$lang"
    work="$stage/$name"
    rm -rf "$work"
    mkdir -p "$work/wit"
    cp "$dir"/app.* "$work/"
    cp "$root/wit/0.2.0/world.wit" "$work/wit/world.wit"
    echo "building $name ($lang)" >&2
    case "$lang" in
    python)
        cp "$root/plugin-sdk/python/kfp_plugin.py" "$work/"
        (cd "$work" && env -u VIRTUAL_ENV "$tools/python/bin/componentize-py" --quiet \
            -d wit -w plugin componentize app -p . -o "$work/$name.wasm") || { status=1; continue; }
        ;;
    js)
        cp "$root/plugin-sdk/js/kfp-plugin.js" "$work/"
        (cd "$work" && "$tools/node/node_modules/.bin/componentize-js" app.js --wit wit \
            --world-name plugin --disable stdio random clocks http fetch-event \
            -o "$work/$name.wasm" >/dev/null) || { status=1; continue; }
        ;;
    esac
    cp "$work/$name.wasm" "$dst"
    echo "$hash" >"$out/.$name.inputs"
    printf '%-20s %9d bytes  %s\n' "$name" "$(stat -c %s "$dst")" "$dst"
done
exit "$status"
