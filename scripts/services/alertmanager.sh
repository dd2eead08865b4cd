#!/usr/bin/env bash
# Alertmanager (Debian's `prometheus-alertmanager`) on a free 127.0.0.1 port, clustering off,
# with the configuration file given (default: alertmanager/alertmanager.yml beside this script).
# `start CONFIG` while it runs with another file (or the same file changed) restarts it on the
# same port, with fresh silences and notification state. URL: http://127.0.0.1:PORT
# Usage: scripts/services/alertmanager.sh {install|start [CONFIG]|stop|restart|url|status|clean}
SVC_NAME=alertmanager
SVC_PROC_MATCH=alertmanager
# shellcheck source=service-lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/service-lib.sh"
SVC_DEFAULT_CONFIG="$SVC_SCRIPTS_DIR/alertmanager/alertmanager.yml"

svc_install() {
  command -v prometheus-alertmanager >/dev/null || svc_apt_install prometheus-alertmanager
}

svc_preflight() {
  local wanted
  wanted="$(svc_config_wanted)"
  local out
  out="$(amtool check-config "${wanted% *}" 2>&1)" || svc_die "invalid Alertmanager config ${wanted% *}:"$'\n'"$out"
}
svc_matches() { svc_config_matches; }
svc_reload() { svc_config_reload "$1"; }

svc_launch() {
  local wanted
  wanted="$(svc_config_wanted)"
  echo "$wanted" >"$SVC_DIR/config"
  rm -rf "$SVC_DATA" && mkdir -p "$SVC_DATA"
  svc_spawn prometheus-alertmanager --config.file="${wanted% *}" --storage.path="$SVC_DATA" \
    --web.listen-address="127.0.0.1:$1" --cluster.listen-address=
}

svc_ready() {
  curl -sf -m 2 "http://127.0.0.1:$1/-/ready" >/dev/null
}

svc_url() {
  echo "http://127.0.0.1:$1"
}

svc_after_stop() {
  rm -f "$SVC_DIR/config"
}

svc_main "$@"
