#!/usr/bin/env bash
# Every service the marked tests need, at once (used by scripts/test, that is `make test`).
#   all.sh install   install them all (apt-get, Maven Central, pip), one after the other
#   all.sh start     install, then start postgres, kafka, s3, prometheus and alertmanager in
#                    parallel; prints "NAME URL" lines. Chromium is installed, not started: the
#                    browser fixture launches it through Playwright.
#   all.sh stop      stop them all
#   all.sh status    one status line each; exit 3 if any server is stopped
# DRIFTLOOP_SERVICES="postgres kafka" limits the set.
set -euo pipefail
cd "$(dirname "$0")"

read -r -a SERVERS <<<"${DRIFTLOOP_SERVICES:-postgres kafka s3 prometheus alertmanager}"
INSTALL_ONLY=(chromium)
if [ -n "${DRIFTLOOP_SERVICES:-}" ]; then INSTALL_ONLY=(); fi

timed() {
  local started=$SECONDS
  "$@"
  printf 'all.sh: %s took %d s\n' "$*" "$((SECONDS - started))" >&2
}

install_all() {
  local name
  for name in "${SERVERS[@]}" "${INSTALL_ONLY[@]}"; do
    timed "./$name.sh" install
  done
}

start_all() {
  install_all
  local name failed=0 dir
  dir="$(mktemp -d)"
  declare -A pids
  for name in "${SERVERS[@]}"; do
    (timed "./$name.sh" start >"$dir/$name") &
    pids[$name]=$!
  done
  for name in "${SERVERS[@]}"; do
    if wait "${pids[$name]}"; then
      echo "$name $(cat "$dir/$name")"
    else
      echo "all.sh: $name failed to start" >&2
      failed=1
    fi
  done
  rm -rf "$dir"
  return "$failed"
}

stop_all() {
  local name failed=0
  for name in "${SERVERS[@]}" chromium; do
    "./$name.sh" stop || failed=1
  done
  return "$failed"
}

status_all() {
  local name status=0
  for name in "${SERVERS[@]}"; do
    printf '%-12s ' "$name"
    "./$name.sh" status || status=3
  done
  for name in "${INSTALL_ONLY[@]}"; do
    printf '%-12s ' "$name"
    "./$name.sh" status || true
  done
  return "$status"
}

case "${1:-}" in
  install) install_all ;;
  start) start_all ;;
  stop) stop_all ;;
  status) status_all ;;
  *)
    echo "usage: $0 {install|start|stop|status}" >&2
    exit 2
    ;;
esac
