#!/usr/bin/env bash
# scripts/setup.sh - install what stream_state needs, then build and install it.
#
#   bash scripts/setup.sh        (as root, on Debian 12)
#
# Idempotent: the Debian packages below are installed with apt-get only when
# one of them is missing (checked with dpkg-query), so a rerun costs a
# "make" of an up-to-date tree and a "make install".  The build always uses
# -Werror (COPT, as CI does), so a warning fails here as it would in CI.
#
# Environment knobs:
#   SETUP_SKIP_APT=1    never run apt-get (fail later if something is missing)
#   SETUP_FORCE_APT=1   run apt-get update and install even if all is installed
#   MAKE_JOBS [2]       parallel make jobs
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

PACKAGES=(
	build-essential
	postgresql-15
	postgresql-server-dev-15
	librocksdb-dev
	postgresql-15-pgtap
	libtap-parser-sourcehandler-pgtap-perl
	libipc-run-perl
	postgresql-15-hll
	postgresql-15-tdigest
)

say() { echo "setup: $*"; }
die() { echo "setup: ERROR: $*" >&2; exit 1; }

# ---------------------------------------------------------------- packages
missing=()
for p in "${PACKAGES[@]}"; do
	if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
		missing+=("$p")
	fi
done

if [ "${#missing[@]}" -eq 0 ] && [ "${SETUP_FORCE_APT:-0}" != 1 ]; then
	say "all ${#PACKAGES[@]} packages installed, skipping apt-get"
elif [ "${SETUP_SKIP_APT:-0}" = 1 ]; then
	die "missing packages (SETUP_SKIP_APT=1): ${missing[*]}"
else
	[ "$(id -u)" = 0 ] || die "missing packages (${missing[*]}); run as root to install them"
	say "missing: ${missing[*]:-(none; SETUP_FORCE_APT=1)}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y "${PACKAGES[@]}"
fi

command -v pg_config >/dev/null || die "pg_config not found on PATH"
major=$(pg_config --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
[ "$major" = 15 ] || die "pg_config on PATH is PostgreSQL $major, expected 15 ($(command -v pg_config))"

# ---------------------------------------------------------------- build
cd "$ROOT"
say "make -j${MAKE_JOBS:-2} COPT=-Werror in $ROOT"
make -j"${MAKE_JOBS:-2}" COPT=-Werror
say "make install"
make install
say "installed $(pg_config --pkglibdir)/stream_state.so"
