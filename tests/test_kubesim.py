"""The simulated Kubernetes (tests/kubesim/) from the outside, without Java.

The fake API server through the official `kubernetes` Python client, raw HTTP (httpx) for the
chunked watch, `websockets` for the WebSocket watch, the real `kubectl` for a cross-check, and
the objects it returns against the Kubernetes 1.32 JSON schema (kubernetes-validate, strict);
then the scheduler and the process kubelet with ordinary processes (`sh`, `sleep`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import websockets.sync.client
from kubernetes import client, watch

from tests.conftest import unavailable
from tests.kubesim.apiserver import FakeKubernetes
from tests.kubesim.containers import Settings, spark_executor_argv
from tests.kubesim.errors import ApiError
from tests.kubesim.kubelet import Kubelet
from tests.kubesim.scheduler import parse_quantity
from tests.kubesim.selectors import SelectorError, parse_label_selector

Obj = dict[str, Any]
KUBECTL = "/usr/bin/kubectl"


@pytest.fixture
def fake() -> Iterator[FakeKubernetes]:
    with FakeKubernetes(bookmark_interval=0.3) as server:
        yield server


@pytest.fixture
def api(fake: FakeKubernetes) -> client.CoreV1Api:
    return client.CoreV1Api(client.ApiClient(client.Configuration(host=fake.url)))


def model(cls: Any, data: Obj) -> Any:
    """A client model from wire JSON (what the typed client methods take)."""
    return cls.from_dict(data)


def wire(api: client.CoreV1Api, model: Any) -> Any:
    """A client model as the JSON it came from (camelCase keys)."""
    return api.api_client.sanitize_for_serialization(model)


def pod(name: str, labels: dict[str, str] | None = None, **spec: Any) -> Obj:
    containers = spec.pop("containers", [{"name": "main", "image": "busybox:1.36"}])
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": containers, **spec},
    }


def shell_pod(name: str, script: str, **spec: Any) -> Obj:
    return pod(
        name, containers=[{"name": "main", "image": "sh", "command": ["sh", "-c", script]}], **spec
    )


def phase(*phases: str) -> Callable[[Obj], bool]:
    return lambda p: p.get("status", {}).get("phase") in phases


def bound(p: Obj) -> bool:
    return bool(p["spec"].get("nodeName"))


def has_conditions(p: Obj) -> bool:
    return bool(p.get("status", {}).get("conditions"))


def live_processes() -> list[tuple[int, int, str]]:
    """(pid, process group, command) of every process that is not a zombie."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            found.append((int(stat.parent.name), int(fields[2]), cmdline))
    return found


def status_of(response: httpx.Response) -> Obj:
    body: Obj = response.json()
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == response.status_code
    return body


# ---- API server: discovery, metadata, errors ----------------------------------------------


