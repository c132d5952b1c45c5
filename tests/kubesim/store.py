"""Deletion and garbage collection in the fake API server's store.

An object with finalizers gets `deletionTimestamp` and lives until they are all removed;
`propagationPolicy` Foreground adds the `foregroundDeletion` finalizer and removes the owner
after its dependents; Background (the default) removes the owner, then its dependents; Orphan
strips the owner's references from them. Dependents are objects whose
`metadata.ownerReferences` name the owner's uid, of any kind; one with another owner still
present only loses the dangling reference, as the garbage collector does. All of this happens
synchronously, within the delete call (the real garbage collector is asynchronous). An object
created with owner references none of which names an existing uid is deleted right after its
creation (the create still answers 201 with it), as the collector deletes such dependents.

Pods follow the pod strategy: a pod bound to a node and not yet Succeeded/Failed is deleted
gracefully (deletionTimestamp = now + grace period, deletionGracePeriodSeconds), for the
kubelet to finish with a delete of grace 0; unbound or finished pods, a grace period of 0, or
`graceful_pod_deletion=False` remove the pod at once. Deleting a namespace marks it
Terminating, deletes everything in it, and removes it when it is empty.
"""

from __future__ import annotations

import builtins
import copy
import datetime

from tests.kubesim import resources
from tests.kubesim.errors import ApiError, conflict
from tests.kubesim.objects import Obj, ObjectStore
from tests.kubesim.resources import Resource


