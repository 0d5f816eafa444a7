#!/usr/bin/env bash
# Runs the whole test suite against real backends, on a fresh machine or a used one.
#
# - Installs what is missing from Debian's packages (redis-server, PostgreSQL).
# - Starts a throw-away redis-server and PostgreSQL on free loopback ports, exports
#   FRONTDESK_TEST_REDIS and FRONTDESK_TEST_POSTGRES for the tests, and stops both (and
#   deletes their data) on exit, whatever happens.
# - Checks formatting and lints, then runs every test with cargo-nextest (or cargo test),
#   then the browser tests of the widget and the console in Debian's Chromium
#   (scripts/browser-tests.sh installs Chromium and the npm test packages when missing).
#
# FRONTDESK_SKIP_LINT=1 skips fmt/clippy and FRONTDESK_SKIP_BROWSER=1 the browser tests
# (quicker local runs); extra arguments go to the test runner (e.g.
# `scripts/test.sh -E 'test(contract)'` with nextest).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[test.sh]\033[0m %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/initdb" ] || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} from Debian's packages"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
PG_BIN=$(pg_bin)

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

work=$(mktemp -d "${TMPDIR:-/tmp}/frontdesk-test.XXXXXX")
chmod 755 "$work"
redis_port=$(free_port)
pg_port=$(free_port)

# PostgreSQL refuses to run as root: run it as the `postgres` user the package made.
pg_user=$(id -un)
run_pg() { "$@"; }
if [ "$(id -u)" = 0 ]; then
  pg_user=postgres
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  run_pg() { runuser -u postgres -- "$@"; }
fi

cleanup() {
  set +e
  [ -f "$work/redis.pid" ] && kill "$(cat "$work/redis.pid")" 2>/dev/null
  [ -d "$work/pg" ] && run_pg "$PG_BIN/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

log "starting redis-server on 127.0.0.1:$redis_port"
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log" --dir "$work"

log "starting PostgreSQL ($PG_BIN) on 127.0.0.1:$pg_port"
mkdir -p "$work/pg" "$work/pgsock"
[ "$(id -u)" = 0 ] && chown "$pg_user" "$work/pg" "$work/pgsock"
run_pg "$PG_BIN/initdb" -D "$work/pg" -U postgres --auth=trust -E UTF8 >"$work/initdb.log" 2>&1 \
  || { cat "$work/initdb.log" >&2; exit 1; }
run_pg "$PG_BIN/pg_ctl" -D "$work/pg" -l "$work/pgsock/pg.log" -w -t 30 \
  -o "-p $pg_port -k $work/pgsock -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null \
  || { cat "$work/pgsock/pg.log" >&2; exit 1; }

for _ in $(seq 1 50); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.1
done

export FRONTDESK_TEST_REDIS="redis://127.0.0.1:$redis_port"
export FRONTDESK_TEST_POSTGRES="postgres://postgres@127.0.0.1:$pg_port/postgres"
export FRONTDESK_TEST_PG_BIN="$PG_BIN"
export FRONTDESK_TEST_PG_DATA="$work/pg"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ "${FRONTDESK_SKIP_LINT:-0}" != 1 ]; then
  log "cargo fmt --check"
  cargo fmt --all -- --check
  log "cargo clippy -D warnings"
  cargo clippy --workspace --all-targets --quiet -- -D warnings
fi

status=0
if cargo nextest --version >/dev/null 2>&1; then
  log "cargo nextest run"
  cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
  log "cargo test (cargo-nextest not installed)"
  cargo test --workspace --no-fail-fast "$@" || status=$?
fi

if [ "${FRONTDESK_SKIP_BROWSER:-0}" != 1 ]; then
  log "browser tests (widget and console in Chromium)"
  # The server binary the Rust tests just built is the one the browser tests drive.
  cargo build --quiet -p frontdesk --bin frontdesk
  scripts/browser-tests.sh || status=$?
fi
exit "$status"
