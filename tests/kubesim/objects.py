"""The fake API server's object store: what etcd plus the generic registry would do.

Objects are plain JSON dicts. Every write takes the next value of one global counter as its
`metadata.resourceVersion` (a string, as on the wire) and is recorded in a bounded history
that watches replay from. Create fills in uid, resourceVersion, creationTimestamp, generation
(1, bumped when anything outside metadata and status changes) and the defaults of
`resources.apply_defaults`; `generateName` appends five random characters. Replace and patch
of kinds that have a `status` subresource keep the stored status (and the `/status` writes keep
everything but the status); a write that changes nothing is not a new version. A
`metadata.resourceVersion` in a replace or patch body is a precondition (409 Conflict).
Deletion and garbage collection are in `store.py`.

Not modelled: storage-level consistency options (`resourceVersionMatch`, reading at an old
version: reads are always current), managedFields, field validation of unknown fields,
admission, quotas, and `dryRun` (refused by the HTTP layer).
"""

from __future__ import annotations

import builtins
import copy
import itertools
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from tests.kubesim import patches, resources
from tests.kubesim.errors import STALE, ApiError, bad_request, conflict, invalid, not_found
from tests.kubesim.resources import Resource
from tests.kubesim.selectors import (
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from tests.kubesim.watches import Change, Subscription, Watch

Obj = dict[str, Any]
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_STATUS_KINDS = {"Pod", "Node", "Namespace", "Service", "PersistentVolumeClaim"}
PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}


