#!/usr/bin/env bash
# jobmanager | taskmanager: write the config (the wheel's + settings.yaml) and run that Flink process in the
# foreground, with the connector jars on its classpath as in the native profile.
set -euo pipefail
python /opt/delab/merge_config.py "$FLINK_HOME/conf/config.yaml" /opt/delab/settings.yaml "$FLINK_CONF_DIR/config.yaml"
mkdir -p /data/tmp /data/uploads /data/checkpoints /data/savepoints
export HADOOP_CLASSPATH="$(echo /opt/delab/classpath/*.jar | tr ' ' ':')"
export JVM_ARGS="-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
exec bash "$FLINK_HOME/bin/$1.sh" start-foreground
