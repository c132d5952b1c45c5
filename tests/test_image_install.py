"""The container image's install steps and entrypoint, outside Docker (no container runtime here).

The Dockerfile's build stage and runtime stage call `deploy/docker/install.sh` (`wheel`, then
`venv`); this runs the same script: Chidori's wheel from the repository, then a clean virtualenv
with that wheel, the Dockerfile's extras and its pyspark version. Nothing is downloaded: the
dependencies come from this test run's own virtualenv through PYTHONPATH (a folder of links to
its packages, Chidori's own left out), where the image gets them from PyPI. Then the image's
entrypoint, with the clean virtualenv first on PATH as in the image, prints `--help` and
`--version`, starts `chidori server` until `/readyz` answers, and builds a Spark executor's
command line (the kubernetes cluster type's executor pods run this image with `executor`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pyspark
import pytest

from tests.server import REPO, free_port

DOCKERFILE = REPO / "Dockerfile"
INSTALL = REPO / "deploy" / "docker" / "install.sh"
ENTRYPOINT = REPO / "deploy" / "docker" / "entrypoint.sh"
# Extras of the image whose packages this test run has (gcs and azure-blob it does not).
TESTED_EXTRAS = {"postgres", "rabbitmq", "kubernetes", "s3"}


def dockerfile_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), re.M))


def test_dockerfile_shape() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM \S+(?: AS (\w+))?$", text, re.M)
    assert len(stages) == 2 and stages[0] == "build", stages
    # Both stages install through the shared script, which this module runs.
    assert re.search(r"^RUN chidori-install wheel /src /wheels$", text, re.M)
    assert re.search(r"chidori-install venv /wheels /opt/chidori/venv", text)
    assert re.search(r"^USER 185:185$", text, re.M)  # numeric: runAsNonRoot can check it
    assert re.search(r"^EXPOSE 8080$", text, re.M)
    assert re.search(
        r'^ENTRYPOINT \["/usr/bin/tini", "--", "/opt/chidori/entrypoint.sh"\]$', text, re.M
    )
    assert "openjdk-17-jre-headless" in text
    # The image's Spark is the one the tests run (and the executors, same image).
    assert dockerfile_args()["PYSPARK_VERSION"] == pyspark.__version__
    extras = set(dockerfile_args()["CHIDORI_EXTRAS"].split(","))
    assert {"postgres", "rabbitmq", "kubernetes", "s3", "gcs", "azure-blob"} <= extras


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The clean virtualenv install.sh makes, and the environment to run it with."""
    root = tmp_path_factory.mktemp("image")
    deps = root / "deps"
    deps.mkdir()
    site_packages = Path(sysconfig.get_paths()["purelib"])
    for entry in site_packages.iterdir():
        if entry.name.startswith(("chidori", "__editable__", "_chidori")) or entry.suffix == ".pth":
            continue
        (deps / entry.name).symlink_to(entry)
    args = dockerfile_args()
    extras = ",".join(e for e in args["CHIDORI_EXTRAS"].split(",") if e in TESTED_EXTRAS)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "VIRTUAL_ENV", "CHIDORI_", "PIP_"))
    }
    env.update(
        {
            "PYTHONPATH": str(deps),
            "PIP_NO_INDEX": "1",
            "PIP_NO_BUILD_ISOLATION": "1",
            "CHIDORI_EXTRAS": extras,
            "PYSPARK_VERSION": args["PYSPARK_VERSION"],
        }
    )
    started = time.monotonic()
    # What the build stage copies (COPY pyproject.toml README.md, src), less what .dockerignore
    # leaves out: a fresh tree, as in the image (setuptools would reuse a stale build/ here).
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    wheels = root / "wheels"
    subprocess.run(
        [str(INSTALL), "wheel", str(source), str(wheels)],
        env={**env, "PYTHON": sys.executable},
        check=True,
        capture_output=True,
    )
    venv = root / "venv"
    installed = subprocess.run(
        [str(INSTALL), "venv", str(wheels), str(venv)],
        env={**env, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    print(f"wheel and clean venv in {time.monotonic() - started:.1f} s")
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return venv, env


def test_the_wheel_is_installed_not_the_checkout(image_venv: tuple[Path, dict[str, str]]) -> None:
    venv, env = image_venv
    where = subprocess.run(
        ["python", "-c", "import chidori, pyspark; print(chidori.__file__, pyspark.__version__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert Path(where[0]).is_relative_to(venv), where
    assert where[1] == dockerfile_args()["PYSPARK_VERSION"]
    assert (venv / "bin" / "chidori").exists()


def test_entrypoint_passes_subcommands_to_chidori(
    image_venv: tuple[Path, dict[str, str]],
) -> None:
    _, env = image_venv
    helped = subprocess.run(
        [str(ENTRYPOINT), "--help"], env=env, capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0, helped.stderr
    assert "server" in helped.stdout and "submit" in helped.stdout
    version = subprocess.run(
        [str(ENTRYPOINT), "--version"], env=env, capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0, version.stderr
    assert re.fullmatch(r"chidori \S+\n", version.stdout), version.stdout


def test_entrypoint_starts_the_server(
    image_venv: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    _, env = image_venv
    port = free_port()
    server_env = {
        **env,
        "CHIDORI_HOME": str(tmp_path / "home"),
        "CHIDORI_HOST": "127.0.0.1",
        "CHIDORI_PORT": str(port),
        "CHIDORI_ISOLATION": "none",
        "CHIDORI_ADMIN_TOKEN": "image-test-token",
    }
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        # No arguments: the image's default command.
        process = subprocess.Popen(
            [str(ENTRYPOINT)], env=server_env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    try:
        started = time.monotonic()
        ready = None
        while time.monotonic() - started < 60 and process.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert ready is not None and ready.status_code == 200, log.read_text()[-3000:]
        print(f"server ready through the entrypoint in {time.monotonic() - started:.1f} s")
        jobs = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/jobs",
            headers={"Authorization": "Bearer image-test-token"},
        )
        assert jobs.status_code == 200, jobs.text
    finally:
        process.terminate()
        process.wait(30)


def test_entrypoint_runs_a_spark_executor_as_spark_images_do(
    image_venv: tuple[Path, dict[str, str]],
) -> None:
    _, env = image_venv
    spark_home = str(Path(pyspark.__file__).parent)
    executor_env = {
        **env,
        "CHIDORI_ENTRYPOINT_DRY_RUN": "1",
        "SPARK_HOME": spark_home,
        "SPARK_JAVA_OPT_10": "-Dlast=10",
        "SPARK_JAVA_OPT_2": "-Dspark.app.name=a name with spaces",
        "SPARK_JAVA_OPT_0": "-Dfirst=0",
        "SPARK_EXECUTOR_MEMORY": "1024m",
        "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@10.0.0.5:40000",
        "SPARK_EXECUTOR_ID": "3",
        "SPARK_EXECUTOR_CORES": "2",
        "SPARK_APPLICATION_ID": "spark-app-1",
        "SPARK_EXECUTOR_POD_IP": "10.0.0.9",
        "SPARK_RESOURCE_PROFILE_ID": "0",
        "SPARK_EXECUTOR_POD_NAME": "chidori-7-1-abc-exec-3",
    }
    shown = subprocess.run(
        [str(ENTRYPOINT), "executor"], env=executor_env, capture_output=True, text=True, check=True
    )
    assert shown.stdout.splitlines() == [
        "java",
        "-Dfirst=0",
        "-Dspark.app.name=a name with spaces",
        "-Dlast=10",
        "-Xms1024m",
        "-Xmx1024m",
        "-cp",
        f"{spark_home}/conf::{spark_home}/jars/*",
        "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend",
        "--driver-url",
        "spark://CoarseGrainedScheduler@10.0.0.5:40000",
        "--executor-id",
        "3",
        "--cores",
        "2",
        "--app-id",
        "spark-app-1",
        "--hostname",
        "10.0.0.9",
        "--resourceProfileId",
        "0",
        "--podName",
        "chidori-7-1-abc-exec-3",
    ]
