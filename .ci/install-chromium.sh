#!/usr/bin/env bash
# Installs the headless Chromium the console's browser tests drive over the DevTools protocol
# (host/tests/support/browser.rs calls this, under a file lock, when it finds no browser), and
# prints the browser's path. Does nothing but print when it is installed already.
#
#   .ci/install-chromium.sh
#
# Debian and Ubuntu only (apt-get); needs root, or sudo without a password.
set -euo pipefail

found() {
    local bin
    for bin in /usr/bin/chromium /usr/bin/chromium-browser; do
        if [[ -x "$bin" ]]; then
            echo "$bin"
            return 0
        fi
    done
    return 1
}

if found; then
    exit 0
fi

sudo=()
if [[ "$(id -u)" != 0 ]]; then
    sudo=(sudo -n)
fi
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)

echo "installing chromium" >&2
"${apt[@]}" update -qq >&2
"${apt[@]}" install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
found
