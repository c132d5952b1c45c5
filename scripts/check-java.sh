#!/usr/bin/env bash
# Stops `make` at once, with one line, when Java 17+ (which Spark needs) is missing.
java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
if ! command -v "$java_bin" >/dev/null 2>&1; then
  echo "Java 17 or newer is required (Spark runs on it): install it, e.g. 'apt-get install openjdk-17-jre-headless'." >&2
  exit 1
fi
version=$("$java_bin" -version 2>&1 | sed -n 's/.* version "\([0-9]*\)[."].*/\1/p' | head -n 1)
if [ -z "$version" ] || [ "$version" -lt 17 ]; then
  echo "Java 17 or newer is required (found ${version:-an unknown version}): install e.g. 'apt-get install openjdk-17-jre-headless'." >&2
  exit 1
fi
