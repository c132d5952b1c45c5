"""The Helm chart (deploy/helm/chidori), rendered by Helm itself (helm-python-sdk, Helm v4).

Rendered with the default values and with others (3 replicas, RabbitMQ, the History Server,
isolation off, chart-made Secrets with sentinel values, Connect and Spark REST on, network
policies, pools), then checked: replicas and anti-affinity, the PDB, probes, the downward API,
the security context isolation needs (and, off, none of it), RBAC equal to rbac.py's and
covering every API call the backend and Spark's driver make, no secret outside a Secret, the
ConfigMap's config read by Chidori's own loader, the schema refusing bad values by name, and
every object valid for each supported Kubernetes version (kubernetes-validate --strict).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from scripts.chart import (
    KUBE_VERSIONS,
    RBAC_RULES,
    lint_errors,
    rbac_rules_text,
    render,
    validation_errors,
)

from chidori.backends.kubernetes import rbac
from chidori.backends.kubernetes.pod_template import INSTALLATION_LABEL
from chidori.config import load_settings

Obj = dict[str, Any]
NAMESPACE = "team-a"
SENTINELS = {
    "databaseUrl": "postgresql+psycopg://chidori:SENTINEL-DB-PASSWORD@db:5432/chidori",
    "adminToken": "SENTINEL-ADMIN-TOKEN",
    "secretKey": "SENTINEL-SIGNING-KEY",
    "queueUrl": "amqp://u:SENTINEL-QUEUE@mq:5672/%2F",
    "awsAccessKeyId": "SENTINEL-AKID",
    "awsSecretAccessKey": "SENTINEL-SECRET-ACCESS-KEY",
}
RABBIT_PASSWORD = "SENTINEL-RABBIT-PASSWORD"
FULL: Obj = {
    "replicas": 3,
    "antiAffinity": "preferred",
    "logFormat": "json",
    "secrets": {"existingSecret": "", "values": SENTINELS},
    "objectStore": {"url": "s3://chidori/prefix", "endpoint": "http://minio:9000"},
    "kubernetes": {
        "namespace": "spark-jobs",
        "pools": {
            "spot": {
                "node_selector": {"lifecycle": "spot"},
                "tolerations": [
                    {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
                ],
                "decommission": True,
            },
            "nvme": {
                "node_selector": {"disk": "nvme"},
                "scratch": {"type": "hostPath", "path": "/mnt/nvme/spark"},
            },
        },
        "defaultPool": "spot",
        "warmPool": 1,
    },
    "connect": {"enabled": True, "tlsSecret": "chidori-connect-tls"},
    "sparkRest": {"enabled": True, "allowedNetworks": ["10.0.0.0/8"]},
    "networkPolicy": {"enabled": True},
    "metrics": {"serviceMonitor": {"enabled": True}},
    "rabbitmq": {"enabled": True, "password": RABBIT_PASSWORD},
    "historyServer": {"enabled": True},
}
ISOLATION_OFF: Obj = {"isolation": {"enabled": False, "mode": "none"}}
# docs/security.md: what the sandbox launcher needs in a container.
ISOLATION_CAPABILITIES = {
    "SYS_ADMIN",
    "SETUID",
    "SETGID",
    "CHOWN",
    "FOWNER",
    "DAC_OVERRIDE",
    "KILL",
}


def objects(values: Mapping[str, Any] | None = None) -> list[Obj]:
    return [obj for objs in render(values, namespace=NAMESPACE).values() for obj in objs]


def one(found: list[Obj], kind: str, name_suffix: str = "") -> Obj:
    matches = [
        o for o in found if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)
    ]
    assert len(matches) == 1, [o["metadata"]["name"] for o in matches]
    return matches[0]


def server(found: list[Obj]) -> Obj:
    return one(found, "Deployment", "chidori")


def container(found: list[Obj]) -> Obj:
    containers: list[Obj] = server(found)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(found: list[Obj]) -> dict[str, Obj]:
    return {e["name"]: e for e in container(found)["env"]}


@pytest.fixture(scope="module")
def defaults() -> list[Obj]:
    return objects()


@pytest.fixture(scope="module")
def full() -> list[Obj]:
    return objects(FULL)


@pytest.fixture(scope="module")
def isolation_off() -> list[Obj]:
    return objects(ISOLATION_OFF)


# --- the server Deployment ---------------------------------------------------------------------


def test_replicas_spread_across_nodes_with_a_disruption_budget(
    defaults: list[Obj], full: list[Obj]
) -> None:
    deployment = server(defaults)
    assert deployment["spec"]["replicas"] >= 2
    assert server(full)["spec"]["replicas"] == 3
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    (term,) = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    (preferred,) = server(full)["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert preferred["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    pdb = one(defaults, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_probes_downward_api_and_home(defaults: list[Obj]) -> None:
    main = container(defaults)
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"http": 8080}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["startupProbe"]["httpGet"]["path"] == "/healthz"
    env = env_of(defaults)
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    home = env["CHIDORI_HOME"]["value"]
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in server(defaults)["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts[home]]
    assert env["CHIDORI_LOG_FORMAT"]["value"] == "text"
    assert main["resources"]["requests"] and main["resources"]["limits"]


def test_isolation_gets_root_and_its_capabilities_only(defaults: list[Obj]) -> None:
    pod = server(defaults)["spec"]["template"]["spec"]
    context = container(defaults)["securityContext"]
    assert pod["securityContext"]["runAsUser"] == 0
    assert context["capabilities"]["drop"] == ["ALL"]
    assert set(context["capabilities"]["add"]) == ISOLATION_CAPABILITIES
    assert not context.get("privileged")
    for host in ("hostPID", "hostIPC", "hostNetwork"):
        assert not pod.get(host)
    # mount and unshare: neither seccomp's nor AppArmor's runtime default allows them.
    assert pod["securityContext"]["seccompProfile"] == {"type": "Unconfined"}
    assert pod["securityContext"]["appArmorProfile"] == {"type": "Unconfined"}


def test_isolation_off_runs_fully_non_root(isolation_off: list[Obj]) -> None:
    pod = server(isolation_off)["spec"]["template"]["spec"]
    context = container(isolation_off)["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    config = yaml.safe_load(one(isolation_off, "ConfigMap")["data"]["config.yaml"])
    assert config["isolation"]["mode"] == "none"


def test_service_ports_follow_the_switches(defaults: list[Obj], full: list[Obj]) -> None:
    def ports(found: list[Obj]) -> dict[str, int]:
        service = one(found, "Service", "chidori")
        return {p["name"]: p["port"] for p in service["spec"]["ports"]}

    assert ports(defaults) == {"http": 8080}
    assert ports(full) == {"http": 8080, "connect": 15002, "spark-rest": 6066}
    assert env_of(full)["CHIDORI_CONNECT_PORT"]["value"] == "15002"
    assert "CHIDORI_CONNECT_PORT" not in env_of(defaults)


def test_the_connect_door_listens_on_the_pod_network_with_tls_only(full: list[Obj]) -> None:
    env = env_of(full)
    assert env["CHIDORI_CONNECT_HOST"]["value"] == "0.0.0.0"
    assert env["CHIDORI_CONNECT_TLS_CERT"]["value"] == "/etc/chidori-connect/tls.crt"
    assert env["CHIDORI_CONNECT_TLS_KEY"]["value"] == "/etc/chidori-connect/tls.key"
    assert env["CHIDORI_CONNECT_IDLE_TIMEOUT"]["value"] == "30m"
    pod = server(full)["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "connect-tls")
    assert volume["secret"] == {"secretName": "chidori-connect-tls", "defaultMode": 0o440}
    mounts = {m["name"]: m for m in container(full)["volumeMounts"]}
    assert mounts["connect-tls"]["mountPath"] == "/etc/chidori-connect"
    with pytest.raises(helm_python.HelmError, match=r"connect\.tlsSecret"):
        objects({"connect": {"enabled": True}})


# --- RBAC --------------------------------------------------------------------------------------


def test_rbac_rules_file_is_generated_from_rbac_py() -> None:
    assert RBAC_RULES.read_text() == rbac_rules_text(), "run scripts/chart.py --write-rbac"


def test_rbac_equals_rbac_py(defaults: list[Obj]) -> None:
    server_role = one(defaults, "Role", "chidori")
    driver_role = one(defaults, "Role", "-driver")
    namespace = server_role["metadata"]["namespace"]
    installation = server_role["metadata"]["labels"][INSTALLATION_LABEL]
    driver_account = one(defaults, "ServiceAccount", "-driver")
    expected = rbac.server_role(
        namespace, installation, token_for=[driver_account["metadata"]["name"]]
    )
    assert server_role["rules"] == expected["rules"]
    assert driver_role["rules"] == rbac.driver_role(namespace, installation)["rules"]
    capacity = one(defaults, "ClusterRole")
    assert capacity["rules"] == rbac.capacity_cluster_role(installation)["rules"]
    text = json.dumps([server_role, driver_role, capacity])
    assert '"*"' not in text
    # The drivers' and executors' accounts mount no token; the executors' is bound to nothing.
    executor_account = one(defaults, "ServiceAccount", "-executor")
    assert driver_account["automountServiceAccountToken"] is False
    assert executor_account["automountServiceAccountToken"] is False
    subjects = [s["name"] for o in defaults if o["kind"].endswith("Binding") for s in o["subjects"]]
    assert executor_account["metadata"]["name"] not in subjects
    assert driver_account["metadata"]["name"] in subjects
    # Node-aware admission off: no ClusterRole at all.
    assert not [o for o in objects({"kubernetes": {"nodeAware": False}}) if "Cluster" in o["kind"]]


# Every Kubernetes API call made with the server's credentials: Chidori's own
# (backends/kubernetes/api.py) and those of the drivers it hosts (Spark's fabric8 client).
NAMESPACED_CALLS = {
    ("pods", "list"),  # api.pods, labeled: an attempt's pods, the sweep
    ("configmaps", "list"),
    ("persistentvolumeclaims", "list"),
    ("pods", "delete"),  # api.delete
    ("configmaps", "delete"),
    ("persistentvolumeclaims", "delete"),
    ("pods", "deletecollection"),  # api.delete_labeled
    ("configmaps", "deletecollection"),
    ("persistentvolumeclaims", "deletecollection"),
    ("events", "list"),  # api.pod_events
    ("serviceaccounts/token", "create"),  # api.token_for (the drivers' account only)
    ("pods", "get"),  # Spark: its own pod, the executors' owner
    ("pods", "create"),
    ("pods", "watch"),
    ("pods", "patch"),  # Spark: decommissioning executors
    ("configmaps", "create"),
    ("services", "create"),
    ("services", "delete"),
    ("persistentvolumeclaims", "create"),
}
CLUSTER_CALLS = {("nodes", "list"), ("pods", "list")}  # api.nodes, api.bound_pods


def allowed(rules: list[Obj], resource: str, verb: str, name: str | None = None) -> bool:
    return any(
        resource in r["resources"]
        and verb in r["verbs"]
        and r["apiGroups"] == [""]
        and (not r.get("resourceNames") or name in r["resourceNames"])
        for r in rules
    )


def test_rbac_covers_every_call_the_backend_and_its_drivers_make(defaults: list[Obj]) -> None:
    server_rules = one(defaults, "Role", "chidori")["rules"]
    driver_account = one(defaults, "ServiceAccount", "-driver")["metadata"]["name"]
    for resource, verb in NAMESPACED_CALLS:
        assert allowed(server_rules, resource, verb, driver_account), (resource, verb)
    # The token rule names the drivers' account, no other.
    assert not allowed(server_rules, "serviceaccounts/token", "create", "default")
    assert not allowed(server_rules, "secrets", "get")
    cluster_rules = one(defaults, "ClusterRole")["rules"]
    for resource, verb in CLUSTER_CALLS:
        assert allowed(cluster_rules, resource, verb), (resource, verb)
    granted = {
        (res, verb) for rule in cluster_rules for res in rule["resources"] for verb in rule["verbs"]
    }
    assert all(verb in ("get", "list", "watch") for _, verb in granted), granted
    driver_rules = one(defaults, "Role", "-driver")["rules"]
    assert not allowed(driver_rules, "serviceaccounts/token", "create", driver_account)
    assert not allowed(driver_rules, "events", "list")


# --- secrets and config ------------------------------------------------------------------------


def secret_texts() -> Iterator[str]:
    for value in [*SENTINELS.values(), RABBIT_PASSWORD]:
        yield value
        yield base64.b64encode(value.encode()).decode()
    yield "SENTINEL"


def test_no_secret_outside_a_secret(full: list[Obj]) -> None:
    secrets = [o for o in full if o["kind"] == "Secret"]
    for obj in full:
        if obj["kind"] != "Secret":
            text = json.dumps(obj)
            for secret in secret_texts():
                assert secret not in text, (obj["kind"], obj["metadata"]["name"], secret)
    decoded = {
        base64.b64decode(value).decode()
        for secret in secrets
        for value in (secret.get("data") or {}).values()
    }
    assert set(SENTINELS.values()) | {RABBIT_PASSWORD} == decoded
    env = env_of(full)
    for name in ("CHIDORI_DATABASE_URL", "CHIDORI_ADMIN_TOKEN", "CHIDORI_SECRET_KEY"):
        assert "secretKeyRef" in env[name]["valueFrom"], name
    # The bundled RabbitMQ's URL: references the kubelet expands, the password in its Secret.
    assert env["CHIDORI_QUEUE_URL"]["value"].startswith(
        "amqp://$(RABBITMQ_USER):$(RABBITMQ_PASSWORD)@"
    )
    assert "secretKeyRef" in env["RABBITMQ_PASSWORD"]["valueFrom"]


def test_an_existing_secret_is_named_not_made(defaults: list[Obj]) -> None:
    assert not [o for o in defaults if o["kind"] == "Secret"]
    env = env_of(defaults)
    ref = env["CHIDORI_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "chidori", "key": "database-url"}
    assert env["CHIDORI_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_configmap_is_a_config_chidori_loads(full: list[Obj], tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(one(full, "ConfigMap")["data"]["config.yaml"])
    settings = load_settings({"CHIDORI_HOME": str(tmp_path / "home")}, config_file=config)
    cluster = settings.clusters["k8s"]
    assert cluster.type == "kubernetes" and cluster.kubernetes is not None
    k8s = cluster.kubernetes
    assert k8s.namespace == "spark-jobs"
    assert k8s.image == "ghcr.io/example/chidori:0.1.0"  # the executors: the server's image
    assert k8s.driver_service_account == one(full, "ServiceAccount", "-driver")["metadata"]["name"]
    assert k8s.service_account == one(full, "ServiceAccount", "-executor")["metadata"]["name"]
    assert set(k8s.pools) == {"spot", "nvme"} and k8s.default_pool == "spot"
    assert k8s.pools["spot"].tolerations[0]["key"] == "spot"
    assert k8s.pools["nvme"].scratch is not None and k8s.pools["nvme"].scratch.type == "hostPath"
    assert cluster.warm_pool.size == 1
    assert settings.storage_url == "s3://chidori/prefix"
    assert settings.spark_rest_port == 6066
    assert settings.port == 8080 and settings.host == "0.0.0.0"
    # The RBAC objects live where the executors go.
    assert one(full, "Role", "-driver")["metadata"]["namespace"] == "spark-jobs"


def test_network_policies_let_executors_reach_drivers(defaults: list[Obj], full: list[Obj]) -> None:
    assert not [o for o in defaults if o["kind"] == "NetworkPolicy"]
    installation = one(full, "ConfigMap")["metadata"]["labels"][INSTALLATION_LABEL]
    executors = {INSTALLATION_LABEL: installation, "spark-role": "executor"}
    server_policy = one(full, "NetworkPolicy", "-server")
    pod_labels = server(full)["spec"]["template"]["metadata"]["labels"]
    assert server_policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    sources = [peer for rule in server_policy["spec"]["ingress"] for peer in rule.get("from", [])]
    to_drivers = [p for p in sources if p["podSelector"]["matchLabels"] == executors]
    assert to_drivers and to_drivers[0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "spark-jobs"
    }
    executor_policy = one(full, "NetworkPolicy", "-executors")
    assert executor_policy["metadata"]["namespace"] == "spark-jobs"
    assert executor_policy["spec"]["podSelector"]["matchLabels"] == executors


def test_optional_parts_render(full: list[Obj]) -> None:
    rabbit = one(full, "StatefulSet", "-rabbitmq")
    assert rabbit["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 5672
    history = one(full, "Deployment", "-history")
    args = history["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "history-server"
    assert one(full, "ServiceMonitor")["spec"]["endpoints"][0]["path"] == "/metrics"
    assert env_of(full)["CHIDORI_LOG_FORMAT"]["value"] == "json"


# --- schema, lint, validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 0}, "at '/replicas': minimum: got 0, want 1"),
        ({"replicas": "two"}, "at '/replicas': got string, want integer"),
        ({"replicaz": 2}, "additional properties 'replicaz' not allowed"),
        ({"antiAffinity": "sometimes"}, "at '/antiAffinity': value must be one of"),
        ({"logFormat": "xml"}, "at '/logFormat': value must be one of"),
        ({"isolation": {"enabled": "yes"}}, "at '/isolation/enabled': got string, want boolean"),
        ({"connect": {"port": 70000}}, "at '/connect/port'"),
    ],
)
def test_schema_refuses_bad_values_by_name(values: Obj, message: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match="schema") as refused:
        render(values)
    assert message in str(refused.value)


def test_secrets_without_a_source_are_refused() -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"secrets\.existingSecret"):
        render({"secrets": {"existingSecret": ""}})
    with pytest.raises(helm_python.HelmRenderError, match=r"rabbitmq\.password"):
        render({"rabbitmq": {"enabled": True}})


# The values file docs/deploy.md installs with.
MINIMAL: Obj = yaml.safe_load(
    (Path(__file__).resolve().parent.parent / "deploy/helm/examples/minimal.yaml").read_text()
)


@pytest.mark.parametrize(
    "values",
    [{}, FULL, ISOLATION_OFF, MINIMAL],
    ids=["defaults", "full", "isolation-off", "docs-minimal"],
)
def test_every_object_is_valid_and_the_chart_lints(values: Obj) -> None:
    found = objects(values)
    assert len(KUBE_VERSIONS) == 3
    assert validation_errors(found) == []
    assert lint_errors(values) == []
