#!/usr/bin/env bash
# Builds every bundled plugin (plugins/*) and host test fixture plugin
# (host/tests/plugins/*) as WebAssembly components: the Rust ones in one cargo
# invocation, copied to $CARGO_TARGET_DIR/plugins/<package-name>.wasm (default
# target dir: <workspace>/target), then the Python and JavaScript ones
# (build-lang.sh, which installs their pinned toolchains).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
profile=plugin
triple=wasm32-wasip2

if ! rustup target list --installed | grep -qx "$triple"; then
    rustup target add "$triple"
fi

# Package names, from each crate's [package] name.
packages=()
for manifest in plugins/*/Cargo.toml host/tests/plugins/*/Cargo.toml; do
    [[ -f "$manifest" ]] || continue
    name="$(sed -n 's/^name[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$manifest" | head -n 1)"
    if [[ -z "$name" ]]; then
        echo "error: no package name in $manifest" >&2
        exit 1
    fi
    packages+=("$name")
done
if [[ ${#packages[@]} -eq 0 ]]; then
    echo "error: no plugin crates found" >&2
    exit 1
fi

args=()
for p in "${packages[@]}"; do args+=(-p "$p"); done
cargo build --profile "$profile" --target "$triple" "${args[@]}"

out="$target_dir/plugins"
mkdir -p "$out"
status=0
for p in "${packages[@]}"; do
    src="$target_dir/$triple/$profile/${p//-/_}.wasm"
    dst="$out/$p.wasm"
    if [[ ! -f "$src" ]]; then
        echo "error: $src was not built" >&2
        status=1
        continue
    fi
    # A component starts with "\0asm" then version/layer 0d 00 01 00;
    # a core module has 01 00 00 00 there.
    magic="$(od -An -tx1 -j0 -N8 "$src" | tr -d ' \n')"
    if [[ "$magic" != "0061736d0d000100" ]]; then
        echo "error: $src is not a WebAssembly component (header $magic)" >&2
        status=1
        continue
    fi
    cp "$src" "$dst"
    printf '%-20s %9d bytes  %s\n' "$p" "$(stat -c %s "$dst")" "$dst"
done
bash "$root/plugins/build-lang.sh" || status=1
exit "$status"
