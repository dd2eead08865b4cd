#!/usr/bin/env bash
# Apache Kafka (org.apache.kafka:kafka_2.13 from Maven Central, see kafka/pom.xml), one node in
# KRaft mode (broker and controller), run with the machine's Java 17 on free 127.0.0.1 ports.
# URL: kafka://127.0.0.1:PORT (the bootstrap servers are 127.0.0.1:PORT).
# Usage: scripts/services/kafka.sh {install|start|stop|restart|url|status|clean}
SVC_NAME=kafka
SVC_PROC_MATCH=kafka.Kafka
SVC_PORT_COUNT=2 # the client listener, then the controller listener
SVC_READY_TIMEOUT="${DRIFTLOOP_KAFKA_READY_TIMEOUT:-120}"
# shellcheck source=service-lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/service-lib.sh"

KAFKA_POM="$SVC_SCRIPTS_DIR/kafka/pom.xml"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM")"
KAFKA_LIB="$SVC_CACHE/kafka-$KAFKA_VERSION/lib"
read -r -a KAFKA_JVM <<<"${DRIFTLOOP_KAFKA_HEAP:--Xms256m -Xmx768m}"
KAFKA_JVM+=(
  -XX:+UseG1GC -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$SVC_SCRIPTS_DIR/kafka/log4j2.properties"
  -cp "$KAFKA_LIB/*"
)

svc_install() {
  svc_maven_fetch "$KAFKA_POM" "$KAFKA_LIB"
}

svc_launch() {
  local port="$1" controller="$2" config="$SVC_DIR/server.properties"
  cat >"$config" <<PROPS
# Written by scripts/services/kafka.sh: a single-node KRaft cluster on loopback.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$SVC_DATA
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Tests set session.timeout.ms low so group joins and failovers are quick.
group.min.session.timeout.ms=500
group.consumer.min.session.timeout.ms=1000
group.consumer.min.heartbeat.interval.ms=500
log.flush.interval.messages=9223372036854775807
PROPS
  if [ ! -s "$SVC_DATA/meta.properties" ]; then
    local cluster_id
    # Kafka's id is 16 random bytes in URL-safe base64; one starting with '-' would be read as
    # an option by the format tool (1 run in 64), so draw again until it does not.
    cluster_id="$(python3 -c '
import base64, uuid
while (cid := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"):
    pass
print(cid)')"
    svc_say "formatting $SVC_DATA (cluster $cluster_id)"
    java "${KAFKA_JVM[@]}" kafka.tools.StorageTool format --ignore-formatted -t "$cluster_id" -c "$config" \
      </dev/null >>"$SVC_LOG" 2>&1 9>&- || { svc_log_tail; svc_die "kafka storage format failed"; }
  fi
  svc_spawn java "${KAFKA_JVM[@]}" kafka.Kafka "$config"
}

svc_ready() {
  svc_port_open "$1" && grep -q 'Kafka Server started' "$SVC_LOG"
}

svc_url() {
  echo "kafka://127.0.0.1:$1"
}

svc_main "$@"
