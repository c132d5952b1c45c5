"""How the process kubelet turns a pod's container into a local command line.

The rule: a container whose `args` start with `executor` and whose env names
SPARK_EXECUTOR_ID is a Spark executor, run as the Spark image's `entrypoint.sh executor` would
(resource-managers/kubernetes/docker/src/main/dockerfiles/spark/entrypoint.sh):

    java <SPARK_JAVA_OPT_0..N, in numeric order>
      -Xms$SPARK_EXECUTOR_MEMORY -Xmx$SPARK_EXECUTOR_MEMORY
      -cp "$SPARK_CONF_DIR:$SPARK_CLASSPATH:$SPARK_HOME/jars/*[:$SPARK_EXTRA_CLASSPATH]:..."
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend --driver-url ...
      --executor-id ... --cores ... --app-id ... --hostname $SPARK_EXECUTOR_POD_IP
      --resourceProfileId ... --podName $SPARK_EXECUTOR_POD_NAME

(the script puts the java options before -Xms/-Xmx, so this does too; `$HADOOP_CONF_DIR` is
prepended when set, as there; no tini). Any other container runs its `command` + `args` as
given, the first word looked up on PATH; a container with no command that is not a Spark
executor cannot run here (there is no image to take an entrypoint from).

The environment is what a container would see: a small base (PATH, HOME = the pod's own
directory, LANG, HOSTNAME, KUBERNETES_SERVICE_HOST/PORT naming the fake API server,
SPARK_HOME = the pyspark package directory, PYSPARK_PYTHON = the configured python,
JAVA_HOME, SPARK_LOCAL_IP = the pod IP, which is what the pod's host name would resolve to),
then `envFrom` (configMapRef / secretRef, with prefix), then `env` (value with `$(VAR)`
expansion, valueFrom.fieldRef: metadata.name / namespace / uid / labels['k'] /
annotations['k'], spec.nodeName, spec.serviceAccountName, status.podIP (127.0.0.1),
status.podIPs, status.hostIP; resourceFieldRef: requests/limits of cpu and memory;
configMapKeyRef, secretKeyRef). Nothing of the test process's own environment leaks in
beyond the base.

Volumes are materialised under the pod's directory: configMap and secret volumes (all keys, or
the listed items, with their paths), emptyDir and generic ephemeral volumes (an empty
directory), persistentVolumeClaim (one directory per claim, kept for the kubelet's life;
nothing checks that the claim exists or is bound), hostPath (the path itself); others
(projected, downwardAPI, CSI, ...) are left out. Processes share the host's
file system, so a mount path cannot be honoured as such: paths under a mount path in env
values, command words and the working directory are rewritten to the materialised directory
(where such a path starts a word: after a space, a quote, `=` or `:`, so classpaths, `-Dk=v`
options and shell scripts are covered; other text is left alone). For a Spark executor that turns
SPARK_CONF_DIR=/opt/spark/conf into the executor ConfigMap's files and SPARK_LOCAL_DIRS into
its emptyDir.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.kubesim.cluster import Cluster
from tests.kubesim.scheduler import parse_quantity

Obj = dict[str, Any]
POD_IP = "127.0.0.1"
EXECUTOR_BACKEND = "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend"
_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class CannotRun(Exception):
    """The container cannot be run as a local process (the reason is the message)."""


@dataclass
class Settings:
    """What the kubelet's "image" provides."""

    python: str = sys.executable
    spark_home: Path | None = None
    java_home: Path | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)

    def spark_dir(self) -> Path:
        if self.spark_home is not None:
            return self.spark_home
        import pyspark

        return Path(pyspark.__file__).parent

    def java(self) -> str:
        home = self.java_home or (
            Path(os.environ["JAVA_HOME"]) if "JAVA_HOME" in os.environ else None
        )
        if home is not None:
            return str(home / "bin" / "java")
        found = shutil.which("java")
        if found is None:
            raise CannotRun("no java on PATH and no JAVA_HOME")
        return found


@dataclass
class Launch:
    """A container as a command line."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    spark_executor: bool


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion (`$$` is a literal `$`; unknown references stay)."""

    def one(found: re.Match[str]) -> str:
        if found.group(0) == "$$":
            return "$"
        return env.get(found.group(1), found.group(0))

    return _REF.sub(one, value)