def test_discovery_answers_kubectl_and_the_clients(fake: FakeKubernetes) -> None:
    assert httpx.get(fake.url + "/version").json()["major"] == "1"
    assert httpx.get(fake.url + "/api").json()["versions"] == ["v1"]
    aggregated = (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    )
    groups = httpx.get(fake.url + "/apis", headers={"Accept": aggregated})
    assert groups.headers["content-type"].startswith("application/json")
    assert groups.json() == {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
    listed = {r["name"]: r for r in httpx.get(fake.url + "/api/v1").json()["resources"]}
    assert listed["pods"]["shortNames"] == ["po"] and listed["pods"]["namespaced"] is True
    assert "deletecollection" in listed["pods"]["verbs"] and listed["nodes"]["namespaced"] is False
    assert listed["serviceaccounts/token"]["kind"] == "TokenRequest"
    assert {"pods/status", "pods/log", "pods/binding", "nodes/status"} <= set(listed)


def test_create_fills_metadata_and_errors_are_status_objects(
    fake: FakeKubernetes, api: client.CoreV1Api
) -> None:
    api.create_namespaced_pod("default", model(client.V1Pod, pod("web")))
    first = httpx.get(fake.url + "/api/v1/namespaces/default/pods/web").json()
    meta = first["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and meta["generation"] == 1
    second = wire(
        api,
        api.create_namespaced_config_map(
            "default", model(client.V1ConfigMap, {"metadata": {"generateName": "cm-"}})
        ),
    )
    assert second["metadata"]["name"].startswith("cm-") and len(second["metadata"]["name"]) == 8
    assert int(second["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    assert first["spec"]["restartPolicy"] == "Always" and first["status"]["phase"] == "Pending"
    again = httpx.post(fake.url + "/api/v1/namespaces/default/pods", json=pod("web"))
    assert again.status_code == 409
    assert status_of(again)["reason"] == "AlreadyExists"
    assert status_of(again)["details"] == {"name": "web", "kind": "pods"}
    missing = httpx.get(fake.url + "/api/v1/namespaces/default/pods/nope")
    assert (missing.status_code, status_of(missing)["message"]) == (404, 'pods "nope" not found')
    bad = httpx.post(fake.url + "/api/v1/namespaces/default/pods", json=pod("Bad_Name"))
    assert bad.status_code == 422 and status_of(bad)["reason"] == "Invalid"
    nowhere = httpx.post(
        fake.url + "/api/v1/namespaces/nowhere/configmaps", json={"metadata": {"name": "x"}}
    )
    assert nowhere.status_code == 404 and status_of(nowhere)["details"]["kind"] == "namespaces"
    assert httpx.delete(fake.url + "/api/v1/namespaces").status_code == 405


def test_replace_with_a_stale_resource_version_is_a_conflict(api: client.CoreV1Api) -> None:
    cm = wire(
        api,
        api.create_namespaced_config_map(
            "default", model(client.V1ConfigMap, {"metadata": {"name": "c"}, "data": {"a": "1"}})
        ),
    )
    fresh = wire(
        api,
        api.replace_namespaced_config_map(
            "c", "default", model(client.V1ConfigMap, dict(cm, data={"a": "2"}))
        ),
    )
    assert fresh["metadata"]["resourceVersion"] != cm["metadata"]["resourceVersion"]
    with pytest.raises(client.ApiException) as raised:
        api.replace_namespaced_config_map(
            "c", "default", model(client.V1ConfigMap, dict(cm, data={"a": "3"}))
        )
    assert raised.value.status == 409 and json.loads(str(raised.value.body))["reason"] == "Conflict"


def test_status_subresource_writes_only_status(fake: FakeKubernetes, api: client.CoreV1Api) -> None:
    api.create_namespaced_pod("default", model(client.V1Pod, pod("p")))
    api.patch_namespaced_pod_status(
        "p", "default", {"status": {"phase": "Running"}, "spec": {"nodeName": "x"}}
    )
    stored = fake.get("pods", "p")
    assert stored["status"]["phase"] == "Running" and "nodeName" not in stored["spec"]
    api.patch_namespaced_pod(
        "p",
        "default",
        {"status": {"phase": "Failed"}},
        _content_type="application/merge-patch+json",
    )
    assert fake.get("pods", "p")["status"]["phase"] == "Running"


# ---- list: selectors, namespaces, pages -------------------------------------------------------


def test_label_and_field_selectors(fake: FakeKubernetes, api: client.CoreV1Api) -> None:
    fake.create("namespaces", {"metadata": {"name": "other"}})
    for name, labels in [("a", {"app": "web", "tier": "front"}), ("b", {"app": "db"}), ("c", {})]:
        fake.create("pods", pod(name, labels))
    fake.create("pods", pod("d", {"app": "web"}), "other")
    fake.update_status("pods", "b", {"phase": "Running"})

    def names(selector: str = "", fields: str = "") -> list[str]:
        found = api.list_namespaced_pod("default", label_selector=selector, field_selector=fields)
        return [p["metadata"]["name"] for p in wire(api, found)["items"]]

    assert names("app=web") == names("app==web") == ["a"]
    assert names("app!=web") == ["b", "c"]
    assert names("app in (web,db)") == ["a", "b"] and names("app notin (web)") == ["b", "c"]
    assert (
        names("app") == ["a", "b"] and names("!app") == ["c"] and names("app,tier=front") == ["a"]
    )
    assert names(fields="status.phase=Running") == ["b"] and names(fields="metadata.name!=a") == [
        "b",
        "c",
    ]
    every = httpx.get(fake.url + "/api/v1/pods", params={"labelSelector": "app=web"}).json()
    assert every["kind"] == "PodList" and int(every["metadata"]["resourceVersion"]) > 0
    assert [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in every["items"]] == [
        ("default", "a"),
        ("other", "d"),
    ]
    for bad in ({"labelSelector": "app in web"}, {"fieldSelector": "spec.nope=1"}):
        answer = httpx.get(fake.url + "/api/v1/pods", params=bad)
        assert answer.status_code == 400 and status_of(answer)["reason"] == "BadRequest"
    with pytest.raises(SelectorError):
        parse_label_selector("a=b c")


def test_limit_and_continue_page_through_a_list(fake: FakeKubernetes) -> None:
    for i in range(5):
        fake.create("configmaps", {"metadata": {"name": f"cm-{i}"}})
    url, seen, token = fake.url + "/api/v1/namespaces/default/configmaps", [], ""
    while True:
        page = httpx.get(url, params={"limit": 2, **({"continue": token} if token else {})}).json()
        seen += [c["metadata"]["name"] for c in page["items"]]
        token = page["metadata"].get("continue", "")
        if not token:
            break
    assert seen == [f"cm-{i}" for i in range(5)]


# ---- writes of each kind ------------------------------------------------------------------------


def test_each_kind_is_created_patched_and_deleted(
    fake: FakeKubernetes, api: client.CoreV1Api
) -> None:
    secret = {"metadata": {"name": "s"}, "stringData": {"k": "v"}}
    stored = wire(api, api.create_namespaced_secret("default", model(client.V1Secret, secret)))
    assert stored["data"] == {"k": "dg=="} and stored["type"] == "Opaque"
    assert "stringData" not in stored
    service = {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}}
    stored = wire(api, api.create_namespaced_service("default", model(client.V1Service, service)))
    assert stored["spec"]["clusterIP"].startswith("10.96.")
    assert stored["spec"]["ports"][0]["targetPort"] == 80
    storage = {"requests": {"storage": "1Gi"}}
    claim = {"metadata": {"name": "pvc"}, "spec": {"accessModes": ["RWO"], "resources": storage}}
    claim_model = model(client.V1PersistentVolumeClaim, claim)
    stored = wire(api, api.create_namespaced_persistent_volume_claim("default", claim_model))
    assert stored["status"]["phase"] == "Pending"
    config = {"metadata": {"name": "cm"}, "data": {"a": "1"}}
    api.create_namespaced_config_map("default", model(client.V1ConfigMap, config))
    account = {"metadata": {"name": "sa"}}
    api.create_namespaced_service_account("default", model(client.V1ServiceAccount, account))
    fake.add_node("node-1")
    merge = {"metadata": {"labels": {"patched": "yes"}}}
    for kind, name, method in [
        ("secrets", "s", "namespaced_secret"),
        ("services", "svc", "namespaced_service"),
        ("persistentvolumeclaims", "pvc", "namespaced_persistent_volume_claim"),
        ("configmaps", "cm", "namespaced_config_map"),
        ("serviceaccounts", "sa", "namespaced_service_account"),
        ("nodes", "node-1", "node"),
        ("namespaces", "default", "namespace"),
    ]:
        patch = getattr(api, f"patch_{method}")
        patch(name, "default", merge) if "namespaced" in method else patch(name, merge)
        assert fake.get(kind, name)["metadata"]["labels"]["patched"] == "yes", kind
    api.delete_namespaced_secret("s", "default")
    api.delete_node("node-1")
    assert fake.try_get("secrets", "s") is None and fake.try_get("nodes", "node-1") is None
    assert fake.get("serviceaccounts", "default")["metadata"]["namespace"] == "default"


def test_strategic_merge_and_json_patch(fake: FakeKubernetes, api: client.CoreV1Api) -> None:
    containers = [
        {
            "name": "a",
            "image": "one",
            "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
        },
        {"name": "b", "image": "two"},
    ]
    fake.create("pods", pod("p", {"keep": "1"}, containers=containers))
    strategic = {
        "spec": {
            "containers": [
                {"name": "a", "image": "three", "env": [{"name": "Y", "value": "3"}]},
                {"name": "b", "$patch": "delete"},
            ]
        }
    }
    api.patch_namespaced_pod(
        "p", "default", strategic, _content_type="application/strategic-merge-patch+json"
    )
    spec = fake.get("pods", "p")["spec"]
    assert [c["name"] for c in spec["containers"]] == ["a"] and spec["containers"][0][
        "image"
    ] == "three"
    assert spec["containers"][0]["env"] == [
        {"name": "X", "value": "1"},
        {"name": "Y", "value": "3"},
    ]
    merge = {
        "spec": {"containers": [{"name": "z", "image": "only"}]},
        "metadata": {"labels": {"keep": None}},
    }
    api.patch_namespaced_pod("p", "default", merge, _content_type="application/merge-patch+json")
    stored = fake.get("pods", "p")
    assert (
        stored["spec"]["containers"] == [{"name": "z", "image": "only"}]
        and stored["metadata"]["labels"] == {}
    )
    ops = [
        {"op": "add", "path": "/metadata/labels/a~1b", "value": "x"},
        {"op": "copy", "from": "/metadata/labels/a~1b", "path": "/metadata/labels/c"},
        {"op": "test", "path": "/metadata/labels/c", "value": "x"},
        {"op": "remove", "path": "/metadata/labels/a~1b"},
    ]
    api.patch_namespaced_pod("p", "default", ops)
    assert fake.get("pods", "p")["metadata"]["labels"] == {"c": "x"}
    failed = httpx.patch(
        fake.url + "/api/v1/namespaces/default/pods/p",
        content=json.dumps([{"op": "test", "path": "/metadata/labels/c", "value": "y"}]),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert failed.status_code == 422
    stale = {"metadata": {"resourceVersion": "1", "labels": {"d": "1"}}}
    with pytest.raises(client.ApiException) as raised:
        api.patch_namespaced_pod(
            "p", "default", stale, _content_type="application/merge-patch+json"
        )
    assert raised.value.status == 409


# ---- deletion, finalizers, garbage collection ---------------------------------------------------


def test_delete_collection_by_label(fake: FakeKubernetes, api: client.CoreV1Api) -> None:
    for name, app in [("a", "x"), ("b", "x"), ("c", "y")]:
        fake.create("configmaps", {"metadata": {"name": name, "labels": {"app": app}}})
    api.delete_collection_namespaced_config_map("default", label_selector="app=x")
    assert [c["metadata"]["name"] for c in fake.list("configmaps")] == ["c"]


def test_finalizers_hold_an_object_until_they_are_removed(fake: FakeKubernetes) -> None:
    fake.create("configmaps", {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    marked = fake.delete("configmaps", "held")
    assert (
        marked["metadata"]["deletionTimestamp"] and fake.try_get("configmaps", "held") is not None
    )
    fake.patch("configmaps", "held", {"metadata": {"finalizers": None}})
    assert fake.try_get("configmaps", "held") is None


def owned(name: str, owner: Obj, kind: str = "configmaps") -> Obj:
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }
    return {"metadata": {"name": name, "ownerReferences": [ref]}}


@pytest.mark.parametrize("policy", ["Background", "Foreground", None])
def test_owner_gc_deletes_dependents_recursively_across_kinds(
    fake: FakeKubernetes, policy: str | None
) -> None:
    owner = fake.create("pods", pod("owner"))
    child = fake.create("configmaps", owned("child", owner))
    fake.create("secrets", owned("grandchild", child))
    keeper = fake.create("pods", pod("other"))
    both = owned("shared", owner)
    both["metadata"]["ownerReferences"] += owned("x", keeper)["metadata"]["ownerReferences"]
    fake.create("configmaps", both)
    with fake.watch("configmaps", resource_version=fake.resource_version) as events:
        fake.delete("pods", "owner", propagation=policy)
        seen = [
            (e["type"], e["object"]["metadata"]["name"])
            for e in iter(lambda: events.get(0.2), None)
        ]
    if policy == "Foreground":  # marked, then gone once its own dependent is
        assert seen == [("MODIFIED", "child"), ("MODIFIED", "shared"), ("DELETED", "child")]
    else:
        assert seen == [("DELETED", "child"), ("MODIFIED", "shared")]
    assert (
        fake.try_get("configmaps", "child") is None
        and fake.try_get("secrets", "grandchild") is None
    )
    assert [r["name"] for r in fake.get("configmaps", "shared")["metadata"]["ownerReferences"]] == [
        "other"
    ]


def test_orphan_keeps_dependents_without_the_reference(
    fake: FakeKubernetes, api: client.CoreV1Api
) -> None:
    owner = fake.create("pods", pod("owner"))
    fake.create("configmaps", owned("child", owner))
    api.delete_namespaced_pod("owner", "default", propagation_policy="Orphan")
    assert fake.get("configmaps", "child")["metadata"]["ownerReferences"] == []


def test_a_dependent_whose_owner_does_not_exist_is_collected(fake: FakeKubernetes) -> None:
    ghost = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ghost", "uid": "no-such"}}
    created = fake.create("configmaps", owned("orphan", ghost))
    assert created["metadata"]["name"] == "orphan" and fake.try_get("configmaps", "orphan") is None


def test_bound_pods_are_deleted_gracefully_and_namespaces_empty_first(fake: FakeKubernetes) -> None:
    fake.create("pods", pod("bound", nodeName="node-1", terminationGracePeriodSeconds=7))
    marked = fake.delete("pods", "bound")
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 7
    fake.delete("pods", "bound", grace_period=0)
    fake.create("pods", pod("unbound"))
    assert fake.delete("pods", "unbound") and fake.try_get("pods", "unbound") is None
    fake.create("namespaces", {"metadata": {"name": "gone"}})
    fake.create("configmaps", {"metadata": {"name": "held", "finalizers": ["x/y"]}}, "gone")
    assert fake.delete("namespaces", "gone")["status"]["phase"] == "Terminating"
    with pytest.raises(ApiError) as raised:
        fake.create("configmaps", {"metadata": {"name": "late"}}, "gone")
    assert raised.value.code == 403
    fake.patch("configmaps", "held", {"metadata": {"finalizers": []}}, namespace="gone")
    assert fake.try_get("namespaces", "gone") is None


# ---- watches -------------------------------------------------------------------------------------


def test_watch_from_a_resource_version_and_from_zero(
    fake: FakeKubernetes, api: client.CoreV1Api
) -> None:
    fake.create("pods", pod("a"))
    since = fake.resource_version
    fake.create("pods", pod("b"))
    fake.patch("pods", "a", {"metadata": {"labels": {"x": "1"}}})
    later = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(  # type: ignore[no-untyped-call]
            api.list_namespaced_pod, "default", resource_version=since, timeout_seconds=1
        )
    ]
    assert later == [("ADDED", "b"), ("MODIFIED", "a")]
    initial = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(  # type: ignore[no-untyped-call]
            api.list_namespaced_pod, "default", resource_version="0", timeout_seconds=1
        )
    ]
    assert initial == [("ADDED", "a"), ("ADDED", "b")]


def test_watch_selector_transitions_and_too_old_versions(fake: FakeKubernetes) -> None:
    fake.create("pods", pod("a", {"app": "web"}))
    with fake.watch(
        "pods", label_selector="app=web", resource_version=fake.resource_version
    ) as events:
        fake.patch("pods", "a", {"metadata": {"labels": {"app": "db"}}})
        fake.patch("pods", "a", {"metadata": {"labels": {"app": "web"}}})
        assert [e["type"] for e in iter(lambda: events.get(0.2), None)] == ["DELETED", "ADDED"]
    old = fake.resource_version
    fake.create("pods", pod("b"))
    fake.compact()
    lines = httpx.get(
        fake.url + "/api/v1/pods",
        params={"watch": "1", "resourceVersion": old, "timeoutSeconds": 2},
    ).text.splitlines()
    event = json.loads(lines[0])
    assert (
        event["type"] == "ERROR"
        and event["object"]["code"] == 410
        and event["object"]["reason"] == "Expired"
    )


def test_http_watch_streams_newline_delimited_json_with_bookmarks(fake: FakeKubernetes) -> None:
    params = {
        "watch": "true",
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "2",
        "resourceVersion": fake.resource_version,
    }
    with httpx.stream(
        "GET", fake.url + "/api/v1/namespaces/default/pods", params=params, timeout=10
    ) as response:
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.headers["content-type"].startswith("application/json")
        fake.create("pods", pod("a"))
        events = [json.loads(line) for line in response.iter_lines() if line]
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "a"
    marks = [e for e in events if e["type"] == "BOOKMARK"]
    assert (
        marks
        and marks[0]["object"]["kind"] == "Pod"
        and marks[-1]["object"]["metadata"]["resourceVersion"]
    )


def test_websocket_watch_sends_one_text_frame_per_event(fake: FakeKubernetes) -> None:
    fake.create("pods", pod("a"))
    url = (
        fake.url.replace("http", "ws")
        + "/api/v1/namespaces/default/pods?watch=true&resourceVersion=0"
    )
    with websockets.sync.client.connect(
        url, subprotocols=[websockets.Subprotocol("v4.channel.k8s.io")]
    ) as ws:
        assert ws.subprotocol == "v4.channel.k8s.io"
        first = ws.recv(timeout=5)
        fake.delete("pods", "a")
        second = ws.recv(timeout=5)
    assert isinstance(first, str) and json.loads(first)["type"] == "ADDED"
    assert (
        json.loads(second)["type"] == "DELETED"
        and json.loads(second)["object"]["metadata"]["name"] == "a"
    )
    with pytest.raises(websockets.InvalidStatus) as refused:
        websockets.sync.client.connect(
            fake.url.replace("http", "ws") + "/api/v1/namespaces/default/pods"
        )
    assert refused.value.response.status_code == 400


# ---- subresources, tokens, logs ------------------------------------------------------------------


def test_token_request_and_bearer_authentication() -> None:
    with FakeKubernetes(token="admin") as fake:
        assert httpx.get(fake.url + "/api/v1/pods").status_code == 401
        admin = client.Configuration(
            host=fake.url,
            api_key={"authorization": "admin"},
            api_key_prefix={"authorization": "Bearer"},
        )
        api = client.CoreV1Api(client.ApiClient(admin))
        request = {"spec": {"audiences": ["spark"], "expirationSeconds": 3600}}
        body = model(client.AuthenticationV1TokenRequest, request)
        answer = wire(api, api.create_namespaced_service_account_token("default", "default", body))
        assert answer["kind"] == "TokenRequest" and answer["status"]["expirationTimestamp"]
        issued = answer["status"]["token"]
        headers = {"Authorization": f"Bearer {issued}"}
        assert httpx.get(fake.url + "/api/v1/pods", headers=headers).status_code == 200
        claims = fake.token_claims(issued) or {}
        assert claims["sub"] == "system:serviceaccount:default:default"
        with pytest.raises(client.ApiException) as raised:
            api.create_namespaced_service_account_token("default", "nobody", body)
        assert raised.value.status == 404


def test_log_and_binding_subresources(fake: FakeKubernetes, api: client.CoreV1Api) -> None:
    fake.add_node("node-1")
    fake.create("pods", pod("p"))
    with pytest.raises(client.ApiException) as waiting:
        api.read_namespaced_pod_log("p", "default")
    assert waiting.value.status == 400 and "waiting to start" in str(waiting.value.body)
    fake.add_log_provider(
        lambda ns, name, c: (
            "one\ntwo\nthree\n" if (ns, name, c) == ("default", "p", "main") else None
        )
    )
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "p"},
        "target": {"kind": "Node", "name": "node-1"},
    }
    assert (
        httpx.post(fake.url + "/api/v1/namespaces/default/pods/p/binding", json=binding).status_code
        == 201
    )
    assert (
        httpx.post(fake.url + "/api/v1/namespaces/default/pods/p/binding", json=binding).status_code
        == 409
    )
    fake.update_status("pods", "p", {"phase": "Running"})
    assert api.read_namespaced_pod_log("p", "default") == "one\ntwo\nthree\n"
    assert api.read_namespaced_pod_log("p", "default", tail_lines=1) == "three\n"


def test_objects_validate_against_the_kubernetes_schema(fake: FakeKubernetes) -> None:
    fake.add_node("node-1")
    with Kubelet(fake, nodes=["node-1"]):
        fake.create("pods", shell_pod("p", "sleep 30", restartPolicy="Never"))
        running = fake.wait_for("pods", "p", phase("Running"))
        objects = [running, fake.get("nodes", "node-1"), *fake.events_for(fake.get("pods", "p"))]
        objects.append(fake.issue_token("default", "default"))
        objects.append(
            fake.create("services", {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 1}]}})
        )
        objects.append(fake.get("namespaces", "default"))
        for obj in objects:
            kubernetes_validate.validate(obj, "1.32", strict=True)


