"""The `kubernetes` cluster type's settings, executor pod templates, Spark conf and RBAC objects.

No cluster and no network: every object Chidori would send is checked against the Kubernetes
API's own JSON schema in strict mode (kubernetes-validate), so an unknown or misspelt field fails
here instead of on the API server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from chidori.backends.kubernetes.pod_template import (
    EXECUTOR_CONTAINER,
    INSTALLATION_LABEL,
    JOB_LABEL,
    POOL_CONF_KEY,
    SCRATCH_VOLUME,
    ExecutorDemand,
    JobChoiceError,
    ephemeral_storage_bytes,
    executor_conf,
    executor_demand,
    executor_pod_template,
    forbidden_conf,
    min_executors,
    resolve_pool,
)
from chidori.backends.kubernetes.rbac import rbac_objects, rbac_yaml, reason
from chidori.config.kubernetes import (
    KubernetesConfigError,
    KubernetesSettings,
    parse_kubernetes_settings,
    spark_master,
)
from chidori.config.kubernetes_objects import (
    AFFINITY,
    CONTAINER_SECURITY_CONTEXT,
    POD_SECURITY_CONTEXT,
    TOLERATION,
    parse_quantity,
)

K8S = "1.32"  # the oldest API the shapes follow (kubernetes-validate bundles 1.25 to 1.37)
SPOT = {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
ZONE_AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}
            ]
        }
    }
}
SPREAD = {
    "podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 50,
                "podAffinityTerm": {
                    "labelSelector": {"matchLabels": {"spark-role": "executor"}},
                    "topologyKey": "kubernetes.io/hostname",
                },
            }
        ]
    }
}
EXAMPLE: dict[str, Any] = {
    "type": "kubernetes",
    "api_server": "https://kubernetes.default.svc",
    "kubeconfig": "/etc/chidori/kubeconfig",
    "context": "prod",
    "namespace": "spark",
    "image": "ghcr.io/example/chidori:0.4",
    "image_pull_policy": "IfNotPresent",
    "service_account": "chidori-executor",
    "driver_service_account": "chidori-driver",
    "installation": "prod",
    "executor": {
        "cores": 1,
        "memory": "1g",
        "memory_overhead": None,
        "instances": 2,
        "max_instances": 20,
        "pending_timeout": "10m",
        "dynamic_allocation": False,
        "decommission": False,
    },
    "node_selector": {"pool": "spark"},
    "tolerations": [],
    "affinity": None,
    "priority_class": None,
    "security_context": {"runAsNonRoot": True, "runAsUser": 185, "fsGroup": 185},
    "scratch": {"type": "emptyDir", "size": "20Gi"},
    "labels": {"team": "data"},
    "annotations": {"prometheus.io/scrape": "true"},
    "pools": {
        "spot": {
            "node_selector": {"lifecycle": "spot", "pool": "spot-spark"},
            "tolerations": [SPOT],
            "affinity": ZONE_AFFINITY,
            "priority_class": "batch-low",
            "decommission": True,
            "labels": {"lifecycle": "spot"},
        },
        "nvme": {"scratch": {"type": "hostPath", "path": "/mnt/nvme"}, "affinity": SPREAD},
        "local": {"scratch": {"type": "pvc", "size": "200Gi", "storage_class": "local-nvme"}},
        "ram": {"scratch": {"type": "emptyDir", "size": "4Gi", "medium": "Memory"}},
        "plain": {"scratch": "none"},
    },
    "default_pool": None,
    "conf": {"spark.eventLog.enabled": True, "spark.sql.shuffle.partitions": 64},
}
LABELS = {JOB_LABEL: "42", "chidori.io/attempt": "1", "chidori.io/server": "srv-1"}


def parse(**changes: Any) -> KubernetesSettings:
    return parse_kubernetes_settings("k8s", {**EXAMPLE, **changes})


def valid(obj: Mapping[str, Any]) -> None:
    kubernetes_validate.validate(json.loads(json.dumps(obj)), K8S, strict=True)


# --- settings ----------------------------------------------------------------------------------


def test_the_example_parses_with_its_values() -> None:
    s = parse()
    assert (s.namespace, s.installation, s.image_pull_policy) == ("spark", "prod", "IfNotPresent")
    assert s.executor.pending_timeout_seconds == 600 and s.executor.memory == "1g"
    assert s.scratch.size_bytes == 20 * 2**30 and s.scratch.size == "20Gi"
    assert s.pools["spot"].tolerations == (SPOT,) and s.pools["spot"].decommission is True
    assert s.pools["plain"].scratch is not None and s.pools["plain"].scratch.type == "none"
    assert s.conf == {"spark.eventLog.enabled": "true", "spark.sql.shuffle.partitions": "64"}


def test_a_minimal_cluster_gets_the_defaults() -> None:
    s = parse_kubernetes_settings("k8s", {"type": "kubernetes", "image": "spark:4.3.0"})
    assert s.api_server is None and s.namespace is None and s.installation == "chidori"
    assert s.executor.instances == 2 and s.executor.max_instances == 20
    assert s.scratch.type == "emptyDir" and s.scratch.size is None
    assert s.security_context["runAsNonRoot"] is True
    assert s.container_security_context["capabilities"] == {"drop": ["ALL"]}
    assert not s.automount_service_account_token
    assert spark_master(
        s, {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    ) == ("k8s://https://10.0.0.1:443")
    assert spark_master(parse(), {}) == "k8s://https://kubernetes.default.svc:443"
    with pytest.raises(KubernetesConfigError, match="api_server"):
        spark_master(s, {})


BAD: list[tuple[dict[str, Any], str]] = [
    ({"image": None}, "image"),
    ({"namepsace": "spark"}, "namepsace"),
    ({"master": "k8s://x"}, "master"),
    ({"namespace": "Spark"}, "namespace"),
    ({"installation": "prod_1"}, "installation"),
    ({"api_server": "kubernetes.default.svc"}, "api_server"),
    ({"kubeconfig": None}, "context"),
    ({"kubeconfig": "kubeconfig"}, "kubeconfig"),
    ({"image_pull_policy": "Sometimes"}, "image_pull_policy"),
    ({"service_account": "Chidori Executor"}, "service_account"),
    ({"priority_class": "High"}, "priority_class"),
    ({"executor": {"memory": "lots"}}, "executor.memory"),
    ({"executor": {"memory_overhead": "1x"}}, "executor.memory_overhead"),
    ({"executor": {"cores": 0}}, "executor.cores"),
    ({"executor": {"cores": True}}, "executor.cores"),
    ({"executor": {"instances": 30, "max_instances": 20}}, "executor.instances"),
    ({"executor": {"max_instances": "many"}}, "executor.max_instances"),
    ({"executor": {"pending_timeout": "soon"}}, "executor.pending_timeout"),
    ({"executor": {"dynamic_allocation": "yes"}}, "executor.dynamic_allocation"),
    ({"executor": {"memroy": "2g"}}, "executor.memroy"),
    ({"node_selector": {"pool": "a b"}}, "node_selector.pool"),
    ({"node_selector": {"bad key!": "x"}}, "node_selector.bad key!"),
    ({"labels": {"chidori.io/job": "1"}}, "labels.chidori.io/job"),
    ({"tolerations": {"key": "spot"}}, "tolerations"),
    ({"tolerations": [{"key": "spot", "operator": "Bogus"}]}, "tolerations[0].operator"),
    (
        {"tolerations": [{"key": "spot", "operator": "Exists", "value": "x"}]},
        "tolerations[0].value",
    ),
    ({"tolerations": [{"operator": "Equal", "value": "x"}]}, "tolerations[0].operator"),
    ({"tolerations": [{"key": "a", "value": True}]}, "tolerations[0].value"),
    ({"tolerations": [{"key": "a", "tolerationSeconds": 5}]}, "tolerations[0].tolerationSeconds"),
    ({"tolerations": [{"key": "a", "efect": "NoSchedule"}]}, "tolerations[0].efect"),
    (
        {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}},
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
    ),
    (
        {
            "affinity": {
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 500, "podAffinityTerm": {"topologyKey": "zone"}}
                    ]
                }
            }
        },
        "affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
    ),
    (
        {
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "z", "operator": "In"}]}
                        ]
                    }
                }
            }
        },
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].values",
    ),
    ({"affinity": {"nodeAfinity": {}}}, "affinity.nodeAfinity"),
    ({"security_context": {"runAsUser": "185"}}, "security_context.runAsUser"),
    (
        {"security_context": {"seccompProfile": {"type": "Default"}}},
        "security_context.seccompProfile.type",
    ),
    (
        {"container_security_context": {"capabilities": {"drop": "ALL"}}},
        "container_security_context.capabilities.drop",
    ),
    ({"container_security_context": {"fsGroup": 185}}, "container_security_context.fsGroup"),
    ({"scratch": {"type": "tmpfs"}}, "scratch.type"),
    ({"scratch": {"type": "pvc"}}, "scratch.size"),
    ({"scratch": {"type": "emptyDir", "size": "20g"}}, "scratch.size"),
    ({"scratch": {"type": "emptyDir", "size": "20"}}, "scratch.size"),
    ({"scratch": {"type": "emptyDir", "path": "/mnt"}}, "scratch.path"),
    ({"scratch": {"type": "hostPath"}}, "scratch.path"),
    ({"scratch": {"type": "hostPath", "path": "mnt/nvme"}}, "scratch.path"),
    (
        {"scratch": {"type": "pvc", "size": "1Gi", "storage_class": "Fast_SSD"}},
        "scratch.storage_class",
    ),
    ({"scratch": {"type": "emptyDir", "medium": "HugePages"}}, "scratch.medium"),
    ({"scratch": {"type": "none", "size": "1Gi"}}, "scratch.size"),
    ({"scratch": {"type": "emptyDir", "mount_path": "scratch"}}, "scratch.mount_path"),
    ({"pools": {"Spot": {}}}, "pools.Spot"),
    ({"pools": {"spot": {"scratch": {"type": "pvc"}}}}, "pools.spot.scratch.size"),
    (
        {"pools": {"spot": {"tolerations": [{"key": "a", "operator": "In"}]}}},
        "pools.spot.tolerations[0].operator",
    ),
    ({"pools": {"spot": {"labels": {"chidori.io/job": "x"}}}}, "pools.spot.labels.chidori.io/job"),
    ({"pools": {"spot": {"image": "x"}}}, "pools.spot.image"),
    ({"pools": {"spot": {"decommission": "sometimes"}}}, "pools.spot.decommission"),
    ({"default_pool": "gpu"}, "default_pool"),
    ({"conf": {"spark.executor.memory": None}}, "conf.spark.executor.memory"),
]


@pytest.mark.parametrize(("changes", "field"), BAD, ids=[f for _, f in BAD])
def test_each_bad_value_is_refused_naming_its_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(KubernetesConfigError) as caught:
        parse(**changes)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"cluster 'k8s': {field}: ")
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", "0.5"),
        ("2", "2"),
        ("1.5", "1.5"),
        ("1Gi", str(2**30)),
        ("1500Mi", str(1500 * 2**20)),
        ("1G", "1000000000"),
        ("1e3", "1000"),
        ("1E3", "1000"),
        ("2k", "2000"),
        ("1E", str(10**18)),
    ],
)
def test_kubernetes_quantities(text: str, value: str) -> None:
    assert parse_quantity(text) == parse_quantity(value) and str(int(parse_quantity(text))) == str(
        int(float(value))
    )


@pytest.mark.parametrize("text", ["1g", "Gi", "1 Gi", "1.2.3", "-", "1Kib", ""])
def test_what_is_not_a_quantity(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(text)


def test_the_shapes_name_only_fields_of_the_kubernetes_schema() -> None:
    """The hand-written shapes against the schema kubernetes-validate bundles (field names)."""
    folder = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    text = folder.joinpath(f"v{K8S}.0-local-strict", "_definitions.json").read_text()
    definitions = json.loads(text)["$defs"]

    def props(name: str) -> set[str]:
        return set(definitions[f"io.k8s.api.core.v1.{name}"]["properties"])

    def names(shape: Mapping[str, Any]) -> set[str]:
        return {key.rstrip("!") for key in shape if key != "__check__"}

    assert names(TOLERATION) == props("Toleration")
    assert names(AFFINITY) == props("Affinity")
    assert names(POD_SECURITY_CONTEXT) == props("PodSecurityContext")
    assert names(CONTAINER_SECURITY_CONTEXT) == props("SecurityContext")
    assert names(AFFINITY["nodeAffinity"]) == props("NodeAffinity")
    assert names(AFFINITY["podAntiAffinity"]) == props("PodAntiAffinity")


# --- the executor pod template -----------------------------------------------------------------


@pytest.mark.parametrize("pool", [None, "spot", "nvme", "local", "ram", "plain"])
def test_each_template_is_a_valid_pod(pool: str | None) -> None:
    valid(executor_pod_template(parse(), pool, LABELS))


def test_the_template_merges_the_cluster_and_the_pool() -> None:
    template = executor_pod_template(parse(), "spot", LABELS)
    valid(template)
    meta, spec = template["metadata"], template["spec"]
    assert meta["labels"] == {
        "team": "data",
        "lifecycle": "spot",
        INSTALLATION_LABEL: "prod",
        **LABELS,
    }
    assert meta["annotations"] == {"prometheus.io/scrape": "true"}
    assert spec["nodeSelector"] == {"pool": "spot-spark", "lifecycle": "spot"}  # the pool wins
    assert spec["tolerations"] == [SPOT]
    assert spec["affinity"] == ZONE_AFFINITY
    assert spec["priorityClassName"] == "batch-low"
    assert spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": 185, "fsGroup": 185}
    assert spec["serviceAccountName"] == "chidori-executor"
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    assert container["name"] == EXECUTOR_CONTAINER
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_scratch_space_by_type() -> None:
    s = parse()
    empty = executor_pod_template(s, None, LABELS)["spec"]
    assert empty["volumes"] == [{"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": "20Gi"}}]
    (container,) = empty["containers"]
    assert container["volumeMounts"] == [
        {"name": SCRATCH_VOLUME, "mountPath": "/var/data/spark-local"}
    ]
    assert container["resources"] == {"requests": {"ephemeral-storage": "20Gi"}}
    assert ephemeral_storage_bytes(s, None) == 20 * 2**30

    host = executor_pod_template(s, "nvme", LABELS)["spec"]
    assert host["volumes"] == [
        {"name": SCRATCH_VOLUME, "hostPath": {"path": "/mnt/nvme", "type": "Directory"}}
    ]
    assert "resources" not in host["containers"][0] and ephemeral_storage_bytes(s, "nvme") == 0
    assert host["affinity"] == SPREAD

    ram = executor_pod_template(s, "ram", LABELS)["spec"]
    assert ram["volumes"][0]["emptyDir"] == {"medium": "Memory", "sizeLimit": "4Gi"}
    assert "resources" not in ram["containers"][0]  # tmpfs counts against memory, not disk

    for pool in ("local", "plain"):  # Spark's own claims; Spark's own emptyDir
        spec = executor_pod_template(s, pool, LABELS)["spec"]
        assert "volumes" not in spec and "volumeMounts" not in spec["containers"][0]


def test_chidoris_labels_win_and_bad_ones_are_refused() -> None:
    s = parse(labels={"team": "data"})
    labels = executor_pod_template(s, None, {INSTALLATION_LABEL: "prod", "team": "ml"})
    assert labels["metadata"]["labels"]["team"] == "ml"
    with pytest.raises(ValueError, match="not a valid Kubernetes label"):
        executor_pod_template(s, None, {JOB_LABEL: "job 42"})


def test_an_unknown_pool_is_the_jobs_error() -> None:
    s = parse()
    with pytest.raises(JobChoiceError, match="no pool 'gpu'; its pools are local, nvme, plain"):
        executor_pod_template(s, "gpu", LABELS)
    with pytest.raises(JobChoiceError, match=POOL_CONF_KEY):
        resolve_pool(s, {POOL_CONF_KEY: "gpu"})
    with pytest.raises(JobChoiceError, match="it has no pools"):
        executor_conf(parse(pools={}), "spot", {})
    assert resolve_pool(s, {POOL_CONF_KEY: "spot"}) == "spot"
    assert resolve_pool(s, {}) is None
    assert resolve_pool(parse(default_pool="nvme"), {}) == "nvme"


# --- the Spark conf ----------------------------------------------------------------------------


def test_the_conf_fills_in_what_the_job_does_not_say() -> None:
    conf = executor_conf(parse(), None, {"spark.executor.memory": "4096"})
    assert conf["spark.executor.memory"] == "4g" and conf["spark.executor.cores"] == "1"
    assert conf["spark.executor.instances"] == "2"
    assert conf["spark.dynamicAllocation.enabled"] == "false"
    assert conf["spark.kubernetes.executor.podTemplateContainerName"] == EXECUTOR_CONTAINER
    assert conf["spark.kubernetes.executor.container.image"] == "ghcr.io/example/chidori:0.4"
    assert conf["spark.kubernetes.authenticate.executor.serviceAccountName"] == "chidori-executor"
    assert conf["spark.kubernetes.executor.securityContext.allowPrivilegeEscalation"] == "false"
    assert "spark.local.dir" not in conf  # the spark-local-dir-1 mount is the executors' one
    assert "spark.executor.memoryOverhead" not in conf
    assert not any(key.startswith("spark.decommission") for key in conf)
    relaxed = parse(container_security_context={"allowPrivilegeEscalation": True})
    key = "spark.kubernetes.executor.securityContext.allowPrivilegeEscalation"
    assert executor_conf(relaxed, None, {})[key] == "true"


def test_a_static_job_may_not_pass_the_cap() -> None:
    s = parse()
    assert (
        executor_conf(s, None, {"spark.executor.instances": "20"})["spark.executor.instances"]
        == "20"
    )
    with pytest.raises(JobChoiceError, match="cap of 20 executors"):
        executor_conf(s, None, {"spark.executor.instances": "21"})
    with pytest.raises(JobChoiceError, match="at least 1"):
        executor_conf(s, None, {"spark.executor.instances": "0"})
    with pytest.raises(JobChoiceError, match="whole number"):
        executor_conf(s, None, {"spark.executor.cores": "two"})
    with pytest.raises(JobChoiceError, match=r"spark\.executor\.memory"):
        executor_conf(s, None, {"spark.executor.memory": "lots"})


def test_dynamic_allocation_is_capped() -> None:
    s = parse()
    conf = executor_conf(s, None, {"spark.dynamicAllocation.enabled": "true"})
    assert conf["spark.dynamicAllocation.maxExecutors"] == "20"
    assert conf["spark.dynamicAllocation.minExecutors"] == "0"
    assert conf["spark.dynamicAllocation.initialExecutors"] == "0"
    assert conf["spark.dynamicAllocation.shuffleTracking.enabled"] == "true"
    default_on = parse(executor={"dynamic_allocation": True, "max_instances": 8})
    conf = executor_conf(
        default_on,
        None,
        {"spark.dynamicAllocation.minExecutors": "2", "spark.executor.instances": "3"},
    )
    assert conf["spark.dynamicAllocation.enabled"] == "true"
    assert (
        conf["spark.dynamicAllocation.minExecutors"],
        conf["spark.dynamicAllocation.maxExecutors"],
    ) == ("2", "8")
    assert conf["spark.dynamicAllocation.initialExecutors"] == "3"
    with pytest.raises(JobChoiceError, match=r"maxExecutors=9 is over .* cap of 8"):
        executor_conf(default_on, None, {"spark.dynamicAllocation.maxExecutors": "9"})
    with pytest.raises(JobChoiceError, match="must not pass maxExecutors"):
        executor_conf(
            default_on,
            None,
            {
                "spark.dynamicAllocation.minExecutors": "5",
                "spark.dynamicAllocation.maxExecutors": "4",
            },
        )
    with pytest.raises(JobChoiceError, match="true or false"):
        executor_conf(s, None, {"spark.dynamicAllocation.enabled": "maybe"})
    off = executor_conf(default_on, None, {"spark.dynamicAllocation.enabled": "false"})
    assert off["spark.dynamicAllocation.enabled"] == "false"
    assert off["spark.executor.instances"] == "2"


def test_decommissioning_pools() -> None:
    keys = [
        "spark.decommission.enabled",
        "spark.storage.decommission.enabled",
        "spark.storage.decommission.shuffleBlocks.enabled",
        "spark.storage.decommission.rddBlocks.enabled",
    ]
    s = parse()
    spot = executor_conf(s, "spot", {"spark.storage.decommission.rddBlocks.enabled": "false"})
    assert [spot[k] for k in keys] == ["true", "true", "true", "false"]  # the job's own kept
    assert not any(k in executor_conf(s, "nvme", {}) for k in keys)
    everywhere = parse(executor={"decommission": True}, pools={"stable": {"decommission": False}})
    assert all(executor_conf(everywhere, None, {})[k] == "true" for k in keys)
    assert not any(k in executor_conf(everywhere, "stable", {}) for k in keys)


def test_pvc_scratch_is_sparks_on_demand_claim() -> None:
    conf = executor_conf(parse(), "local", {}, labels=LABELS)
    pvc = "spark.kubernetes.executor.volumes.persistentVolumeClaim.spark-local-dir-1"
    assert conf[f"{pvc}.options.claimName"] == "OnDemand"
    assert conf[f"{pvc}.options.storageClass"] == "local-nvme"
    assert conf[f"{pvc}.options.sizeLimit"] == "200Gi"
    assert conf[f"{pvc}.mount.path"] == "/var/data/spark-local"
    assert conf[f"{pvc}.mount.readOnly"] == "false"
    assert conf[f"{pvc}.label.{JOB_LABEL}"] == "42"
    assert conf[f"{pvc}.label.{INSTALLATION_LABEL}"] == "prod"
    assert not any(key.startswith(pvc) for key in executor_conf(parse(), None, {}))


def test_forbidden_keys() -> None:
    job = {
        "spark.master": "local[*]",
        "spark.submit.deployMode": "cluster",
        "spark.driver.host": "10.0.0.9",
        "spark.kubernetes.namespace": "kube-system",
        "spark.kubernetes.context": "admin",
        "spark.kubernetes.driver.pod.name": "someone-else",
        "spark.kubernetes.driver.ownPersistentVolumeClaim": "true",
        "spark.kubernetes.executor.podTemplateFile": "/tmp/mine.yaml",
        "spark.kubernetes.executor.podNamePrefix": "x",
        "spark.kubernetes.authenticate.oauthToken": "t",
        "spark.kubernetes.authenticate.executor.serviceAccountName": "admin",
        "spark.kubernetes.container.image": "evil:latest",
        "spark.kubernetes.executor.container.image": "evil:latest",
        "spark.kubernetes.executor.label.chidori.io/job": "7",
        "spark.kubernetes.executor.annotation.cluster-autoscaler.kubernetes.io/safe-to-evict": "f",
        "spark.kubernetes.executor.volumes.hostPath.root.mount.path": "/host",
        "spark.kubernetes.executor.secrets.db-password": "/secrets",
        "spark.kubernetes.node.selector.pool": "gpu",
        "spark.kubernetes.executor.node.selector.pool": "gpu",
        "spark.kubernetes.executor.scheduler.name": "mine",
        "spark.kubernetes.scheduler.volcano.podGroupTemplateFile": "/x",
        "spark.kubernetes.executor.pod.featureSteps": "com.example.Rewrite",
        "spark.kubernetes.executor.securityContext.allowPrivilegeEscalation": "true",
        "spark.kubernetes.executor.deleteOnTermination": "false",
        "spark.kubernetes.allocation.pods.allocator": "statefulset",
        "spark.kubernetes.executor.pvc.resizeFactor": "2",
        "spark.kubernetes.kerberos.tokenSecret.name": "theirs",
        "spark.chidori.kubernetes.pools": "typo",
    }
    allowed = {
        POOL_CONF_KEY: "spot",
        "spark.executor.memory": "4g",
        "spark.executor.instances": "4",
        "spark.dynamicAllocation.enabled": "true",
        "spark.kubernetes.executor.label.team": "ml",
        "spark.kubernetes.executor.annotation.prometheus.io/scrape": "true",
        "spark.kubernetes.executor.request.cores": "500m",
        "spark.kubernetes.driver.requestTimeout": "30000",
        "spark.kubernetes.local.dirs.tmpfs": "true",
        "spark.executorEnv.MODE": "batch",
    }
    assert forbidden_conf({**job, **allowed}) == sorted(job)
    assert forbidden_conf(allowed) == []


def test_the_gang_minimum() -> None:
    assert min_executors({}) == 2  # Spark's default instances
    assert min_executors({"spark.executor.instances": "5"}) == 5
    dynamic = {"spark.dynamicAllocation.enabled": "true", "spark.executor.instances": "5"}
    assert min_executors(dynamic) == 0
    assert min_executors({**dynamic, "spark.dynamicAllocation.minExecutors": "3"}) == 3
    s = parse()
    final = {**executor_conf(s, None, {}), "spark.executor.instances": "3"}
    assert min_executors(final) == 3


def test_executor_demand_follows_sparks_sizing() -> None:
    s = parse()
    mib = 2**20
    conf = executor_conf(s, None, {"spark.executor.memory": "4g", "spark.executor.cores": "2"})
    assert executor_demand(s, conf) == ExecutorDemand(2, 2000, (4096 + 409) * mib)
    assert executor_demand(s, {}) == (2, 1000, (1024 + 384) * mib)  # the minimum overhead
    assert executor_demand(s, {"spark.executor.memoryOverhead": "1g"}).memory_bytes == 2048 * mib
    factor = {"spark.executor.memory": "10g", "spark.executor.memoryOverheadFactor": "0.2"}
    assert executor_demand(s, factor).memory_bytes == (10240 + 2048) * mib
    off_heap = {"spark.memory.offHeap.enabled": "true", "spark.memory.offHeap.size": str(2**30)}
    assert executor_demand(s, off_heap).memory_bytes == (1024 + 384 + 1024) * mib
    python = {"spark.executor.pyspark.memory": "512m"}
    assert executor_demand(s, python).memory_bytes == (1024 + 384) * mib
    python["spark.kubernetes.resource.type"] = "python"
    assert executor_demand(s, python).memory_bytes == (1024 + 384 + 512) * mib
    cpu = executor_demand(s, {"spark.kubernetes.executor.request.cores": "500m"})
    assert cpu.millicores == 500
    assert (
        executor_demand(s, {"spark.kubernetes.executor.request.cores": "1.25"}).millicores == 1250
    )
    with pytest.raises(JobChoiceError, match=r"request\.cores"):
        executor_demand(s, {"spark.kubernetes.executor.request.cores": "lots"})
    defaults = parse(executor={"memory": "2g", "memory_overhead": "512m", "cores": 3})
    assert executor_demand(defaults, {}) == (2, 3000, (2048 + 512) * mib)


# --- RBAC --------------------------------------------------------------------------------------


def test_the_rbac_objects_are_valid_and_explained() -> None:
    objects = rbac_objects(
        "spark", "prod", driver_account="chidori-driver", executor_account="exec"
    )
    kinds = [o["kind"] for o in objects]
    assert kinds == [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
    ]
    for obj in objects:
        valid(obj)
        for rule in obj.get("rules", []):
            assert reason(rule), rule
    server_role, driver_role, cluster_role = objects[1], objects[4], objects[7]
    verbs = {tuple(r["resources"]): set(r["verbs"]) for r in server_role["rules"]}
    assert verbs[("pods",)] == {
        "get",
        "list",
        "watch",
        "create",
        "delete",
        "deletecollection",
        "patch",
    }
    assert verbs[("serviceaccounts/token",)] == {"create"}
    assert server_role["rules"][-1]["resourceNames"] == ["chidori-driver"]
    assert not any("serviceaccounts/token" in r["resources"] for r in driver_role["rules"])
    assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in cluster_role["rules"])
    assert objects[8]["subjects"] == [
        {"kind": "ServiceAccount", "name": "chidori-prod", "namespace": "spark"}
    ]
    text = rbac_yaml(objects)
    assert "# Chidori: TokenRequest" in text and "# Spark's driver: gets its own pod" in text
    assert [dict(o) for o in yaml.safe_load_all(text)] == objects


def test_the_default_installation_is_plain_chidori() -> None:
    objects = rbac_objects("default", node_aware=False)
    assert [o["metadata"]["name"] for o in objects] == ["chidori"] * 3
    assert not any("serviceaccounts/token" in r["resources"] for r in objects[1]["rules"])
    for obj in objects:
        valid(obj)


# --- any combination ---------------------------------------------------------------------------

_NAME = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?\Z")
_VALUE = st.from_regex(r"\A([A-Za-z0-9]([-A-Za-z0-9_.]{0,8}[A-Za-z0-9])?)?\Z")
_SCRATCH = st.sampled_from(
    [
        None,
        "none",
        {"type": "emptyDir"},
        {"type": "emptyDir", "size": "10Gi"},
        {"type": "emptyDir", "size": "512Mi", "medium": "Memory"},
        {"type": "hostPath", "path": "/mnt/disk0", "mount_path": "/scratch"},
        {"type": "pvc", "size": "100G", "storage_class": "local.storage"},
    ]
)
_TOLERATION = st.sampled_from(
    [
        SPOT,
        {"operator": "Exists"},
        {"key": "gpu", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    pool_labels=st.dictionaries(_NAME, _VALUE, max_size=3),
    node_selector=st.dictionaries(_NAME, _VALUE, max_size=3),
    tolerations=st.lists(_TOLERATION, max_size=2),
    affinity=st.sampled_from([None, ZONE_AFFINITY, SPREAD]),
    scratch=_SCRATCH,
    chosen=st.booleans(),
    job=st.from_regex(r"\A[0-9]{1,9}\Z"),
)
def test_any_pool_gives_a_valid_template_with_chidoris_labels(
    pool_labels: dict[str, str],
    node_selector: dict[str, str],
    tolerations: list[dict[str, Any]],
    affinity: dict[str, Any] | None,
    scratch: Any,
    chosen: bool,
    job: str,
) -> None:
    pool = {
        "labels": pool_labels,
        "node_selector": node_selector,
        "tolerations": tolerations,
        "affinity": affinity,
        "scratch": scratch,
    }
    s = parse(pools={"p": pool}, labels={"chidori-io-job": "cluster"})
    labels = {JOB_LABEL: job, "chidori.io/attempt": "1"}
    template = executor_pod_template(s, "p" if chosen else None, labels)
    valid(template)
    assert template["metadata"]["labels"][JOB_LABEL] == job
    assert template["metadata"]["labels"][INSTALLATION_LABEL] == "prod"
    executor_conf(s, "p" if chosen else None, {}, labels=labels)
