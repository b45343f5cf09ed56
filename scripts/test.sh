#!/usr/bin/env bash
# scripts/test.sh - run every stream_state test (what CI runs).
#
#   bash scripts/test.sh         (as root; installs and builds first)
#
# 1. scripts/setup.sh: Debian packages, make, make install.
# 2. Copies the repository (without .git and old test output) to a fresh
#    directory under /tmp owned by postgres; everything below runs there as
#    postgres, since PostgreSQL refuses to run as root.
# 3. pg_regress suites (REGRESS) and the isolation suite (ISOLATION), each
#    through PGXS "make installcheck" on its own temporary instance.
# 4. pgTAP: a throwaway cluster (test/stream_state.conf appended), a database
#    with the pgtap and stream_state extensions, pg_prove over test/pgtap/*.sql.
# 5. TAP tests (test/t/*.pl, PostgreSQL::Test::Cluster) through PGXS.
#
# Every step runs even when an earlier one failed; failures print their diffs
# and logs.  The last line is "N passed, M failed", counting test files and
# suites over all runners; the exit status is non-zero when M > 0.
#
# Environment knobs:
#   SS_KEEP=1                  keep the work directory even when all passed
#   SS_SKIP_SETUP=1            do not run scripts/setup.sh (use what is installed)
#   SS_TIMEOUT_REGRESS [1200]  SS_TIMEOUT_ISOLATION [900]
#   SS_TIMEOUT_PGTAP [600]     SS_TIMEOUT_TAP [900]     (seconds per step;
#                              for TAP, per test file)
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

PASSED=0
FAILED=0
SUMMARY=()
W=""

# shellcheck source=scripts/cluster.sh
. "$HERE/cluster.sh"

banner() { printf '\n==================== %s\n' "$*"; }

# record STEP PASSED FAILED
record()
{
	PASSED=$((PASSED + $2))
	FAILED=$((FAILED + $3))
	SUMMARY+=("$(printf '  %-34s %3d of %3d ok%s' "$1" "$2" "$(($2 + $3))" \
		"$([ "$3" -gt 0 ] && echo "   <-- $3 FAILED")")")
}

# show_file FILE [LINES]: the first LINES (400) lines of FILE, with a header
show_file()
{
	local f=$1 n=${2:-400} total

	[ -f "$f" ] || return 0
	total=$(wc -l <"$f")
	echo "----- ${f#"$W"/} ($total lines$([ "$total" -gt "$n" ] && echo ", first $n"))"
	head -n "$n" "$f"
	echo "----- end of ${f#"$W"/}"
}

# show_tail FILE [LINES]: the last LINES (80) lines of FILE
show_tail()
{
	local f=$1 n=${2:-80} total

	[ -f "$f" ] || return 0
	total=$(wc -l <"$f")
	echo "----- ${f#"$W"/} ($total lines$([ "$total" -gt "$n" ] && echo ", last $n"))"
	tail -n "$n" "$f"
	echo "----- end of ${f#"$W"/}"
}

# Crash reports in a server log: say so loudly, they explain most failures.
show_crashes()
{
	local f

	for f in "$@"; do
		[ -f "$f" ] || continue
		if grep -qE 'terminated by signal|was terminated by exception|PANIC:' "$f"; then
			echo "!!!!! server crash or PANIC in ${f#"$W"/}:"
			grep -nE -B2 -A2 'terminated by signal|was terminated by exception|PANIC:' "$f" | head -n 60
		fi
	done
}

# run_step TIMEOUT LOGFILE CMD...: CMD as postgres in $W, output to the
# terminal and LOGFILE; returns CMD's exit status (124: timed out).
run_step()
{
	local t=$1 log=$2 rc

	shift 2
	SS_CWD=$W ss_as_pg timeout -k 30 "$t" "$@" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	[ "$rc" = 124 ] && echo "!!!!! timed out after $t s: $*" | tee -a "$log"
	return "$rc"
}

