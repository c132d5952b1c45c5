#!/bin/sh
# The image's install steps, shared by the Dockerfile and tests/test_image_install.py (which
# runs them into a clean virtualenv, since no container runtime is available to build the image).
#   install.sh wheel REPO OUT_DIR     build Chidori's wheel from the repository into OUT_DIR
#   install.sh venv WHEEL_DIR VENV    a virtualenv at VENV with that wheel, its extras and pyspark
# CHIDORI_EXTRAS (the extras a deployment needs) and PYSPARK_VERSION (the Spark of the server and
# its executors) choose what goes in; extra pip options come from the environment (PIP_*).
set -eu

EXTRAS="${CHIDORI_EXTRAS:-postgres,rabbitmq,kubernetes,s3,gcs,azure-blob,connect}"
PYSPARK_VERSION="${PYSPARK_VERSION:-4.3.0}"
PYTHON="${PYTHON:-python3}"

case "${1:-}" in
  wheel)
    "$PYTHON" -m pip wheel --no-deps --no-build-isolation --disable-pip-version-check \
      --wheel-dir "$3" "$2"
    ;;
  venv)
    wheel=$(ls "$2"/chidori-*.whl)
    "$PYTHON" -m venv "$3"
    "$3/bin/python" -m pip install --no-cache-dir --disable-pip-version-check \
      "chidori[$EXTRAS] @ file://$wheel" "pyspark==$PYSPARK_VERSION"
    ;;
  *)
    echo "usage: install.sh wheel REPO OUT_DIR | venv WHEEL_DIR VENV" >&2
    exit 2
    ;;
esac