class Store(ObjectStore):
    """Thread-safe storage of API objects with watches, deletion semantics and owner GC."""

    def delete(
        self,
        resource: str | Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str | None = None,
        grace_period: int | None = None,
        preconditions: Obj | None = None,
    ) -> Obj:
        """DELETE: returns the object as deleted (or as marked for deletion)."""
        r = self.resource(resource)
        with self._lock:
            current = self._require(r, namespace, name)
            meta = current["metadata"]
            for field in ("uid", "resourceVersion"):
                wanted = (preconditions or {}).get(field)
                if wanted and wanted != meta.get(field):
                    label = "UID" if field == "uid" else "ResourceVersion"
                    raise conflict(
                        r,
                        name,
                        f"Precondition failed: {label} in precondition: {wanted}, "
                        f"{label} in object meta: {meta.get(field)}",
                    )
            if propagation == "Orphan":
                self._orphan(meta["uid"])
            grace = self._pod_grace(current, grace_period) if r.kind == "Pod" else 0
            key = self._key(r, meta.get("namespace"), name)
            pending = bool(meta.get("finalizers")) or grace > 0 or r.kind == "Namespace"
            if not pending and propagation != "Foreground":
                removed = self._remove(r, key)
                self._collect()
                return removed
            if meta.get("deletionTimestamp") and grace >= int(
                meta.get("deletionGracePeriodSeconds", 0)
            ):
                return copy.deepcopy(current)
            new = copy.deepcopy(current)
            stamp = resources.now().timestamp() + grace
            when = datetime.datetime.fromtimestamp(stamp, datetime.UTC)
            new["metadata"]["deletionTimestamp"] = resources.timestamp(when)
            new["metadata"]["deletionGracePeriodSeconds"] = grace
            if propagation == "Foreground":
                finalizers = new["metadata"].setdefault("finalizers", [])
                if "foregroundDeletion" not in finalizers:
                    finalizers.append("foregroundDeletion")
            if r.kind == "Namespace":
                new["status"] = {"phase": "Terminating"}
            new["metadata"]["resourceVersion"] = str(self._next_rv())
            self._objects[r][key] = new
            self._emit(r, "MODIFIED", new, current)
            if r.kind == "Namespace":
                for other, objects in list(self._objects.items()):
                    for ns, obj_name in list(objects):
                        if other.namespaced and ns == name and (ns, obj_name) in objects:
                            self.delete(other, obj_name, ns)
            self._collect()
            return copy.deepcopy(self._objects.get(r, {}).get(key, new))

    def _pod_grace(self, pod: Obj, requested: int | None) -> int:
        if not self.graceful_pod_deletion or not pod.get("spec", {}).get("nodeName"):
            return 0
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return 0
        if requested is None:
            return int(pod.get("spec", {}).get("terminationGracePeriodSeconds", 30))
        return max(0, requested)

    def delete_collection(
        self,
        resource: str | Resource,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        propagation: str | None = None,
        grace_period: int | None = None,
    ) -> builtins.list[Obj]:
        """DELETE on a collection: delete every match; returns what each delete returned."""
        r = self.resource(resource)
        out = []
        with self._lock:
            for obj in self.list_at(r, namespace, label_selector, field_selector)[0]:
                meta = obj["metadata"]
                try:
                    out.append(
                        self.delete(
                            r,
                            meta["name"],
                            meta.get("namespace"),
                            propagation=propagation,
                            grace_period=grace_period,
                        )
                    )
                except ApiError:
                    continue  # gone in the meantime (collected as a dependent)
        return out

    def _orphan(self, uid: str) -> None:
        for r, objects in list(self._objects.items()):
            for obj in list(objects.values()):
                refs = obj["metadata"].get("ownerReferences") or []
                if any(ref.get("uid") == uid for ref in refs):
                    new = copy.deepcopy(obj)
                    new["metadata"]["ownerReferences"] = [x for x in refs if x.get("uid") != uid]
                    self._commit(r, obj, new, None)

    def _collect(self) -> None:
        """Garbage collection to a fixed point: dependents of removed owners, foreground
        owners whose dependents are gone, terminating namespaces that are empty."""
        changed = True
        while changed:
            changed = self._collect_dependents()
            changed = self._finish_owners() or changed

    def _collect_dependents(self) -> bool:
        """A dependent without a solid owner (present and not waiting for its dependents) is
        deleted (in the foreground if an owner waits for it); one with some solid owners only
        loses the other references."""
        waiting = {
            o["metadata"]["uid"]
            for objects in self._objects.values()
            for o in objects.values()
            if "foregroundDeletion" in (o["metadata"].get("finalizers") or [])
        }
        changed = False
        for r, objects in list(self._objects.items()):
            for key in list(objects):
                obj = objects.get(key)
                refs = [] if obj is None else obj["metadata"].get("ownerReferences") or []
                if obj is None or not refs:
                    continue
                meta = obj["metadata"]
                solid = [x for x in refs if x.get("uid") in self._uids and x["uid"] not in waiting]
                if not solid and not meta.get("deletionTimestamp"):
                    foreground = any(x.get("uid") in waiting for x in refs)
                    policy = "Foreground" if foreground else None
                    self.delete(r, meta["name"], meta.get("namespace"), propagation=policy)
                    changed = True
                elif solid and len(solid) < len(refs):
                    new = copy.deepcopy(obj)
                    new["metadata"]["ownerReferences"] = solid
                    self._commit(r, obj, new, None)
                    changed = True
        return changed

    def _finish_owners(self) -> bool:
        """Foreground owners without dependents lose their finalizer; empty terminating
        namespaces go."""
        referenced = {
            str(ref.get("uid"))
            for objects in self._objects.values()
            for o in objects.values()
            for ref in o["metadata"].get("ownerReferences") or []
        }
        changed = False
        for r, objects in list(self._objects.items()):
            for key in list(objects):
                obj = objects.get(key)
                if obj is None:
                    continue
                meta = obj["metadata"]
                fins = meta.get("finalizers") or []
                if "foregroundDeletion" in fins and meta["uid"] not in referenced:
                    new = copy.deepcopy(obj)
                    new["metadata"]["finalizers"] = [f for f in fins if f != "foregroundDeletion"]
                    self._commit(r, obj, new, None)
                    changed = True
                elif (
                    r.kind == "Namespace"
                    and meta.get("deletionTimestamp")
                    and not fins
                    and not self._namespace_has_content(meta["name"])
                ):
                    self._remove(r, key)
                    changed = True
        return changed

    def _namespace_has_content(self, namespace: str) -> bool:
        return any(
            key[0] == namespace
            for r, objects in self._objects.items()
            if r.namespaced
            for key in objects
        )
