#!/usr/bin/env bash
# Headless Chromium (Debian's `chromium`) for browser tests. Tests launch it themselves through
# Playwright with executable_path=/usr/bin/chromium (the `chromium_browser` fixture); `start` also
# runs a long-lived instance with the DevTools protocol on a free 127.0.0.1 port, for
# `playwright.chromium.connect_over_cdp(URL)`. URL: http://127.0.0.1:PORT
# `install` also checks that the Playwright Python package is in .venv (pip install playwright);
# it never runs `playwright install`: no browser build is downloaded.
# Usage: scripts/services/chromium.sh {install|start|stop|restart|url|status|clean}
SVC_NAME=chromium
SVC_PROC_MATCH=chromium
# shellcheck source=service-lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/service-lib.sh"

CHROMIUM="${DRIFTLOOP_TEST_CHROMIUM:-/usr/bin/chromium}"
# The flags the tests use too: without the background-networking ones Chromium keeps trying to
# reach Google's servers, which this closed network refuses.
CHROMIUM_FLAGS=(
  --headless --no-sandbox --disable-gpu --disable-background-networking
  --disable-component-update --no-first-run --disable-sync --disable-dev-shm-usage
)

svc_install() {
  [ -x "$CHROMIUM" ] || svc_apt_install chromium
  local python="${VENV:-$SVC_REPO_ROOT/.venv}/bin/python"
  if [ -x "$python" ] && ! "$python" -c 'import playwright.sync_api' 2>/dev/null; then
    svc_say "pip install playwright into $(dirname "$(dirname "$python")")"
    "$python" -m pip install -q 'playwright>=1.45' >&2
  fi
}

svc_launch() {
  svc_spawn "$CHROMIUM" "${CHROMIUM_FLAGS[@]}" --remote-debugging-address=127.0.0.1 \
    --remote-debugging-port="$1" --user-data-dir="$SVC_DATA" about:blank
}

svc_ready() {
  curl -sf -m 2 "http://127.0.0.1:$1/json/version" >/dev/null
}

svc_url() {
  echo "http://127.0.0.1:$1"
}

svc_after_stop() {
  # chromium's helper processes (renderers, crashpad) may outlive it for a moment and still
  # write into its profile: end them, then remove the profile, retrying while they finish
  pkill -f -- "--user-data-dir=$SVC_DATA" 2>/dev/null || true
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    rm -rf "$SVC_DATA" 2>/dev/null && return 0
    sleep 0.5
  done
  rm -rf "$SVC_DATA"
}

svc_main "$@"
