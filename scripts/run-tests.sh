#!/usr/bin/env bash
# Run pytest (arguments passed through) against a throwaway PostgreSQL server.
#
# The store tests and the PostgreSQL end-to-end test need $PYPBX_TEST_PG_URL; without it
# they skip, which would let a broken PostgreSQL path pass unnoticed. So this script starts
# a private server (scripts/test-postgres.sh), exports its URL, runs pytest, and stops and
# deletes the server however pytest ends (failure, Ctrl-C, SIGTERM). If the server cannot
# be started, the run fails before any test.
#
#   PYPBX_TEST_PG_URL=...  use that server instead of starting one
#   PYPBX_TEST_NO_PG=1     developer opt-out: no server, the PostgreSQL tests are skipped
#   PYTEST=...             the pytest to run (default .venv/bin/pytest)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
pytest_bin=${PYTEST:-.venv/bin/pytest}

if [ "${PYPBX_TEST_NO_PG:-}" = 1 ]; then
	echo "run-tests: PYPBX_TEST_NO_PG=1: PostgreSQL tests are SKIPPED (CI never does this)" >&2
	unset PYPBX_TEST_PG_URL
	exec "$pytest_bin" "$@"
fi
if [ -n "${PYPBX_TEST_PG_URL:-}" ]; then
	echo "run-tests: using the PostgreSQL server given in PYPBX_TEST_PG_URL"
	exec "$pytest_bin" "$@"
fi

# As root the server runs as `postgres`, which must be able to reach its directory.
if [ "$(id -u)" -eq 0 ]; then base=/tmp; else base=${TMPDIR:-/tmp}; fi

# A run killed with SIGKILL cannot clean up: stop servers whose runner is gone.
for stale in "$base"/pypbx-test-pg.*; do
	[ -f "$stale/runner" ] || continue
	kill -0 "$(cat "$stale/runner")" 2>/dev/null && continue
	echo "run-tests: removing the server of an earlier, killed run ($stale)"
	"$here/test-postgres.sh" stop "$stale" || true
done

pg_dir=$(mktemp -d "$base/pypbx-test-pg.XXXXXX")
cleanup() {
	"$here/test-postgres.sh" stop "$pg_dir" || echo "run-tests: could not remove $pg_dir" >&2
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

started=$SECONDS
if ! url=$("$here/test-postgres.sh" start "$pg_dir"); then
	echo "run-tests: FAILED to start PostgreSQL for the tests" \
		"(install the Debian package postgresql, or set PYPBX_TEST_NO_PG=1 to skip them)" >&2
	exit 1
fi
echo $$ >"$pg_dir/runner"
export PYPBX_TEST_PG_URL=${url/#postgresql:/postgresql+asyncpg:}
echo "run-tests: PostgreSQL ready in $((SECONDS - started)) s at $PYPBX_TEST_PG_URL"

status=0
"$pytest_bin" "$@" || status=$?
exit "$status"
