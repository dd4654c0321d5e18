#!/usr/bin/env bash
# broker | connect: write the process's properties from the environment and run it in the foreground.
#   broker:  KAFKA_<NAME>=value   -> <name>=value in server.properties (KAFKA_LOG_DIRS -> log.dirs), as the native
#            profile writes them (delab.stack.services.kafka); formats the storage on first start (CLUSTER_ID, or a
#            random id; --standalone unless a static controller.quorum.voters is given).
#   connect: CONNECT_<NAME>=value -> <name>=value in connect-distributed.properties.
set -euo pipefail
role="${1:-broker}"
conf=/opt/delab/run
mkdir -p "$conf"
cp /opt/delab/log4j2.properties "$conf/log4j2.properties"

properties() {  # PREFIX FILE: env vars PREFIX_* (but the JVM's own *_OPTS) as a properties file
  local prefix="$1" file="$2" name key
  : > "$file"
  while IFS='=' read -r name _; do
    case "$name" in "${prefix}_HEAP_OPTS"|"${prefix}_OPTS"|"${prefix}_ROLE") continue ;; esac
    key="$(printf '%s' "${name#"${prefix}"_}" | tr '[:upper:]_' '[:lower:].')"
    printf '%s=%s\n' "$key" "${!name}" >> "$file"
  done < <(env | grep -E "^${prefix}_[A-Z0-9_]+=" | sort)
}

java_cmd=(java -Xms64m ${KAFKA_HEAP_OPTS:-"-Xmx512m"} -XX:TieredStopAtLevel=1 -XX:+UseSerialGC
  -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true "-Dlog4j2.configurationFile=$conf/log4j2.properties"
  "-Dkafka.logs.dir=$conf" -cp "/opt/kafka/libs/*")

case "$role" in
  broker)
    properties KAFKA "$conf/server.properties"
    data="${KAFKA_LOG_DIRS:-/var/lib/kafka/data}"
    if [ ! -f "$data/meta.properties" ]; then
      id="${CLUSTER_ID:-$("${java_cmd[@]}" kafka.tools.StorageTool random-uuid)}"
      standalone=(--standalone)
      [ -n "${KAFKA_CONTROLLER_QUORUM_VOTERS:-}" ] && standalone=()
      "${java_cmd[@]}" kafka.tools.StorageTool format -t "$id" -c "$conf/server.properties" "${standalone[@]}"
    fi
    exec "${java_cmd[@]}" kafka.Kafka "$conf/server.properties"
    ;;
  connect)
    properties CONNECT "$conf/connect-distributed.properties"
    exec "${java_cmd[@]}" org.apache.kafka.connect.cli.ConnectDistributed "$conf/connect-distributed.properties"
    ;;
  *) echo "usage: kafka.sh broker|connect" >&2; exit 2 ;;
esac
