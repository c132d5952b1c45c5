"""The three PATCH formats of the Kubernetes API, applied to plain JSON objects.

- `application/merge-patch+json`: RFC 7386 (JSON Merge Patch): objects merge recursively,
  `null` deletes a key, any other value (lists included) replaces.
- `application/json-patch+json`: RFC 6902 (add, remove, replace, move, copy, test) with
  RFC 6901 pointers (`~0`, `~1`, `-` to append).
- `application/strategic-merge-patch+json`: Kubernetes' strategic merge patch, APPROXIMATED:
  like a merge patch, except that lists whose field name is in `MERGE_KEYS` merge element by
  element on that key (containers, initContainers, ephemeralContainers, env, volumes and
  imagePullSecrets by `name`; volumeMounts by `mountPath`; container ports by
  `containerPort`, service ports by `port`; ownerReferences by `uid`; conditions and node
  addresses by `type`; taints by `key`; hostAliases by `ip`), and `finalizers` merges as a set.
  Directives: `$patch: replace` (map or list element list), `$patch: delete` (a list element,
  by its merge key, or a whole map), `$retainKeys`, `$deleteFromPrimitiveList/<field>`; the
  `$setElementOrder/<field>` directive is accepted and dropped (new elements are appended, the
  order it asks for is not applied). The real patch strategy comes from the Go struct tags of
  each type; here it is keyed by field name alone, whatever the enclosing type, so a field of
  the same name elsewhere would merge too. Unknown list fields are replaced, as for atomic
  lists.
- `application/apply-patch+yaml` (server-side apply) is handled by the API server module as
  a strategic merge of the applied object, without field managers or conflicts.
"""

from __future__ import annotations

import copy
from typing import Any

MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ownerReferences": "uid",
    "conditions": "type",
    "addresses": "type",
    "taints": "key",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
SET_LISTS = {"finalizers"}


class PatchError(ValueError):
    """The patch cannot be applied; `test_failed` marks a failed RFC 6902 `test` operation."""

    def __init__(self, message: str, *, test_failed: bool = False) -> None:
        super().__init__(message)
        self.test_failed = test_failed


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---- strategic merge patch -------------------------------------------------------------------


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        sample = next((i for i in items if isinstance(i, dict)), {})
        return "containerPort" if "containerPort" in sample else "port"
    return MERGE_KEYS.get(field)


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Apply a strategic merge patch (see the module docstring for what is approximated)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [v for v in result.get(field) or [] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = value
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(field: str, stored: Any, patch: list[Any]) -> list[Any]:
    current: list[Any] = list(stored) if isinstance(stored, list) else []
    if field in SET_LISTS:
        return current + [v for v in patch if v not in current]
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    key = _merge_key(field, patch + current)
    if key is None or not all(isinstance(i, dict) for i in patch):
        return copy.deepcopy(patch)
    out = [copy.deepcopy(i) for i in current]
    for item in patch:
        index = next(
            (n for n, e in enumerate(out) if isinstance(e, dict) and e.get(key) == item.get(key)),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del out[index]
        elif index is None:
            out.append(strategic_merge_patch({}, item))
        else:
            out[index] = strategic_merge_patch(out[index], item)
    return out


# ---- JSON patch ------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> tuple[Any, str]:
    cur = doc
    for part in parts[:-1]:
        cur = _child(cur, part)
    return cur, parts[-1]


def _child(container: Any, part: str) -> Any:
    try:
        if isinstance(container, list):
            return container[int(part)]
        if isinstance(container, dict):
            return container[part]
    except (KeyError, IndexError, ValueError):
        pass
    raise PatchError(f"doc is missing path: {part!r}")


def _get(doc: Any, path: str) -> Any:
    cur = doc
    for part in _pointer(path):
        cur = _child(cur, part)
    return cur


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent, last = _parent(doc, parts)
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            index = int(last) if last.isdigit() else -1
            if not 0 <= index <= len(parent):
                raise PatchError(f"index out of range: {path}")
            parent.insert(index, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise PatchError(f"cannot add at {path}")
    return doc


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent, last = _parent(doc, parts)
    try:
        if isinstance(parent, list):
            del parent[int(last)]
        elif isinstance(parent, dict):
            del parent[last]
        else:
            raise PatchError(f"cannot remove {path}")
    except (KeyError, IndexError, ValueError) as exc:
        raise PatchError(f"unable to remove nonexistent key: {path}") from exc
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902: apply `operations` (a list) to a copy of `target`."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid operation {op!r}")
        kind, path = op["op"], str(op["path"])
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            doc = (
                _add(_remove(doc, path), path, copy.deepcopy(op.get("value")))
                if path
                else op.get("value")
            )
        elif kind in ("move", "copy"):
            source = str(op.get("from", ""))
            value = copy.deepcopy(_get(doc, source))
            if kind == "move":
                doc = _remove(doc, source)
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise PatchError(f"testing value {path} failed", test_failed=True)
        else:
            raise PatchError(f"unexpected operation {kind!r}")
    return doc
