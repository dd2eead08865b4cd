# shellcheck shell=bash
# The shared part of scripts/services/<name>.sh: state directory, free loopback port, PID files,
# readiness wait with the log tail on failure, stop by PID, idempotent installs from the
# machine's package registries (apt-get, Maven Central through mvn, PyPI through pip).
#
# A service script sets SVC_NAME, sources this file, defines the hooks below and ends with
# `svc_main "$@"`:
#   svc_install         install (idempotent; fast when already installed)
#   svc_launch PORT     start the server in the background on 127.0.0.1:PORT, write $SVC_PIDFILE
#   svc_ready PORT      exit 0 once the server answers
#   svc_url PORT        print the URL clients use
#   svc_after_start PORT   (optional) one-time setup after ready (databases, buckets)
#   svc_preflight       (optional) check the arguments of `start` (a config file) before a
#                       running server is touched, so a bad one leaves it running
#   svc_after_stop      (optional) cleanup after the process is gone
#   svc_matches         (optional) exit 0 if the running server fits the arguments of this
#                       `start` (e.g. the same config file); otherwise `start` restarts it
#   svc_reload PORT     (optional) make the running server take the new arguments without a
#                       restart; used instead of a restart when svc_matches fails
# and may set SVC_PROC_MATCH (a word the server's command line contains, so a stale PID file
# whose PID was reused is not mistaken for the server), SVC_STOP_SIGNAL (default TERM),
# SVC_READY_TIMEOUT (seconds, default 60) and SVC_PORT_COUNT (ports to reserve, default 1).
#
# State lives in ${DRIFTLOOP_SERVICES_DIR:-<repo>/.services}/<name>/: pid, port, url, log, data/
# (under /tmp instead when root runs them from a checkout other users cannot enter).

set -euo pipefail

SVC_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SVC_REPO_ROOT="$(cd "$SVC_SCRIPTS_DIR/../.." && pwd)"
# Whether every folder from / down to $1 lets other users through (o+x): a server that runs
# as its own user (PostgreSQL as postgres) must reach its data folder.
svc_reachable_by_others() {
  local path
  path="$(realpath -m "$1")"
  while [ -n "$path" ] && [ "$path" != "/" ]; do
    if [ -e "$path" ] && [ -z "$(find "$path" -maxdepth 0 -perm -o+x 2>/dev/null)" ]; then
      return 1
    fi
    path="$(dirname "$path")"
  done
}

# The state folder: $DRIFTLOOP_SERVICES_DIR, else <repo>/.services, unless root runs the
# services from a checkout under a folder other users cannot enter (a 0700 home or temporary
# folder): then a folder of its own under /tmp, named after the checkout, which every call
# finds again (the tests ask the scripts for their URLs).
svc_default_root() {
  if [ "$(id -u)" -eq 0 ] && ! svc_reachable_by_others "$SVC_REPO_ROOT"; then
    echo "/tmp/driftloop-services-$(printf '%s' "$SVC_REPO_ROOT" | sha256sum | cut -c1-12)"
  else
    echo "$SVC_REPO_ROOT/.services"
  fi
}

SVC_ROOT="$(realpath -m "${DRIFTLOOP_SERVICES_DIR:-$(svc_default_root)}")"
SVC_NAME="${SVC_NAME:?set SVC_NAME before sourcing service-lib.sh}"
SVC_DIR="$SVC_ROOT/$SVC_NAME"
SVC_PIDFILE="$SVC_DIR/pid"
SVC_PORTFILE="$SVC_DIR/port"
SVC_URLFILE="$SVC_DIR/url"
SVC_LOG="$SVC_DIR/log"
SVC_DATA="$SVC_DIR/data"
SVC_PROC_MATCH="${SVC_PROC_MATCH:-}"
SVC_STOP_SIGNAL="${SVC_STOP_SIGNAL:-TERM}"
SVC_READY_TIMEOUT="${SVC_READY_TIMEOUT:-60}"
SVC_PORT_COUNT="${SVC_PORT_COUNT:-1}"
SVC_ARGS=()
# Where downloaded jars and other installed artifacts live: outside the per-run state so that
# `clean` keeps them and a second checkout on the machine can share them.
# shellcheck disable=SC2034 # used by the service scripts
SVC_CACHE="${DRIFTLOOP_SERVICES_CACHE:-$SVC_REPO_ROOT/.services/.cache}"

