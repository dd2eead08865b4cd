#!/usr/bin/env bash
# Prometheus (Debian's `prometheus`) on a free 127.0.0.1 port with the configuration file given
# (default: prometheus/prometheus.yml beside this script); a fresh TSDB on every start.
# `start CONFIG` while it runs with another file (or the same file changed) restarts it on the
# same port. The lifecycle API is on (POST /-/reload). URL: http://127.0.0.1:PORT
# Usage: scripts/services/prometheus.sh {install|start [CONFIG]|stop|restart|url|status|clean}
SVC_NAME=prometheus
SVC_PROC_MATCH=storage.tsdb.path
# shellcheck source=service-lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/service-lib.sh"
SVC_DEFAULT_CONFIG="$SVC_SCRIPTS_DIR/prometheus/prometheus.yml"

svc_install() {
  command -v prometheus >/dev/null || svc_apt_install prometheus
}

svc_preflight() {
  local wanted
  wanted="$(svc_config_wanted)"
  local out
  out="$(promtool check config "${wanted% *}" 2>&1)" || svc_die "invalid Prometheus config ${wanted% *}:"$'\n'"$out"
}
svc_matches() { svc_config_matches; }
svc_reload() { svc_config_reload "$1"; }

svc_launch() {
  local wanted
  wanted="$(svc_config_wanted)"
  echo "$wanted" >"$SVC_DIR/config"
  rm -rf "$SVC_DATA" && mkdir -p "$SVC_DATA"
  svc_spawn prometheus --config.file="${wanted% *}" --storage.tsdb.path="$SVC_DATA" \
    --web.listen-address="127.0.0.1:$1" --web.enable-lifecycle \
    --storage.tsdb.retention.time=1d
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