class ObjectStore:
    """Thread-safe storage of API objects with watches, deletion semantics and owner GC."""

    def __init__(self, *, history: int = 10000, graceful_pod_deletion: bool = True) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._objects: dict[Resource, dict[tuple[str, str], Obj]] = {}
        self._uids: dict[str, tuple[Resource, tuple[str, str]]] = {}
        self._rv = 0
        self._history: deque[Change] = deque(maxlen=history)
        self._compacted = 0
        self._subs: list[Subscription] = []
        self.graceful_pod_deletion = graceful_pod_deletion
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create("namespaces", {"metadata": {"name": ns}})

    # ---- lookups ----

    @staticmethod
    def resource(name: str | Resource) -> Resource:
        if isinstance(name, Resource):
            return name
        found = resources.find_resource(name)
        if found is None:
            raise KeyError(f"unknown resource {name!r}")
        return found

    @property
    def resource_version(self) -> str:
        with self._lock:
            return str(self._rv)

    def _key(self, r: Resource, namespace: str | None, name: str) -> tuple[str, str]:
        return ((namespace or "default") if r.namespaced else "", name)

    def _require(self, r: Resource, namespace: str | None, name: str) -> Obj:
        obj = self._objects.get(r, {}).get(self._key(r, namespace, name))
        if obj is None:
            raise not_found(r, name)
        return obj

    def get(self, resource: str | Resource, name: str, namespace: str | None = None) -> Obj:
        """A copy of the object; ApiError 404 if missing."""
        r = self.resource(resource)
        with self._lock:
            return copy.deepcopy(self._require(r, namespace, name))

    def try_get(
        self, resource: str | Resource, name: str, namespace: str | None = None
    ) -> Obj | None:
        try:
            return self.get(resource, name, namespace)
        except ApiError:
            return None

    def list(
        self,
        resource: str | Resource,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> builtins.list[Obj]:
        """Copies of the matching objects, sorted by namespace and name."""
        return self.list_at(resource, namespace, label_selector, field_selector)[0]

    def list_at(
        self, resource: str | Resource, namespace: str | None, labels: str = "", fields: str = ""
    ) -> tuple[builtins.list[Obj], str]:
        """Matching objects and the list's resourceVersion."""
        r = self.resource(resource)
        sub = self._filter(r, namespace if r.namespaced else None, labels, fields)
        with self._lock:
            items = [o for _, o in sorted(self._objects.get(r, {}).items()) if sub.matches(o)]
            return copy.deepcopy(items), str(self._rv)

    def _filter(self, r: Resource, namespace: str | None, labels: str, fields: str) -> Subscription:
        try:
            label_sel, field_sel = parse_label_selector(labels), parse_field_selector(fields)
        except SelectorError as exc:
            raise bad_request(str(exc)) from exc
        for name in field_sel.fields():
            if name not in r.field_labels():
                raise bad_request(f"field label not supported: {name}")
        return Subscription(r, namespace, label_sel, field_sel, lambda _e: None)

    def wait_for(
        self,
        resource: str | Resource,
        name: str,
        predicate: Callable[[Obj], bool],
        namespace: str | None = None,
        timeout: float = 30.0,
    ) -> Obj:
        """Block until the object exists and `predicate(object)` holds; return that state."""
        found = self._wait(
            resource, name, lambda o: o is not None and predicate(o), namespace, timeout
        )
        assert found is not None
        return found

    def wait_deleted(
        self,
        resource: str | Resource,
        name: str,
        namespace: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Block until the object is gone."""
        self._wait(resource, name, lambda o: o is None, namespace, timeout)

    def _wait(
        self,
        resource: str | Resource,
        name: str,
        predicate: Callable[[Obj | None], bool],
        namespace: str | None,
        timeout: float,
    ) -> Obj | None:
        r = self.resource(resource)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                current = self._objects.get(r, {}).get(self._key(r, namespace, name))
                if predicate(copy.deepcopy(current)):
                    return copy.deepcopy(current)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{r.plural}/{name}: condition not met; last: {current}")
                self._changed.wait(remaining)

    # ---- writes ----

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _emit(self, r: Resource, kind: str, obj: Obj, old: Obj | None) -> None:
        if len(self._history) == self._history.maxlen:
            self._compacted = self._history[0].rv
        change = Change(self._rv, kind, r, copy.deepcopy(obj), copy.deepcopy(old))
        self._history.append(change)
        for sub in list(self._subs):
            if sub.resource == r and (event := sub.event_for(change)) is not None:
                sub.deliver(event)
        self._changed.notify_all()

    def create(self, resource: str | Resource, obj: Obj, namespace: str | None = None) -> Obj:
        """Create `obj`; 409 AlreadyExists, 404 if its namespace is missing, 422 bad name."""
        r = self.resource(resource)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if r.namespaced:
            given = meta.get("namespace")
            if namespace and given and given != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            namespace = namespace or given or "default"
        with self._lock:
            if r.namespaced:
                ns = self._objects.get(self.resource("namespaces"), {}).get(("", namespace or ""))
                if ns is None:
                    raise not_found(self.resource("namespaces"), namespace or "")
                if ns["metadata"].get("deletionTimestamp"):
                    raise ApiError(
                        403,
                        "Forbidden",
                        f'{r.plural} "{meta.get("name", "")}" is forbidden: unable to create new '
                        f"content in namespace {namespace} because it is being terminated",
                    )
            name = str(meta.get("name") or "")
            while not name and meta.get("generateName"):
                candidate = str(meta["generateName"]) + "".join(random.choices(_NAME_CHARS, k=5))
                if self._key(r, namespace, candidate) not in self._objects.get(r, {}):
                    name = candidate
            self._check_name(r, name)
            key = self._key(r, namespace, name)
            if key in self._objects.get(r, {}):
                message = f'{r.plural} "{name}" already exists'
                raise ApiError(409, "AlreadyExists", message, {"name": name, "kind": r.plural})
            obj["kind"], obj["apiVersion"] = r.kind, r.api_version
            for transient in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
                meta.pop(transient, None)
            meta["name"] = name
            if r.namespaced:
                meta["namespace"] = namespace
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = resources.timestamp()
            meta["generation"] = 1
            resources.apply_defaults(r, obj)
            meta["resourceVersion"] = str(self._next_rv())
            self._objects.setdefault(r, {})[key] = obj
            self._uids[meta["uid"]] = (r, key)
            self._emit(r, "ADDED", obj, None)
            if r.kind == "Namespace":
                self.create("serviceaccounts", {"metadata": {"name": "default"}}, name)
            if meta.get("ownerReferences"):
                self._collect()  # an owner that is absent: the collector deletes the dependent
            return copy.deepcopy(obj)

    def _check_name(self, r: Resource, name: str) -> None:
        if not name:
            raise invalid(r, name, "metadata.name", name, "name or generateName is required")
        label = r.kind in ("Namespace", "Service")
        ok = _LABEL.match(name) and len(name) <= 63 if label else _SUBDOMAIN.match(name)
        if not ok or len(name) > 253:
            what = "RFC 1123 label" if label else "RFC 1123 subdomain"
            why = (
                f"a lowercase {what} must consist of lower case alphanumeric characters, '-'"
                + ("" if label else " or '.'")
                + ", and must start and end with an alphanumeric character"
            )
            raise invalid(r, name, "metadata.name", name, why)

    def replace(
        self,
        resource: str | Resource,
        obj: Obj,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> Obj:
        """PUT: replace the object (or only its status with subresource='status')."""
        r = self.resource(resource)
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        with self._lock:
            current = self._require(r, namespace or meta.get("namespace"), name)
            rv = meta.get("resourceVersion")
            if rv and rv != current["metadata"]["resourceVersion"]:
                raise conflict(r, name, STALE)
            return self._commit(r, current, copy.deepcopy(obj), subresource)

    def patch(
        self,
        resource: str | Resource,
        name: str,
        body: Any,
        patch_type: str = "merge",
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> Obj:
        """PATCH with 'merge', 'strategic', 'json' or 'apply' (or their content types)."""
        r = self.resource(resource)
        content = PATCH_TYPES.get(patch_type, patch_type)
        with self._lock:
            current = self._require(r, namespace, name)
            try:
                if content == PATCH_TYPES["json"]:
                    new = patches.json_patch(current, body)
                elif content == PATCH_TYPES["merge"]:
                    new = patches.merge_patch(current, body)
                elif content in (PATCH_TYPES["strategic"], PATCH_TYPES["apply"]):
                    new = patches.strategic_merge_patch(current, body)
                else:
                    raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {content}")
            except patches.PatchError as exc:
                if exc.test_failed:
                    raise ApiError(422, "Invalid", str(exc)) from exc
                raise bad_request(str(exc)) from exc
            if not isinstance(new, dict):
                raise bad_request("the patch does not give an object")
            rv = (new.get("metadata") or {}).get("resourceVersion")
            if rv and rv != current["metadata"]["resourceVersion"]:
                raise conflict(r, name, STALE)
            return self._commit(r, current, new, subresource)

    def update_status(
        self, resource: str | Resource, name: str, status: Obj, namespace: str | None = None
    ) -> Obj:
        """Replace the object's status (what a controller's /status PUT does)."""

        def change(obj: Obj) -> None:
            obj["status"] = status

        return self.mutate(resource, name, change, namespace, "status")

    def mutate(
        self,
        resource: str | Resource,
        name: str,
        change: Callable[[Obj], None],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> Obj:
        """Read-modify-write under the store's lock: `change` edits a copy in place."""
        r = self.resource(resource)
        with self._lock:
            current = self._require(r, namespace, name)
            new = copy.deepcopy(current)
            change(new)
            return self._commit(r, current, new, subresource)

    def _commit(self, r: Resource, current: Obj, new: Obj, subresource: str | None) -> Obj:
        cur_meta = current["metadata"]
        meta = new.setdefault("metadata", {})
        if meta.get("name", cur_meta["name"]) != cur_meta["name"]:
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                f"({cur_meta['name']})"
            )
        if subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(current)
            new["status"] = status
            meta = new["metadata"]
        elif r.kind in _STATUS_KINDS:
            new["status"] = copy.deepcopy(current.get("status"))
        if new.get("status") is None:
            new.pop("status", None)
        new["kind"], new["apiVersion"] = r.kind, r.api_version
        for fixed in ("uid", "creationTimestamp", "namespace", "deletionTimestamp", "generation"):
            if fixed in cur_meta:
                meta[fixed] = cur_meta[fixed]
            else:
                meta.pop(fixed, None)
        if "deletionGracePeriodSeconds" in cur_meta:
            meta["deletionGracePeriodSeconds"] = cur_meta["deletionGracePeriodSeconds"]
        if r.kind == "Secret":
            resources.fold_string_data(new)
        meta["resourceVersion"] = cur_meta["resourceVersion"]
        if new == current:
            return copy.deepcopy(current)

        def body(o: Obj) -> Obj:
            return {k: v for k, v in o.items() if k not in ("metadata", "status")}

        if body(new) != body(current):
            meta["generation"] = int(cur_meta.get("generation", 1)) + 1
        key = self._key(r, cur_meta.get("namespace"), cur_meta["name"])
        gone = not meta.get("finalizers") and not meta.get("deletionGracePeriodSeconds")
        if meta.get("deletionTimestamp") and gone:
            self._remove(r, key)
            self._collect()
            return copy.deepcopy(current)
        meta["resourceVersion"] = str(self._next_rv())
        self._objects[r][key] = new
        self._emit(r, "MODIFIED", new, current)
        if cur_meta.get("deletionTimestamp") or cur_meta.get("finalizers") != meta.get(
            "finalizers"
        ):
            self._collect()
        return copy.deepcopy(new)

    def _remove(self, r: Resource, key: tuple[str, str]) -> Obj:
        obj = self._objects[r].pop(key)
        self._uids.pop(obj["metadata"]["uid"], None)
        old = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self._next_rv())
        self._emit(r, "DELETED", obj, old)
        return copy.deepcopy(obj)

    def _collect(self) -> None:
        """Garbage collection hook (see `store.Store`)."""

    # ---- watches ----

    def subscribe(
        self,
        resource: str | Resource,
        namespace: str | None,
        deliver: Callable[[Obj | None], None],
        *,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str | None = None,
        initial_events_end: bool = False,
    ) -> Subscription:
        """Start delivering watch events to `deliver` (from the writing thread, under the
        store's lock: it must not block). resourceVersion unset or "0": synthetic ADDED events
        for what exists, then changes; "N": the changes after N (410 Gone if compacted)."""
        r = self.resource(resource)
        sub = self._filter(r, namespace if r.namespaced else None, label_selector, field_selector)
        sub.deliver = deliver
        with self._lock:
            if resource_version in (None, "", "0"):
                for _, obj in sorted(self._objects.get(r, {}).items()):
                    if sub.matches(obj):
                        deliver({"type": "ADDED", "object": copy.deepcopy(obj)})
                if initial_events_end:
                    meta: Obj = {"resourceVersion": str(self._rv)}
                    meta["annotations"] = {"k8s.io/initial-events-end": "true"}
                    mark = {"kind": r.kind, "apiVersion": r.api_version, "metadata": meta}
                    deliver({"type": "BOOKMARK", "object": mark})
            else:
                try:
                    since = int(resource_version)
                except ValueError as exc:
                    raise bad_request(f"invalid resource version: {resource_version}") from exc
                if since < self._compacted:
                    message = f"too old resource version: {since} ({self._compacted + 1})"
                    raise ApiError(410, "Expired", message)
                for change in itertools.dropwhile(lambda c: c.rv <= since, list(self._history)):
                    if change.resource == r and (event := sub.event_for(change)) is not None:
                        deliver(event)
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def watch(
        self,
        resource: str | Resource,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str | None = None,
    ) -> Watch:
        """A `Watch` iterator with the same semantics as `subscribe`."""
        w = Watch(self.unsubscribe)
        w.subscription = self.subscribe(
            resource,
            namespace,
            w.deliver,
            label_selector=label_selector,
            field_selector=field_selector,
            resource_version=resource_version,
        )
        return w

    def compact(self) -> None:
        """Forget the history (as etcd compaction does): older watches get 410 Gone."""
        with self._lock:
            self._compacted = self._rv
            self._history.clear()

    def close_watches(self) -> None:
        """End every watch (their iterators stop, HTTP streams close)."""
        with self._lock:
            for sub in self._subs:
                sub.deliver(None)
            self._subs.clear()
