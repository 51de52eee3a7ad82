#!/usr/bin/env bash
# Installs the PostgreSQL server the tests of the `postgres` state backend run
# (host/tests/support/postgres.rs calls this when it finds no server), and prints the folder of
# its programs (initdb, pg_ctl, postgres). Does nothing but print when it is installed already.
#
#   .ci/install-postgres.sh          # PostgreSQL 15, else the distribution's default version
#   PG_MAJOR=16 .ci/install-postgres.sh
#
# Debian and Ubuntu only (apt-get); needs root, or sudo without a password.
set -euo pipefail

PG_MAJOR="${PG_MAJOR:-15}"

found() {
    local bin
    for bin in "/usr/lib/postgresql/$PG_MAJOR/bin" /usr/lib/postgresql/*/bin; do
        if [[ -x "$bin/initdb" && -x "$bin/pg_ctl" && -x "$bin/postgres" ]]; then
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

echo "installing PostgreSQL $PG_MAJOR" >&2
"${apt[@]}" update -qq >&2
if apt-cache show "postgresql-$PG_MAJOR" >/dev/null 2>&1; then
    "${apt[@]}" install -y -qq --no-install-recommends "postgresql-$PG_MAJOR" >&2
else
    echo "postgresql-$PG_MAJOR is not packaged here; installing the default postgresql" >&2
    "${apt[@]}" install -y -qq --no-install-recommends postgresql >&2
fi
found