# ---- kubectl ------------------------------------------------------------------------------------


def test_real_kubectl_against_the_fake(fake: FakeKubernetes, tmp_path: Path) -> None:
    if not os.access(KUBECTL, os.X_OK):
        unavailable("kubectl", f"{KUBECTL} is missing")
    kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
    env = {"HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig), "PATH": os.environ.get("PATH", "")}

    def kubectl(*args: str) -> str:
        done = subprocess.run(
            [KUBECTL, "--kubeconfig", str(kubeconfig), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    fake.add_node("node-1")
    fake.add_node("node-2")
    fake.set_node_unschedulable("node-2")
    for name, app in [("a", "web"), ("b", "web"), ("c", "db")]:
        fake.create("pods", pod(name, {"app": app}))
    listed = json.loads(kubectl("get", "pods", "-l", "app=web", "-o", "json"))
    assert [p["metadata"]["name"] for p in listed["items"]] == ["a", "b"]
    kubectl("label", "pods", "a", "tier=front")
    kubectl(
        "patch", "pod", "a", "--type", "merge", "-p", '{"metadata":{"annotations":{"note":"hi"}}}'
    )
    kubectl(
        "patch",
        "pod",
        "a",
        "--type",
        "strategic",
        "-p",
        '{"spec":{"containers":[{"name":"main","image":"busybox:1.37"}]}}',
    )
    stored = fake.get("pods", "a")
    assert stored["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert (
        stored["metadata"]["annotations"] == {"note": "hi"}
        and stored["spec"]["containers"][0]["image"] == "busybox:1.37"
    )
    nodes = kubectl("get", "nodes").splitlines()
    assert nodes[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert nodes[2].split()[:2] == ["node-2", "Ready,SchedulingDisabled"]
    kubectl("delete", "pods", "-l", "app=web")
    assert [p["metadata"]["name"] for p in fake.list("pods")] == ["c"]
    with Kubelet(fake, nodes=["node-1"]):
        fake.create("pods", shell_pod("talker", "echo hello from the pod", restartPolicy="Never"))
        fake.wait_for("pods", "talker", phase("Succeeded"), timeout=20)
        assert kubectl("logs", "talker") == "hello from the pod\n"
    assert (tmp_path / ".kube" / "cache").is_dir()  # kubectl's HOME was the temp directory


# ---- scheduler ----------------------------------------------------------------------------------


def test_quantities() -> None:
    assert parse_quantity("1408Mi") == 1408 * 2**20 and parse_quantity("500m") == parse_quantity(
        "0.5"
    )
    assert (
        parse_quantity("2Gi") == 2 * 2**30
        and parse_quantity("1e3") == 1000
        and parse_quantity("1k") == 1000
    )


def test_unschedulable_pods_get_the_schedulers_condition_and_event_then_a_node(
    fake: FakeKubernetes,
) -> None:
    fake.add_node("tainted", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    fake.add_node("small-1", memory="1Gi")
    fake.add_node("small-2", memory="1Gi")
    fake.add_node("pressed")
    fake.set_node_condition("pressed", "DiskPressure", "True")
    big = [
        {
            "name": "main",
            "image": "x",
            "command": ["sleep", "60"],
            "resources": {"requests": {"memory": "2Gi", "cpu": "500m"}},
        }
    ]
    with Kubelet(fake, nodes=[]):
        fake.create("pods", pod("big", containers=big))
        pending = fake.wait_for("pods", "big", has_conditions, timeout=10)
        condition = pending["status"]["conditions"][0]
        assert (condition["type"], condition["status"], condition["reason"]) == (
            "PodScheduled",
            "False",
            "Unschedulable",
        )
        assert condition["message"].startswith(
            "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, "
            "1 node(s) had untolerated taint {node.kubernetes.io/disk-pressure: }, "
            "2 Insufficient memory."
        )
        event = fake.events_for(pending)[-1]
        assert (event["type"], event["reason"], event["message"]) == (
            "Warning",
            "FailedScheduling",
            condition["message"],
        )
        fake.add_node("roomy", memory="4Gi")
        placed = fake.wait_for("pods", "big", bound, timeout=10)
        assert placed["spec"]["nodeName"] == "roomy"
        assert fake.events_for(placed)[-1]["reason"] == "Scheduled"


def test_tolerations_selectors_affinity_and_cordons(fake: FakeKubernetes) -> None:
    fake.add_node(
        "gpu",
        labels={"kind": "gpu"},
        taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}],
    )
    fake.add_node("cpu", labels={"kind": "cpu"})
    fake.add_node("cordoned", labels={"kind": "cpu"}, unschedulable=True)
    tolerate = [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kind", "operator": "In", "values": ["gpu"]}]}
                ]
            }
        }
    }
    with Kubelet(fake, nodes=[]):
        fake.create("pods", pod("on-gpu", tolerations=tolerate, affinity=affinity))
        fake.create("pods", pod("on-cpu", nodeSelector={"kind": "cpu"}))
        fake.create("pods", pod("nowhere", nodeSelector={"kind": "tpu"}))
        for name, node in [("on-gpu", "gpu"), ("on-cpu", "cpu")]:
            assert fake.wait_for("pods", name, bound)["spec"]["nodeName"] == node
        stuck = fake.wait_for("pods", "nowhere", has_conditions)
        assert stuck["status"]["conditions"][0]["message"].startswith(  # taints are checked first
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
            "1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable."
        )


