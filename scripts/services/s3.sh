#!/usr/bin/env bash
# S3Proxy (org.gaul:s3proxy from Maven Central, see s3/pom.xml): a real S3 API server on a free
# 127.0.0.1 port, objects kept on the filesystem under the state directory. It accepts the
# credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (default driftloop /
# driftloop-secret), AWS signature v2 or v4. URL: http://127.0.0.1:PORT
# Usage: scripts/services/s3.sh {install|start|stop|restart|url|status|clean}
SVC_NAME=s3
SVC_PROC_MATCH=s3proxy
# shellcheck source=service-lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/service-lib.sh"

S3_POM="$SVC_SCRIPTS_DIR/s3/pom.xml"
S3_VERSION="$(sed -n 's:.*<s3proxy.version>\(.*\)</s3proxy.version>.*:\1:p' "$S3_POM")"
S3_LIB="$SVC_CACHE/s3proxy-$S3_VERSION"

svc_install() {
  svc_maven_fetch "$S3_POM" "$S3_LIB"
}

svc_launch() {
  local port="$1" config="$SVC_DIR/s3proxy.properties"
  # The properties hold the secret: readable by us only, never printed.
  (
    umask 077
    cat >"$config" <<PROPS
s3proxy.endpoint=http://127.0.0.1:$port
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=${AWS_ACCESS_KEY_ID:-driftloop}
s3proxy.credential=${AWS_SECRET_ACCESS_KEY:-driftloop-secret}
s3proxy.ignore-unknown-headers=true
jclouds.provider=filesystem-nio2
jclouds.identity=${AWS_ACCESS_KEY_ID:-driftloop}
jclouds.credential=${AWS_SECRET_ACCESS_KEY:-driftloop-secret}
jclouds.filesystem.basedir=$SVC_DATA
PROPS
  )
  svc_spawn java -Xms64m -Xmx512m -Djava.awt.headless=true \
    -jar "$S3_LIB/s3proxy-$S3_VERSION-jar-with-dependencies.jar" --properties "$config"
}

svc_ready() {
  # Any HTTP answer (S3Proxy says 403 to an unsigned request) means it is serving.
  curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1/" | grep -q '^[1-5]'
}

svc_url() {
  echo "http://127.0.0.1:$1"
}

svc_main "$@"