svc_say() { printf '%s: %s\n' "$SVC_NAME" "$*" >&2; }

svc_die() {
  printf '%s: error: %s\n' "$SVC_NAME" "$*" >&2
  exit 1
}

svc_log_tail() {
  if [ -s "$SVC_LOG" ]; then
    printf -- '--- last lines of %s ---\n' "$SVC_LOG" >&2
    tail -n "${SVC_LOG_LINES:-40}" "$SVC_LOG" >&2
    printf -- '---\n' >&2
  fi
}

# Free TCP ports on 127.0.0.1, one per line: the PREFERRED ones (the ports of the last run, so a
# restarted server keeps its address) when all of them are free, else ports the kernel picks.
# They are released at once; a server that loses the race fails to bind and
# `svc_wait_ready` reports it with the log tail.
svc_free_ports() {
  python3 - "$@" <<'PY'
import socket, sys
count, preferred = int(sys.argv[1]), [int(p) for p in sys.argv[2:] if p.isdigit()]
def take(ports):
    socks = []
    try:
        for port in ports:
            s = socket.socket()
            # as the servers do (Java, Go, PostgreSQL): a port whose old connections linger in
            # TIME_WAIT after a stop under traffic is free to listen on again
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            socks.append(s)
            s.bind(("127.0.0.1", port))
        return [s.getsockname()[1] for s in socks]
    except OSError:
        return None
    finally:
        for s in socks:
            s.close()
ports = take(preferred) if len(preferred) == count else None
print("\n".join(str(p) for p in ports or take([0] * count)))
PY
}

# Exit 0 if something accepts TCP connections on 127.0.0.1:PORT.
svc_port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

svc_pid() { [ -s "$SVC_PIDFILE" ] && tr -dc '0-9' <"$SVC_PIDFILE"; }

