#!/usr/bin/env bash
# Throwaway PostgreSQL for the tests of zimage/server (multi-process queue).
#
#   eval "$(scripts/ci-postgres.sh start)"   # initdb in a temp dir, start on 127.0.0.1;
#                                            # prints: export ZIMAGE_TEST_POSTGRES=postgres://… ZIMAGE_TEST_PGDIR=…
#   go test ./zimage/server/...
#   scripts/ci-postgres.sh stop               # stop it and delete the temp dir ($ZIMAGE_TEST_PGDIR)
#
# Uses the Debian "postgresql" package (apt-get install postgresql); nothing
# is started as a system service. Only the export lines go to stdout;
# progress and errors go to stderr.
set -euo pipefail

log() { echo "ci-postgres: $*" >&2; }

bindir() {
	if command -v pg_ctl >/dev/null 2>&1; then
		dirname "$(readlink -f "$(command -v pg_ctl)")"
		return
	fi
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
	if [ -z "$d" ] || [ ! -x "$d/pg_ctl" ]; then
		log "PostgreSQL not found: apt-get install postgresql"
		exit 1
	fi
	echo "$d"
}

# as_pg runs a command as the postgres user when we are root (initdb and
# postgres refuse to run as root), else as ourselves.
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		if command -v runuser >/dev/null 2>&1; then
			runuser -u postgres -- "$@"
		else
			su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
		fi
	else
		"$@"
	fi
}

start() {
	local bin dir port tries
	bin=$(bindir)
	if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
		log "creating system user postgres"
		useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres
	fi
	dir=$(mktemp -d "${TMPDIR:-/tmp}/zimage-pg.XXXXXX")
	chmod 755 "$dir"
	[ "$(id -u)" = 0 ] && chown postgres "$dir"
	as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || {
		cat "$dir/initdb.log" >&2
		log "initdb failed"
		exit 1
	}
	# Try ports until one is free (another run may hold the first choice).
	port=$((20000 + RANDOM % 20000))
	for tries in 1 2 3 4 5 6 7 8; do
		if as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
			-o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
			start >/dev/null 2>&1; then
			log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $dir)"
			echo "export ZIMAGE_TEST_POSTGRES='postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable'"
			echo "export ZIMAGE_TEST_PGDIR='$dir'"
			return
		fi
		log "port $port: start failed (try $tries); $(tail -n 2 "$dir/server.log" 2>/dev/null | tr '\n' ' ')"
		port=$((20000 + RANDOM % 20000))
	done
	log "could not start PostgreSQL; log: $dir/server.log"
	exit 1
}

stop() {
	local dir=${1:-${ZIMAGE_TEST_PGDIR:-}}
	if [ -z "$dir" ] || [ ! -d "$dir/data" ]; then
		log "nothing to stop (no ZIMAGE_TEST_PGDIR)"
		return
	fi
	as_pg "$(bindir)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || log "pg_ctl stop failed"
	rm -rf "$dir"
	log "stopped and removed $dir"
}

case "${1:-}" in
start) start ;;
stop) stop "${2:-}" ;;
*)
	echo "usage: $0 start | stop [DIR]" >&2
	exit 2
	;;
esac