def materialise_volumes(cluster: Cluster, pod: Obj, root: Path) -> dict[str, Path]:
    """Volume name → directory on this machine, for the volume kinds modelled."""
    namespace = pod["metadata"].get("namespace", "default")
    out: dict[str, Path] = {}
    for volume in pod.get("spec", {}).get("volumes") or []:
        name = volume["name"]
        target = root / "volumes" / name
        if "emptyDir" in volume or "ephemeral" in volume:
            target.mkdir(parents=True, exist_ok=True)
        elif "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"].get("claimName", name)
            target = root.parent / "claims" / f"{namespace}_{claim}"
            target.mkdir(parents=True, exist_ok=True)
        elif "hostPath" in volume:
            target = Path(volume["hostPath"]["path"])
        elif "configMap" in volume or "secret" in volume:
            source = volume.get("configMap") or volume.get("secret") or {}
            kind = "configmaps" if "configMap" in volume else "secrets"
            ref = source.get("name") or source.get("secretName", "")
            obj = cluster.try_get(kind, ref, namespace)
            if obj is None:
                if source.get("optional"):
                    target.mkdir(parents=True, exist_ok=True)
                    out[name] = target
                    continue
                raise CannotRun(f'{kind[:-1]} "{ref}" not found')
            data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
            if kind == "secrets":
                data = {k: base64.b64decode(v) for k, v in data.items()}
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
            items = source.get("items") or [{"key": k, "path": k} for k in data]
            target.mkdir(parents=True, exist_ok=True)
            for item in items:
                if item["key"] in data:
                    path = target / item["path"]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data[item["key"]])
        else:
            continue
        out[name] = target
    return out


def mounts_for(container: Obj, volumes: dict[str, Path]) -> list[tuple[str, Path]]:
    """(mount path, directory) for the container, longest mount path first."""
    mounts = []
    for mount in container.get("volumeMounts") or []:
        if mount.get("name") in volumes:
            host = volumes[mount["name"]]
            if mount.get("subPath"):
                host = host / mount["subPath"]
            mounts.append((str(mount["mountPath"]).rstrip("/") or "/", host))
    return sorted(mounts, key=lambda m: -len(m[0]))


def translate(value: str, mounts: list[tuple[str, Path]]) -> str:
    """Rewrite the paths in `value` that lie under a mount path: an occurrence of the mount path
    that starts a word (after the start, a space, a quote, `=` or `:`) and ends one or goes on
    with `/`."""
    if not mounts:
        return value
    hosts = dict(mounts)
    paths = "|".join(re.escape(path) for path, _ in mounts)  # longest first
    pattern = r"(?<![^\s\"'=:])(" + paths + r")(?=$|[/\s\"':;])"
    return re.sub(pattern, lambda found: str(hosts[found.group(1)]), value)


