"""`chidori kubernetes rbac`: the RBAC objects, from the config's cluster or the flags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes_validate  # type: ignore[import-untyped]
import yaml

from tests.server import REPO


def rbac(*args: str) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "chidori", "kubernetes", "rbac", *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def test_rbac_from_the_config_cluster_validates_and_names_its_accounts(tmp_path: Path) -> None:
    config = tmp_path / "chidori.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "clusters": {
                    "k8s": {
                        "type": "kubernetes",
                        "image": "chidori:1",
                        "namespace": "spark",
                        "installation": "prod",
                        "driver_service_account": "drivers",
                        "service_account": "executors",
                    }
                }
            }
        )
    )
    objects = rbac("--cluster", "k8s", "--config", str(config))
    for obj in objects:
        kubernetes_validate.validate(obj, "1.32", strict=True)
    meta = [(o["kind"], dict(o["metadata"])) for o in objects]  # type: ignore[call-overload]
    kinds = [(kind, m["name"]) for kind, m in meta]
    assert ("ServiceAccount", "drivers") in kinds and ("ServiceAccount", "executors") in kinds
    assert {m.get("namespace") for kind, m in meta if kind == "Role"} == {"spark"}
    assert any(kind == "ClusterRole" for kind, _ in kinds)
    without = rbac("--namespace", "x", "--no-node-aware")
    assert without and all(o["kind"] != "ClusterRole" for o in without)


def test_an_unknown_cluster_is_an_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chidori", "kubernetes", "rbac", "--cluster", "nope"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "CHIDORI_HOME": str(tmp_path)},
    )
    assert done.returncode == 2 and "no kubernetes cluster 'nope'" in done.stderr
