#!/usr/bin/env bash
# A throwaway PostgreSQL server for the test suite, living entirely in one directory.
#
#   scripts/test-postgres.sh start DIR   initdb in DIR, start on 127.0.0.1, print the URL
#   scripts/test-postgres.sh stop DIR    stop the server (immediate) and delete DIR
#
# Nothing outside DIR is touched: no system cluster, no /var/run/postgresql (the Unix
# socket lives in DIR too), trust authentication on loopback only, durability off because
# the data is discarded anyway. As root the server runs as the `postgres` user (initdb and
# postgres refuse to run as root); as anyone else it runs as that user.
#
# The port is the first free one from $PYPBX_TEST_PG_PORT (default 55432) upward, so two
# runs on one machine do not collide. Binaries come from the newest
# /usr/lib/postgresql/*/bin, or $PYPBX_TEST_PG_BIN if set.
set -euo pipefail

die() {
	echo "test-postgres: $*" >&2
	exit 1
}

find_bin() {
	if [ -n "${PYPBX_TEST_PG_BIN:-}" ]; then
		echo "$PYPBX_TEST_PG_BIN"
		return
	fi
	local dir
	dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] ||
		die "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (Debian package postgresql)"
	echo "$dir"
}

# Run a command as the server's owner.
as_owner() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
	local root=$1 bin port first last opts
	bin=$(find_bin)
	if [ "$(id -u)" -eq 0 ]; then
		id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user"
	fi
	mkdir -p "$root"
	[ -z "$(ls -A "$root")" ] || die "$root is not empty"
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres:postgres "$root"
	fi
	chmod 700 "$root"
	as_owner "$bin/initdb" -D "$root/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
		>"$root/initdb.log" 2>&1 || {
		cat "$root/initdb.log" >&2
		die "initdb failed"
	}
	first=${PYPBX_TEST_PG_PORT:-55432}
	last=$((first + 50))
	for ((port = first; port <= last; port++)); do
		port_in_use "$port" && continue
		rm -f "$root/server.log"
		opts="-c listen_addresses=127.0.0.1 -p $port -k $root -c max_connections=300"
		opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
		if as_owner "$bin/pg_ctl" -D "$root/data" -l "$root/server.log" -w -t 60 -o "$opts" \
			start >"$root/pg_ctl.log" 2>&1; then
			echo "postgresql://postgres@127.0.0.1:$port/postgres" >"$root/url"
			cat "$root/url"
			return 0
		fi
		# Lost a race for the port: try the next one. Anything else is fatal.
		grep -q "could not bind\|Address already in use" "$root/server.log" 2>/dev/null || {
			cat "$root/pg_ctl.log" "$root/server.log" >&2 2>/dev/null || true
			die "PostgreSQL did not start (log above)"
		}
	done
	die "no free port in $first-$last for PostgreSQL"
}

stop() {
	local root=$1 bin
	[ -d "$root" ] || return 0
	if [ -f "$root/data/postmaster.pid" ]; then
		bin=$(find_bin)
		as_owner "$bin/pg_ctl" -D "$root/data" -m immediate -w stop >/dev/null 2>&1 ||
			echo "test-postgres: pg_ctl stop failed (server log: $root/server.log)" >&2
	fi
	rm -rf "$root"
}

case "${1:-}" in
start) start "${2:?usage: $0 start DIR}" ;;
stop) stop "${2:?usage: $0 stop DIR}" ;;
*) die "usage: $0 start|stop DIR" ;;
esac