def _field(pod: Obj, path: str) -> str:
    meta, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
    found = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if found:
        return str((meta.get(found.group(1)) or {}).get(found.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": POD_IP,
        "status.podIPs": POD_IP,
        "status.hostIP": POD_IP,
        "status.hostIPs": POD_IP,
    }
    if path not in simple:
        raise CannotRun(f"unsupported fieldRef {path}")
    return str(simple[path] or status.get(path.split(".")[-1], ""))


def _resource_field(container: Obj, ref: Obj) -> str:
    kind, _, name = str(ref.get("resource", "")).partition(".")
    quantity = ((container.get("resources") or {}).get(kind) or {}).get(name)
    if quantity is None:
        return "0"
    divisor = parse_quantity(ref.get("divisor") or "1")
    value = parse_quantity(quantity) / divisor
    return str(-(-value.numerator // value.denominator))  # rounded up, as the kubelet does


def _key_ref(cluster: Cluster, namespace: str, kind: str, ref: Obj) -> str | None:
    obj = cluster.try_get(kind, str(ref.get("name", "")), namespace)
    value = None if obj is None else (obj.get("data") or {}).get(ref.get("key"))
    if value is None:
        if ref.get("optional"):
            return None
        raise CannotRun(f"{kind} {ref.get('name')}/{ref.get('key')} not found")
    return base64.b64decode(value).decode() if kind == "secrets" else str(value)


def container_env(
    cluster: Cluster, pod: Obj, container: Obj, base: dict[str, str], mounts: list[tuple[str, Path]]
) -> dict[str, str]:
    """The container's environment (see the module docstring for what is resolved)."""
    namespace = pod["metadata"].get("namespace", "default")
    env = dict(base)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        kind = "configmaps" if "configMapRef" in source else "secrets"
        ref = source.get("configMapRef") or source.get("secretRef") or {}
        obj = cluster.try_get(kind, str(ref.get("name", "")), namespace)
        if obj is None:
            if ref.get("optional"):
                continue
            raise CannotRun(f"{kind} {ref.get('name')} not found")
        for key, data in (obj.get("data") or {}).items():
            env[prefix + key] = base64.b64decode(data).decode() if kind == "secrets" else data
    value: str | None
    for var in container.get("env") or []:
        source = var.get("valueFrom")
        if source is None:
            value = expand(str(var.get("value", "")), env)
        elif "fieldRef" in source:
            value = _field(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            value = _resource_field(container, source["resourceFieldRef"])
        elif "configMapKeyRef" in source:
            value = _key_ref(cluster, namespace, "configmaps", source["configMapKeyRef"])
        elif "secretKeyRef" in source:
            value = _key_ref(cluster, namespace, "secrets", source["secretKeyRef"])
        else:
            raise CannotRun(f"unsupported valueFrom for {var['name']}")
        if value is not None:
            env[var["name"]] = value
    return {k: translate(v, mounts) for k, v in env.items()}


def is_spark_executor(container: Obj) -> bool:
    args = container.get("args") or []
    names = {v.get("name") for v in container.get("env") or []}
    return bool(args) and args[0] == "executor" and "SPARK_EXECUTOR_ID" in names


def spark_executor_argv(env: dict[str, str], settings: Settings) -> list[str]:
    """The command `entrypoint.sh executor` runs, from the container's environment."""
    spark_home = env.get("SPARK_HOME") or str(settings.spark_dir())
    classpath = f"{env.get('SPARK_CLASSPATH', '')}:{spark_home}/jars/*"
    if env.get("SPARK_EXTRA_CLASSPATH"):
        classpath += ":" + env["SPARK_EXTRA_CLASSPATH"]
    if "HADOOP_CONF_DIR" in env:
        classpath = f"{env['HADOOP_CONF_DIR']}:{classpath}"
    classpath = f"{env.get('SPARK_CONF_DIR', spark_home + '/conf')}:{classpath}"
    opts = sorted(
        (int(m.group(1)), v)
        for k, v in env.items()
        if (m := re.fullmatch(r"SPARK_JAVA_OPT_(\d+)", k))
    )
    memory = env["SPARK_EXECUTOR_MEMORY"]
    return [
        settings.java(),
        *[v for _, v in opts],
        f"-Xms{memory}",
        f"-Xmx{memory}",
        "-cp",
        f"{classpath}:{env.get('SPARK_DIST_CLASSPATH', '')}",
        EXECUTOR_BACKEND,
        "--driver-url",
        env["SPARK_DRIVER_URL"],
        "--executor-id",
        env["SPARK_EXECUTOR_ID"],
        "--cores",
        env["SPARK_EXECUTOR_CORES"],
        "--app-id",
        env["SPARK_APPLICATION_ID"],
        "--hostname",
        env["SPARK_EXECUTOR_POD_IP"],
        "--resourceProfileId",
        env["SPARK_RESOURCE_PROFILE_ID"],
        "--podName",
        env["SPARK_EXECUTOR_POD_NAME"],
    ]


def launch_for(
    cluster: Cluster,
    pod: Obj,
    container: Obj,
    root: Path,
    volumes: dict[str, Path],
    settings: Settings,
) -> Launch:
    """The command line, environment and working directory for one container."""
    mounts = mounts_for(container, volumes)
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    base = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "HOSTNAME": str(pod.get("spec", {}).get("hostname") or pod["metadata"]["name"]),
        "KUBERNETES_SERVICE_HOST": settings.api_host,
        "KUBERNETES_SERVICE_PORT": str(settings.api_port),
        "SPARK_HOME": str(settings.spark_dir()),
        "PYSPARK_PYTHON": settings.python,
        "SPARK_LOCAL_IP": POD_IP,
    }
    if settings.java_home is not None or "JAVA_HOME" in os.environ:
        base["JAVA_HOME"] = str(settings.java_home or os.environ["JAVA_HOME"])
    base.update(settings.extra_env)
    env = container_env(cluster, pod, container, base, mounts)
    cwd = Path(translate(str(container.get("workingDir") or root), mounts))
    if is_spark_executor(container):
        return Launch(spark_executor_argv(env, settings), env, cwd, True)
    words = [expand(str(w), env) for w in (container.get("command") or [])]
    words += [expand(str(w), env) for w in (container.get("args") or [])]
    if not container.get("command"):
        raise CannotRun(
            "kubesim runs a container's command, or a Spark executor; this one has neither"
        )
    words = [translate(w, mounts) for w in words]
    found = shutil.which(words[0], path=env["PATH"]) if "/" not in words[0] else words[0]
    if found is None:
        raise CannotRun(f'exec: "{words[0]}": executable file not found in $PATH')
    return Launch([found, *words[1:]], env, cwd, False)
