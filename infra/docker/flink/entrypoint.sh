#!/usr/bin/env bash
# jobmanager | taskmanager: run that Flink process in the foreground.
set -euo pipefail
export HADOOP_CLASSPATH="$(echo /opt/delab/classpath/*.jar | tr ' ' ':')"
exec bash "$FLINK_HOME/bin/$1.sh" start-foreground
