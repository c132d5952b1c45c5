# Chidori's image: the server (`chidori server`, the default) and, for the kubernetes cluster
# type, its executors (`executor`, which Spark passes to executor pods), with one Spark version.
# Not built in CI (no container runtime there): tests/test_image_install.py runs the same
# install steps (deploy/docker/install.sh) into a clean virtualenv and starts the entrypoint.
#   docker build -t REGISTRY/chidori:TAG .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: Chidori's wheel from this repository --------------------------------------------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN python -m pip install --no-cache-dir --disable-pip-version-check "setuptools>=68" wheel
COPY pyproject.toml README.md ./
COPY src ./src
COPY deploy/docker/install.sh /usr/local/bin/chidori-install
RUN chidori-install wheel /src /wheels

# --- runtime: Python, Java 17, pyspark and Chidori with a deployment's extras ----------------
FROM ${PYTHON_IMAGE}
# The Spark of the server's drivers and of the executors (the same image): pyspark's version.
ARG PYSPARK_VERSION=4.3.0
ARG CHIDORI_EXTRAS=postgres,rabbitmq,kubernetes,s3,gcs,azure-blob,connect
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        openjdk-17-jre-headless tini procps \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/lib/jvm/java-17-openjdk-* /usr/lib/jvm/java-17
COPY deploy/docker/install.sh /usr/local/bin/chidori-install
COPY --from=build /wheels /wheels
RUN PYSPARK_VERSION=${PYSPARK_VERSION} CHIDORI_EXTRAS=${CHIDORI_EXTRAS} \
        chidori-install venv /wheels /opt/chidori/venv \
    && rm -rf /wheels \
    # The sandboxed drivers (other uids) must read the runtime.
    && chmod -R o+rX /opt/chidori
COPY deploy/docker/entrypoint.sh /opt/chidori/entrypoint.sh
# Spark's images run as uid 185; so do these, unless the chart runs the server as root for
# driver isolation (docs/deploy.md).
RUN groupadd --gid 185 spark && useradd --uid 185 --gid 185 --home-dir /home/spark \
        --create-home --shell /usr/sbin/nologin spark \
    && mkdir -p /var/lib/chidori && chown 185:185 /var/lib/chidori
ENV PATH=/opt/chidori/venv/bin:$PATH \
    JAVA_HOME=/usr/lib/jvm/java-17 \
    SPARK_HOME=/opt/chidori/venv/lib/python3.11/site-packages/pyspark \
    PYSPARK_PYTHON=/opt/chidori/venv/bin/python \
    CHIDORI_HOME=/var/lib/chidori \
    CHIDORI_HOST=0.0.0.0 \
    CHIDORI_PORT=8080 \
    PYTHONUNBUFFERED=1
USER 185:185
WORKDIR /var/lib/chidori
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/chidori/entrypoint.sh"]