# Exit 0 if PID is a live process (an exited one waiting to be reaped, a zombie, is not).
svc_pid_running() {
  kill -0 "$1" 2>/dev/null || return 1
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  [ "$(cut -d' ' -f1 <<<"${stat##*) }")" != Z ]
}

# Exit 0 if the PID file names a live process that is our server.
svc_alive() {
  local pid
  pid="$(svc_pid)" || return 1
  [ -n "$pid" ] && svc_pid_running "$pid" || return 1
  if [ -n "$SVC_PROC_MATCH" ] && [ -r "/proc/$pid/cmdline" ]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$SVC_PROC_MATCH" || return 1
  fi
  return 0
}

# Run a command detached from our stdin/stdout/stderr and lock (so callers that capture our
# output do not wait on the server), output appended to the log; write its PID file.
svc_spawn() {
  setsid "$@" </dev/null >>"$SVC_LOG" 2>&1 9>&- &
  echo "$!" >"$SVC_PIDFILE"
}

# Wait until `svc_ready PORT` succeeds; fail with the log tail if the process dies or time runs out.
# The process was just spawned, so only its PID is checked: svc_alive's command-line check
# (against a stale PID file) reads /proc/PID/cmdline, which is empty or still the spawning
# shell's until the server is exec'd (3 of 200 spawns read so right away), and once failed both
# Prometheus and Alertmanager on a busy machine, leaving them running without a PID file.
svc_wait_ready() {
  local port="$1" deadline=$((SECONDS + SVC_READY_TIMEOUT)) pid
  pid="$(svc_pid)" || pid=""
  while ! svc_ready "$port" >/dev/null 2>&1; do
    if [ -z "$pid" ] || ! svc_pid_running "$pid"; then
      svc_log_tail
      rm -f "$SVC_PIDFILE"
      svc_die "the server exited before it was ready (log: $SVC_LOG)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      svc_log_tail
      svc_kill
      svc_die "not ready on 127.0.0.1:$port after ${SVC_READY_TIMEOUT}s (log: $SVC_LOG)"
    fi
    sleep 0.2
  done
}

# Signal the PID, wait up to 30 s for it to exit, then SIGKILL its process group.
svc_kill() {
  local pid
  pid="$(svc_pid)" || pid=""
  if [ -n "$pid" ] && svc_alive; then
    kill "-$SVC_STOP_SIGNAL" "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while svc_pid_running "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
    if svc_pid_running "$pid"; then
      svc_say "PID $pid ignored SIG$SVC_STOP_SIGNAL for 30 s; killing it"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$SVC_PIDFILE" "$SVC_PORTFILE" "$SVC_URLFILE"
}

# Serialize start/stop of one service across processes (pytest workers, engineers, all.sh).
svc_lock() {
  mkdir -p "$SVC_DIR"
  exec 9>"$SVC_DIR/.lock"
  flock -w 600 9 || svc_die "could not lock $SVC_DIR/.lock within 600 s"
}

# For servers that take a configuration file, `start [CONFIG]` (default $SVC_DEFAULT_CONFIG):
# print "ABSOLUTE_PATH SHA256" of the one this start asks for.
svc_config_wanted() {
  local config="${SVC_ARGS[0]:-${SVC_DEFAULT_CONFIG:?}}"
  [ -f "$config" ] || svc_die "no such config file: $config"
  config="$(realpath "$config")"
  echo "$config $(sha256sum <"$config" | cut -d' ' -f1)"
}

# Exit 0 if the running server was started with the config file (same path and content) wanted.
svc_config_matches() {
  [ "$(cat "$SVC_DIR/config" 2>/dev/null)" = "$(svc_config_wanted)" ]
}

# Reload a server that re-reads its config file on `POST /-/reload` (Prometheus, Alertmanager)
# when the file wanted is the one it runs with, changed; exit 1 when it is another file (the
# server cannot switch files, and relative paths in it resolve against its folder) or the
# server refused the new content (its log says why).
svc_config_reload() {
  local port="$1" wanted
  wanted="$(svc_config_wanted)"
  [ "${wanted% *}" = "$(cut -d' ' -f1 "$SVC_DIR/config" 2>/dev/null)" ] || return 1
  if curl -sf -m 30 -X POST "http://127.0.0.1:$port/-/reload" >/dev/null; then
    echo "$wanted" >"$SVC_DIR/config"
    return 0
  fi
  svc_say "the server refused the new content of ${wanted% *}; see $SVC_LOG"
  return 1
}

# --- installers ---------------------------------------------------------------------------

# Exit 0 if every Debian package named is installed.
svc_deb_installed() {
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || return 1
  done
}

# apt-get install the packages that are missing; `apt-get update` at most once a day. The
# output goes to $SVC_DIR/install.log, shown when it fails.
svc_apt_install() {
  svc_deb_installed "$@" && return 0
  local sudo="" log="$SVC_DIR/install.log"
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  mkdir -p "$SVC_DIR"
  local stamp="/var/lib/apt/periodic/driftloop-update-stamp"
  if [ ! -e "$stamp" ] || [ -n "$(find "$stamp" -mmin +1440 2>/dev/null)" ]; then
    svc_say "apt-get update"
    $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq >>"$log" 2>&1 ||
      { tail -n 20 "$log" >&2; svc_die "apt-get update failed (log: $log)"; }
    $sudo mkdir -p "$(dirname "$stamp")"
    $sudo touch "$stamp"
  fi
  svc_say "apt-get install $* (log: $log)"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "$@" >>"$log" 2>&1 ||
    { tail -n 20 "$log" >&2; svc_die "apt-get install $* failed (log: $log)"; }
}

# Copy a pom's dependencies from Maven Central into DEST (a folder of jars); skipped while the
# pom is unchanged since the last successful copy.
svc_maven_fetch() {
  local pom="$1" dest="$2" sum
  sum="$(sha256sum "$pom" | cut -d' ' -f1)"
  if [ -f "$dest/.pom-sha256" ] && [ "$(cat "$dest/.pom-sha256")" = "$sum" ]; then
    return 0
  fi
  command -v mvn >/dev/null || svc_apt_install maven
  command -v java >/dev/null || svc_apt_install openjdk-17-jre-headless
  svc_say "fetching $(basename "$(dirname "$pom")") jars from Maven Central into $dest"
  rm -rf "$dest"
  mkdir -p "$dest"
  mvn -B -q -Dstyle.color=never -f "$pom" dependency:copy-dependencies -DoutputDirectory="$dest" \
    -DincludeScope=runtime >&2
  echo "$sum" >"$dest/.pom-sha256"
}

# --- the command dispatcher ---------------------------------------------------------------

svc_cmd_start() {
  svc_install
  if declare -F svc_preflight >/dev/null; then svc_preflight; fi
  svc_lock
  if svc_alive && [ -s "$SVC_PORTFILE" ] && svc_ready "$(head -1 "$SVC_PORTFILE")" >/dev/null 2>&1
  then
    if ! declare -F svc_matches >/dev/null || svc_matches; then
      cat "$SVC_URLFILE"
      return 0
    fi
    if declare -F svc_reload >/dev/null && svc_reload "$(head -1 "$SVC_PORTFILE")"; then
      svc_say "reloaded with the new settings"
      cat "$SVC_URLFILE"
      return 0
    fi
    svc_say "running with other settings; restarting"
  fi
  svc_kill
  mkdir -p "$SVC_DATA"
  local ports port
  # shellcheck disable=SC2046
  ports="$(svc_free_ports "$SVC_PORT_COUNT" $(cat "$SVC_DIR/last-ports" 2>/dev/null))"
  port="$(head -1 <<<"$ports")"
  echo "$ports" >"$SVC_PORTFILE"
  echo "$ports" >"$SVC_DIR/last-ports"
  : >"$SVC_LOG"
  local started=$SECONDS
  # shellcheck disable=SC2086
  svc_launch $ports
  svc_wait_ready "$port"
  if declare -F svc_after_start >/dev/null; then svc_after_start "$port"; fi
  svc_url "$port" >"$SVC_URLFILE"
  svc_say "ready on 127.0.0.1:$port (pid $(svc_pid)) in $((SECONDS - started)) s"
  cat "$SVC_URLFILE"
}

svc_cmd_stop() {
  svc_lock
  if svc_alive; then
    svc_say "stopping pid $(svc_pid)"
  fi
  svc_kill
  if declare -F svc_after_stop >/dev/null; then svc_after_stop; fi
}

svc_cmd_url() {
  if svc_alive && [ -s "$SVC_URLFILE" ]; then
    cat "$SVC_URLFILE"
  else
    svc_die "not running (start it: $0 start)"
  fi
}

svc_cmd_status() {
  if svc_alive && [ -s "$SVC_URLFILE" ]; then
    echo "running pid=$(svc_pid) url=$(cat "$SVC_URLFILE") dir=$SVC_DIR"
  else
    echo "stopped dir=$SVC_DIR"
    return 3
  fi
}

svc_usage() {
  cat >&2 <<EOF
usage: $0 {install|start|stop|restart|url|status|clean}
  install  install the server from the machine's package registries (idempotent)
  start    start on a free 127.0.0.1 port, wait until ready, print the URL (no-op if running)
  stop     stop the server by its PID
  restart  stop, then start
  url      print the URL of the running server (exit 1 if stopped)
  status   'running pid=... url=...' (exit 0) or 'stopped' (exit 3)
  clean    stop and delete the state directory ($SVC_DIR)
EOF
}

svc_main() {
  local cmd="${1:-}"
  [ "$#" -gt 0 ] && shift
  SVC_ARGS=("$@")
  case "$cmd" in
    install) svc_install ;;
    start)
      if [ -z "${DRIFTLOOP_SERVICES_DIR:-}" ] && [ "$SVC_ROOT" != "$SVC_REPO_ROOT/.services" ]; then
        svc_say "state in $SVC_ROOT: other users cannot enter the checkout's folder" \
          "(set DRIFTLOOP_SERVICES_DIR to choose another place)"
      fi
      svc_cmd_start ;;
    stop) svc_cmd_stop ;;
    restart) svc_cmd_stop && svc_cmd_start ;;
    url) svc_cmd_url ;;
    status) svc_cmd_status ;;
    clean) svc_cmd_stop && rm -rf "$SVC_DIR" ;;
    -h | --help | help) svc_usage ;;
    *) svc_usage; exit 2 ;;
  esac
}