# ---- kubelet -------------------------------------------------------------------------------------


def test_kubelet_runs_pods_as_processes_and_reports_their_end(fake: FakeKubernetes) -> None:
    fake.add_node("node-1")
    fake.create("configmaps", {"metadata": {"name": "conf"}, "data": {"greeting": "hello"}})
    fake.create("secrets", {"metadata": {"name": "pw"}, "stringData": {"word": "sesame"}})
    script = 'cat /etc/conf/greeting; echo " $(WHO) $POD $IP $WORD"; pwd; exit 3'
    spec = shell_pod(
        "p",
        script,
        restartPolicy="Never",
        volumes=[{"name": "conf", "configMap": {"name": "conf"}}],
    )
    container = spec["spec"]["containers"][0]
    container["volumeMounts"] = [{"name": "conf", "mountPath": "/etc/conf"}]
    container["env"] = [
        {"name": "WHO", "value": "world"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "WORD", "valueFrom": {"secretKeyRef": {"name": "pw", "key": "word"}}},
    ]
    with Kubelet(fake) as kubelet:
        fake.create("pods", spec)
        done = fake.wait_for(
            "pods",
            "p",
            phase("Succeeded", "Failed"),
            timeout=20,
        )
        assert done["status"]["phase"] == "Failed" and done["status"]["podIP"] == "127.0.0.1"
        state = done["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (state["exitCode"], state["reason"]) == (3, "Error") and state["finishedAt"]
        log = fake.pod_log("default", "p", "main") or ""
        assert (
            log.startswith("hello world p 127.0.0.1 sesame\n") and kubelet.workdir.as_posix() in log
        )
        fake.create("pods", shell_pod("ok", "true", restartPolicy="Never"))
        assert fake.wait_for("pods", "ok", phase("Succeeded"), timeout=20)


def test_kubelet_restarts_and_terminates_gracefully_then_stop_kills_the_rest(
    fake: FakeKubernetes,
) -> None:
    fake.add_node("node-1")
    kubelet = Kubelet(fake).start()
    try:
        fake.create("pods", shell_pod("flaky", "sleep 0.2; exit 1", restartPolicy="OnFailure"))
        restarted = fake.wait_for(
            "pods",
            "flaky",
            lambda p: p["status"].get("containerStatuses", [{}])[0].get("restartCount", 0) >= 1,
            timeout=20,
        )
        assert (
            restarted["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 1
        )
        trap = "trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.1; done"
        fake.create("pods", shell_pod("graceful", trap, terminationGracePeriodSeconds=5))
        fake.create(
            "pods",
            shell_pod("stubborn", "trap '' TERM; sleep 600", terminationGracePeriodSeconds=1),
        )
        fake.create("pods", pod("imageless"))
        for name in ("graceful", "stubborn"):
            fake.wait_for("pods", name, phase("Running"), timeout=20)
        stuck = fake.wait_for(
            "pods",
            "imageless",
            lambda p: bool(p["status"].get("containerStatuses")),
            timeout=20,
        )
        assert (
            stuck["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
            == "CreateContainerError"
        )
        started = time.monotonic()
        fake.delete("pods", "graceful")
        fake.delete("pods", "stubborn")
        for name in ("graceful", "stubborn"):
            fake.wait_deleted("pods", name, timeout=20)
        assert time.monotonic() - started < 5
        assert "got TERM" in (fake.pod_log("default", "graceful", "main") or "")
        fake.create("pods", shell_pod("long", "sleep 600 & sleep 600"))
        fake.wait_for("pods", "long", phase("Running"), timeout=20)
        pids = kubelet.pids()
        assert pids
    finally:
        kubelet.stop()
    assert kubelet.pids() == []
    assert not [p for p in live_processes() if p[1] in pids]  # whole process groups are gone


def test_spark_executor_command_follows_the_image_entrypoint(tmp_path: Path) -> None:
    env = {
        "SPARK_HOME": "/spark",
        "SPARK_CONF_DIR": str(tmp_path),
        "SPARK_JAVA_OPT_10": "-Dten",
        "SPARK_JAVA_OPT_2": "-Dtwo",
        "SPARK_EXECUTOR_MEMORY": "512m",
        "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@127.0.0.1:7078",
        "SPARK_EXECUTOR_ID": "1",
        "SPARK_EXECUTOR_CORES": "1",
        "SPARK_APPLICATION_ID": "spark-app",
        "SPARK_EXECUTOR_POD_IP": "127.0.0.1",
        "SPARK_RESOURCE_PROFILE_ID": "0",
        "SPARK_EXECUTOR_POD_NAME": "pi-exec-1",
    }
    argv = spark_executor_argv(env, Settings(java_home=Path("/jdk")))
    assert argv[:6] == ["/jdk/bin/java", "-Dtwo", "-Dten", "-Xms512m", "-Xmx512m", "-cp"]
    assert argv[6] == f"{tmp_path}::/spark/jars/*:"
    assert argv[7:] == [
        "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend",
        "--driver-url",
        "spark://CoarseGrainedScheduler@127.0.0.1:7078",
        "--executor-id",
        "1",
        "--cores",
        "1",
        "--app-id",
        "spark-app",
        "--hostname",
        "127.0.0.1",
        "--resourceProfileId",
        "0",
        "--podName",
        "pi-exec-1",
    ]
    assert shutil.which("sh")