# Stop every server still running from a data directory under $W (a TAP test
# that died, a timed-out pg_regress).  These are servers this script started.
stop_leftovers()
{
	local pidfile

	[ -n "$W" ] && [ -d "$W" ] || return 0
	while IFS= read -r pidfile; do
		SS_CWD=$W ss_as_pg "$SS_PGBIN/pg_ctl" -D "$(dirname "$pidfile")" -m immediate \
			-t 30 stop >/dev/null 2>&1 || true
	done < <(find "$W" -name postmaster.pid 2>/dev/null)
}

# Stop what is still running, and remove the work directory unless a test
# failed (or SS_KEEP=1).
release()
{
	local ok=$1

	ss_cluster_stop
	stop_leftovers
	if [ -n "${SS_SMALL_FS:-}" ]; then
		umount "$SS_SMALL_FS" 2>/dev/null || true
		SS_SMALL_FS=""
	fi
	if [ -n "$W" ] && [ -d "$W" ]; then
		if [ "$ok" = 1 ] && [ "${SS_KEEP:-0}" != 1 ]; then
			rm -rf "$W"
		else
			echo "test: work directory kept: $W"
		fi
	fi
	W=""
}

# On an unexpected exit (a signal, a bug here): clean up and say so.
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup()
{
	local rc=$?

	release 0
	echo "test: ended early (exit status $rc)"
	echo "$PASSED passed, $((FAILED + 1)) failed"
	exit "$([ "$rc" = 0 ] && echo 1 || echo "$rc")"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The summary; the last line is "N passed, M failed".
finish()
{
	banner "summary"
	printf '%s\n' "${SUMMARY[@]}"
	echo
	release "$([ "$FAILED" = 0 ] && echo 1 || echo 0)"
	trap - EXIT
	echo "$PASSED passed, $FAILED failed"
	[ "$FAILED" = 0 ]
	exit $?
}

if [ "$(id -u)" != 0 ]; then
	echo "test: run as root (it installs packages and runs the tests as postgres)" >&2
	exit 2
fi

# ---------------------------------------------------------------- setup
if [ "${SS_SKIP_SETUP:-0}" != 1 ]; then
	banner "setup (scripts/setup.sh)"
	if ! bash "$HERE/setup.sh"; then
		echo "!!!!! scripts/setup.sh failed: nothing was tested"
		record "setup: build and install" 0 1
		finish
	fi
fi

# ---------------------------------------------------------------- work copy
W=$(mktemp -d /tmp/stream_state-test.XXXXXX)
tar -C "$ROOT" \
	--exclude=./.git --exclude=./tmp_check --exclude=./tmp_check_iso \
	--exclude=./results --exclude=./regression.diffs --exclude=./regression.out \
	--exclude=./log --exclude=./output_iso --exclude=./test/isolation/output_iso \
	--exclude=./test/isolation/results --exclude=./bench/out \
	--exclude=./tmp_check_rocksdb --exclude=./test/output_rocksdb \
	--exclude=./tmp_check_iso_rocksdb --exclude=./test/isolation/output_iso_rocksdb \
	-cf - . | tar -C "$W" -xf -
chown -R postgres: "$W"
chmod 700 "$W"
echo "test: work directory $W"

# show_unexpected RESULTS_DIR EXPECTED_DIR: results of tests that have no
# expected file yet (pg_regress stops at the first such test)
show_unexpected()
{
	local r base

	for r in "$1"/*.out; do
		[ -f "$r" ] || continue
		base=$(basename "$r")
		if [ ! -f "$2/$base" ]; then
			echo "!!!!! no expected file ${2#"$W"/}/$base; the test produced:"
			show_file "$r" 200
		fi
	done
}

# ---------------------------------------------------------------- pg_regress
# pg_regress_counts LOG RC: sets NP NF from the "... ok" / "... FAILED" lines
pg_regress_counts()
{
	local log=$1 rc=$2

	NP=$(grep -cE '\.\.\. +(ok|failed \(ignored\))' "$log")
	NF=$(grep -cE '\.\.\. +FAILED' "$log")
	# a run that failed outside any test (initdb, server start), or ran none
	if [ "$rc" != 0 ] && [ "$NF" = 0 ]; then NF=1; fi
	if [ "$rc" = 0 ] && [ "$NP" = 0 ]; then
		echo "!!!!! pg_regress exited 0 but ran no test"
		NF=1
	fi
}

banner "pg_regress: make installcheck ISOLATION= TAP_TESTS="
run_step "${SS_TIMEOUT_REGRESS:-1200}" "$W/.regress.out" make installcheck ISOLATION= TAP_TESTS=
rc=$?
pg_regress_counts "$W/.regress.out" "$rc"
record "pg_regress (REGRESS)" "$NP" "$NF"
if [ "$rc" != 0 ]; then
	show_file "$W/regression.diffs"
	show_unexpected "$W/results" "$W/expected"
	show_crashes "$W"/tmp_check/log/*.log
	for f in "$W"/tmp_check/log/*; do show_tail "$f" 100; done
fi

banner "pg_regress and isolation, rocksdb backend: make installcheck-rocksdb"
run_step "${SS_TIMEOUT_REGRESS:-1200}" "$W/.regress_rocksdb.out" make installcheck-rocksdb
rc=$?
pg_regress_counts "$W/.regress_rocksdb.out" "$rc"
# a worker that crashes while the server shuts down fails no test by itself
if grep -qE 'terminated by signal|PANIC:' "$W"/test/output_rocksdb/log/*.log \
	"$W"/test/isolation/output_iso_rocksdb/log/*.log 2>/dev/null; then
	echo "!!!!! a server process crashed during the rocksdb pg_regress run"
	NF=$((NF + 1))
	rc=1
fi
record "pg_regress + isolation, rocksdb" "$NP" "$NF"
if [ "$rc" != 0 ]; then
	show_file "$W/test/output_rocksdb/regression.diffs"
	show_file "$W/test/isolation/output_iso_rocksdb/regression.diffs"
	show_unexpected "$W/test/output_rocksdb/results" "$W/expected"
	show_crashes "$W"/test/output_rocksdb/log/*.log
	for f in "$W"/test/output_rocksdb/log/*; do show_tail "$f" 100; done
fi

banner "isolation: make installcheck REGRESS= TAP_TESTS="
run_step "${SS_TIMEOUT_ISOLATION:-900}" "$W/.isolation.out" make installcheck REGRESS= TAP_TESTS=
rc=$?
pg_regress_counts "$W/.isolation.out" "$rc"
record "isolation (ISOLATION)" "$NP" "$NF"
if [ "$rc" != 0 ]; then
	show_file "$W/test/isolation/output_iso/regression.diffs"
	show_unexpected "$W/test/isolation/output_iso/results" "$W/test/isolation/expected"
	show_crashes "$W"/tmp_check_iso/log/*.log
	for f in "$W"/tmp_check_iso/log/*; do show_tail "$f" 100; done
fi

# ---------------------------------------------------------------- prove output
# prove_counts LOG RC TOTAL: sets NP NF from a prove / pg_prove run of TOTAL
# files: a file passed when prove printed "file ..... ok" for it.  (A run
# cut short, by a timeout or a crash, leaves the files it did not reach
# failed.)
prove_counts()
{
	local log=$1 rc=$2 total=$3

	NP=$(grep -cE '^[^ ]+\.(pl|sql) \.+ ok' "$log")
	if [ "$rc" = 0 ] && grep -q '^All tests successful' "$log"; then
		NP=$total
	elif [ "$NP" -ge "$total" ]; then
		NP=$((total - 1))
	fi
	NF=$((total - NP))
}

# ---------------------------------------------------------------- pgTAP
banner "pgTAP: pg_prove test/pgtap/*.sql"
shopt -s nullglob
pgtap_files=()
for f in "$W"/test/pgtap/*.sql; do pgtap_files+=("test/pgtap/${f##*/}"); done
if [ "${#pgtap_files[@]}" = 0 ]; then
	echo "!!!!! no pgTAP files in test/pgtap"
	record "pgTAP (pg_prove)" 0 1
else
	mkdir "$W/.pgtap"
	chown postgres: "$W/.pgtap"
	if ss_cluster_start "$W/.pgtap" &&
		ss_psql -q -d postgres -c 'CREATE DATABASE pgtap_regression' &&
		ss_psql -q -d pgtap_regression -c 'CREATE EXTENSION pgtap' \
			-c 'CREATE EXTENSION stream_state'; then
		echo "test: pgTAP cluster in $SS_DIR, port $SS_PORT"
		run_step "${SS_TIMEOUT_PGTAP:-600}" "$W/.pgtap.out" \
			pg_prove --psql-bin "$SS_PGBIN/psql" -d pgtap_regression \
			--failures --comments --nocolor "${pgtap_files[@]}"
		rc=$?
		prove_counts "$W/.pgtap.out" "$rc" "${#pgtap_files[@]}"
		record "pgTAP (pg_prove)" "$NP" "$NF"
		if [ "$rc" != 0 ]; then
			show_crashes "$SS_DIR/server.log"
			show_tail "$SS_DIR/server.log" 100
		fi
	else
		echo "!!!!! could not start the pgTAP cluster or create the extensions"
		show_tail "$W/.pgtap/server.log" 100
		record "pgTAP (pg_prove)" 0 "${#pgtap_files[@]}"
	fi
	ss_cluster_stop
	SS_PORT=""
	SS_DIR=""
fi

# ---------------------------------------------------------------- TAP
# One prove run per file, so that a test that hangs costs its own timeout
# and not the others'; each run starts with an empty tmp_check, so its logs
# are moved to tap_logs/<test>/ afterwards.
tap_files=()
for f in "$W"/test/t/*.pl; do tap_files+=("test/t/${f##*/}"); done
# "make prove_installcheck" when the Makefile has that target; otherwise
# PGXS's installcheck, which runs the TAP tests after the suites, with the
# suites switched off.
if SS_CWD=$W ss_as_pg make -n prove_installcheck >/dev/null 2>&1; then
	tap_target=(prove_installcheck)
