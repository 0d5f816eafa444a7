#!/usr/bin/env bash
# Browser tests of the widget and the agent console in Debian's Chromium (web/tests).
#
# Installs Debian's `chromium` when /usr/bin/chromium is missing and the test packages
# (`npm ci` in web/tests) when node_modules is missing; builds nothing but the server binary
# when target/debug/frontdesk is missing. Starts `frontdesk serve` on a free loopback port
# with a throw-away data directory (embedded mode: memory state, SQLite), adds a second
# agent, runs the tests with node's built-in runner (its summary line is what CI reads),
# and stops everything it started.
#
#   scripts/browser-tests.sh                 run the tests
#   scripts/browser-tests.sh --screenshots   also write docs/screenshots/*.png
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

screenshots=""
for arg in "$@"; do
  case "$arg" in
    --screenshots) screenshots=1 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

if [ ! -x /usr/bin/chromium ]; then
  echo "browser-tests: installing Debian's chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d web/tests/node_modules/playwright-core ]; then
  echo "browser-tests: npm ci in web/tests"
  (cd web/tests && npm ci --no-audit --no-fund)
fi
# Where cargo puts it: the clone's target/ unless CARGO_TARGET_DIR points elsewhere (a cache).
bin="${CARGO_TARGET_DIR:-$root/target}/debug/frontdesk"
if [ ! -x "$bin" ]; then
  echo "browser-tests: building the server"
  cargo build -p frontdesk --bin frontdesk
fi

work="$(mktemp -d /tmp/frontdesk-browser.XXXXXX)"
pid_file="$work/server.pid"
cleanup() {
  if [ -f "$pid_file" ]; then
    pid="$(cat "$pid_file")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  # The server's log outlives the run, for a look after a failure.
  [ -f "$work/server.log" ] && cp "$work/server.log" "$root/target/browser-tests-server.log" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
export FRONTDESK_LISTEN="127.0.0.1:$port"
export FRONTDESK_DATA_DIR="$work/data"
export FRONTDESK_STATE=memory
export FRONTDESK_BUS=local
export FRONTDESK_ADMIN_EMAIL="admin@acme.test"
export FRONTDESK_ADMIN_PASSWORD="admin-pass-$RANDOM$RANDOM"
export FDT_URL="http://127.0.0.1:$port"
export FDT_BIN="$bin"
export FDT_PID_FILE="$pid_file"
export FDT_LOG="$work/server.log"
export FDT_AGENT2_EMAIL="sam@acme.test"
export FDT_AGENT2_PASSWORD="agent-pass-$RANDOM$RANDOM"
[ -n "$screenshots" ] && export FDT_SCREENSHOTS=1

"$bin" serve --log-format json >>"$FDT_LOG" 2>&1 &
echo $! >"$pid_file"
disown
for _ in $(seq 300); do
  curl -fsS "$FDT_URL/healthz" >/dev/null 2>&1 && break
  kill -0 "$(cat "$pid_file")" 2>/dev/null || { cat "$FDT_LOG" >&2; echo "browser-tests: the server exited" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$FDT_URL/healthz" >/dev/null || { cat "$FDT_LOG" >&2; echo "browser-tests: the server did not start" >&2; exit 1; }

# The first start created one site; its id is in the log.
site_id="$(python3 - "$FDT_LOG" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    try:
        f = json.loads(line)
        f = f.get("fields", f)
    except ValueError:
        continue
    if "site_id" in f:
        print(f["site_id"]); break
EOF
)"
[ -n "$site_id" ] || { cat "$FDT_LOG" >&2; echo "browser-tests: no site id in the server log" >&2; exit 1; }
export FDT_SITE_ID="$site_id"
"$bin" agent add --site "$site_id" --email "$FDT_AGENT2_EMAIL" --name "Sam Rivera" --password "$FDT_AGENT2_PASSWORD" >/dev/null

cd web/tests
status=0
node --test --test-concurrency=1 ${FDT_TESTS:-1-offline.test.mjs 2-conversation.test.mjs 3-restart.test.mjs 4-invite-history.test.mjs 5-xss.test.mjs 6-offline-inbox.test.mjs} || status=$?
if [ "$status" -ne 0 ]; then
  echo "browser-tests: server log (last 40 lines; all of it in target/browser-tests-server.log):" >&2
  tail -n 40 "$FDT_LOG" >&2 || true
fi
exit "$status"
