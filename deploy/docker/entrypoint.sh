#!/bin/sh
# The image's entrypoint (under tini, PID 1).
#   (no arguments)     chidori server, with CHIDORI_CONFIG if set
#   executor           a Spark executor, as Spark's own image runs it: the kubernetes cluster
#                      type's executor pods use this image and Spark gives them the argument
#                      `executor` and the SPARK_EXECUTOR_* / SPARK_DRIVER_URL environment
#   anything else      passed to `chidori` (server --config F, submit, jobs, kubernetes rbac, ...)
set -eu

if [ "$#" -eq 0 ]; then
  set -- server
fi

if [ "$1" = executor ]; then
  : "${SPARK_HOME:?SPARK_HOME must name the Spark installation}"
  # Spark's entrypoint.sh: the SPARK_JAVA_OPT_N options in order, then the executor backend.
  java_opts=$(env | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n | sed 's/^[^=]*=//') || true
  classpath="${SPARK_CONF_DIR:-$SPARK_HOME/conf}:${SPARK_CLASSPATH:-}:$SPARK_HOME/jars/*"
  if [ -n "${SPARK_EXTRA_CLASSPATH:-}" ]; then classpath="$classpath:$SPARK_EXTRA_CLASSPATH"; fi
  if [ -n "${HADOOP_CONF_DIR:-}" ]; then classpath="$HADOOP_CONF_DIR:$classpath"; fi
  set -- java
  # One option per line, as Spark writes them (an option may hold spaces).
  old_ifs=$IFS
  IFS='
'
  for opt in $java_opts; do set -- "$@" "$opt"; done
  IFS=$old_ifs
  set -- "$@" "-Xms${SPARK_EXECUTOR_MEMORY}" "-Xmx${SPARK_EXECUTOR_MEMORY}" -cp "$classpath" \
    org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
    --driver-url "$SPARK_DRIVER_URL" --executor-id "$SPARK_EXECUTOR_ID" \
    --cores "$SPARK_EXECUTOR_CORES" --app-id "$SPARK_APPLICATION_ID" \
    --hostname "$SPARK_EXECUTOR_POD_IP" --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
    --podName "${SPARK_EXECUTOR_POD_NAME:-}"
  if [ -n "${CHIDORI_ENTRYPOINT_DRY_RUN:-}" ]; then
    printf '%s\n' "$@"
    exit 0
  fi
  exec "$@"
fi

exec chidori "$@"