else
	tap_target=(installcheck REGRESS= ISOLATION=)
fi
banner "TAP: make ${tap_target[*]} PROVE_TESTS=<each of test/t/*.pl>"
if [ "${#tap_files[@]}" = 0 ]; then
	echo "!!!!! no TAP tests in test/t"
	record "TAP (prove)" 0 1
else
	tap_pass=0
	tap_fail=0
	mkdir -p "$W/tap_logs"
	# a small file system for 017_rocksdb_disk_full.pl to fill (it skips without)
	mkdir -p "$W/smallfs"
	if mount -t tmpfs -o size=16m,mode=0700 tmpfs "$W/smallfs" 2>"$W/.smallfs.err"; then
		chown postgres: "$W/smallfs"
		SS_SMALL_FS="$W/smallfs"
		export SS_SMALL_FS
	else
		echo "!!!!! could not mount a 16 MB tmpfs ($(cat "$W/.smallfs.err")): 017_rocksdb_disk_full.pl skips"
	fi
	for t in "${tap_files[@]}"; do
		base=$(basename "$t" .pl)
		run_step "${SS_TIMEOUT_TAP:-900}" "$W/.tap.$base.out" \
			make "${tap_target[@]}" PROVE_TESTS="$t"
		rc=$?
		prove_counts "$W/.tap.$base.out" "$rc" 1
		tap_pass=$((tap_pass + NP))
		tap_fail=$((tap_fail + NF))
		stop_leftovers
		if [ "$rc" != 0 ]; then
			show_tail "$W/tmp_check/log/regress_log_$base" 200
			show_crashes "$W"/tmp_check/log/"${base}"_*.log
			for f in "$W"/tmp_check/log/"${base}"_*.log; do show_tail "$f" 60; done
		fi
		[ -d "$W/tmp_check/log" ] && mv "$W/tmp_check/log" "$W/tap_logs/$base"
	done
	record "TAP (prove)" "$tap_pass" "$tap_fail"
fi

finish
