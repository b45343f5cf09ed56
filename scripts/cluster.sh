# scripts/cluster.sh - a throwaway PostgreSQL 15 cluster, for scripts/test.sh
# and scripts/demo.sh (sourced, not run).
#
# The cluster runs as user postgres in a directory of its own, listens on a
# unix socket in that directory only (no TCP), on a port no other server
# uses, with test/stream_state.conf appended to its postgresql.conf.
#
#   ss_cluster_start DIR        initdb DIR/data, start it; sets SS_PORT, SS_DIR
#   ss_as_pg CMD...             run CMD as postgres in a clean environment
#                               pointed at the cluster (PGHOST, PGPORT, PGUSER),
#                               in directory SS_CWD (default: DIR)
#   ss_psql ARGS...             psql as postgres on the cluster
#   ss_cluster_stop             stop it (fast, then immediate)
#
# The caller owns DIR (it must exist and belong to postgres) and removes it.

SS_PGBIN=${PGBIN:-$(pg_config --bindir)}
SS_DIR=""
SS_PORT=""
SS_UP=0

# A port with no TCP listener and no socket file in the usual places.
ss_free_port()
{
	local used=" " st addr p

	while read -r _ addr _ st _; do
		[ "$st" = 0A ] && used+="$((16#${addr##*:})) "
	done < <(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null)
	for _ in $(seq 1 200); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		case "$used" in *" $p "*) continue ;; esac
		[ -e "/tmp/.s.PGSQL.$p" ] && continue
		[ -e "/var/run/postgresql/.s.PGSQL.$p" ] && continue
		echo "$p"
		return 0
	done
	return 1
}

# Run a command as postgres, in SS_CWD (default SS_DIR, or /tmp), with an
# environment that has nothing of the caller's PG* settings but the
# cluster's (when one is started).
ss_as_pg()
{
	(
		cd "${SS_CWD:-${SS_DIR:-/tmp}}" &&
		runuser -u postgres -- env -i \
			PATH="$SS_PGBIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
			HOME="$(getent passwd postgres | cut -d: -f6)" \
			LANG=C.UTF-8 \
			${SS_PORT:+PGHOST="$SS_DIR" PGPORT="$SS_PORT" PGUSER=postgres} \
			${SS_SMALL_FS:+SS_SMALL_FS="$SS_SMALL_FS"} \
			"$@"
	)
}

ss_psql()
{
	ss_as_pg "$SS_PGBIN/psql" -X -v ON_ERROR_STOP=1 "$@"
}

ss_cluster_start()
{
	local root conf

	SS_DIR=$1
	root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	conf="$root/test/stream_state.conf"

	SS_PORT=$(ss_free_port) || { echo "cluster: no free port found" >&2; return 1; }
	if ! ss_as_pg "$SS_PGBIN/initdb" -D "$SS_DIR/data" -U postgres -A trust \
		-E UTF8 --locale=C.UTF-8 --no-sync >"$SS_DIR/initdb.log" 2>&1; then
		cat "$SS_DIR/initdb.log" >&2
		echo "cluster: initdb failed" >&2
		return 1
	fi
	{
		echo
		echo "# ---- scripts/cluster.sh"
		echo "listen_addresses = ''"
		echo "port = $SS_PORT"
		echo "unix_socket_directories = '$SS_DIR'"
		echo "fsync = off"
		echo "# ---- test/stream_state.conf"
		cat "$conf"
	} >>"$SS_DIR/data/postgresql.conf"

	if ! ss_as_pg "$SS_PGBIN/pg_ctl" -D "$SS_DIR/data" -l "$SS_DIR/server.log" \
		-w -t 120 start >/dev/null 2>&1; then
		echo "cluster: server did not start; last lines of $SS_DIR/server.log:" >&2
		tail -n 40 "$SS_DIR/server.log" >&2 2>/dev/null
		return 1
	fi
	SS_UP=1
}

ss_cluster_stop()
{
	[ "$SS_UP" = 1 ] || return 0
	ss_as_pg "$SS_PGBIN/pg_ctl" -D "$SS_DIR/data" -m fast -t 60 stop >/dev/null 2>&1 ||
		ss_as_pg "$SS_PGBIN/pg_ctl" -D "$SS_DIR/data" -m immediate -t 60 stop >/dev/null 2>&1
	SS_UP=0
}
