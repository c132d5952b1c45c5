"""The syntax of what Kubernetes checks: names, quantities and the objects Chidori passes through.

Pure functions and tables, no I/O. The shapes (`AFFINITY`, `TOLERATION`, `POD_SECURITY_CONTEXT`,
`CONTAINER_SECURITY_CONTEXT`) follow the Kubernetes 1.32 API: the fields, their types and the
enumerations the JSON schema leaves to the API server, so a typo in the settings file stops the
start with the field's path instead of failing every executor pod later.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

Obj = Mapping[str, Any]


class ShapeError(ValueError):
    """A value that is not what Kubernetes takes there: `at` is its path, `reason` why."""

    def __init__(self, at: str, reason: str) -> None:
        super().__init__(f"{at}: {reason}")
        self.at, self.reason = at, reason


_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def parse_quantity(value: str | int | float) -> Decimal:
    """A Kubernetes quantity (`500m`, `2`, `1.5`, `1Gi`, `1500Mi`, `1G`, `1e3`) as a Decimal."""
    if isinstance(value, bool):
        raise ValueError("must be a Kubernetes quantity such as 500m, 2 or 1Gi")
    match = _QUANTITY.match(str(value).strip())
    if not match:
        hint = " (20Gi or 20G, not 20g)" if re.search(r"\d[gmt]i?b?$", str(value)) else ""
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as 500m, 2 or 1Gi{hint}")
    number = Decimal(match.group(1))
    suffix = match.group(2) or ""
    if suffix in _BINARY:
        return number * Decimal(1024) ** _BINARY[suffix]
    if suffix in _DECIMAL:
        return number.scaleb(_DECIMAL[suffix])
    return number.scaleb(int(suffix[1:])) if suffix else number


def is_label_key(key: str) -> bool:
    """A qualified name: an optional DNS-subdomain prefix and `/`, then a name of 63 or less."""
    prefix, slash, name = key.rpartition("/")
    return bool(_NAME.match(name)) and (not slash or bool(_DNS_SUBDOMAIN.match(prefix)))


def is_label_value(value: str) -> bool:
    return value == "" or bool(_NAME.match(value))


def is_dns_label(value: str) -> bool:
    return bool(_DNS_LABEL.match(value))


def is_dns_subdomain(value: str) -> bool:
    return bool(_DNS_SUBDOMAIN.match(value))


# --- The shape of the Kubernetes objects passed through (Kubernetes 1.32 API) ------------------
# A spec is a type (str, int, bool), a tuple of allowed strings, a one-item list (a list of that),
# `_STRMAP` (strings to strings) or a dict of fields, a trailing "!" marking a required field and
# "__check__" holding a function for what the fields alone cannot say.

_STRMAP = "string map"


def _requirement(ops_with_values: tuple[str, ...]) -> Callable[[Mapping[str, Any], str], None]:
    def check(value: Mapping[str, Any], at: str) -> None:
        operator = value["operator"]
        if operator in ops_with_values and not value.get("values"):
            raise ShapeError(f"{at}.values", f"operator {operator} needs values")
        if operator in ("Exists", "DoesNotExist") and value.get("values"):
            raise ShapeError(f"{at}.values", f"operator {operator} takes no values")

    return check


def _weight(value: Mapping[str, Any], at: str) -> None:
    if not 1 <= value["weight"] <= 100:
        raise ShapeError(f"{at}.weight", "must be between 1 and 100")


def _toleration(value: Mapping[str, Any], at: str) -> None:
    operator = value.get("operator", "Equal")
    if operator == "Exists" and value.get("value"):
        raise ShapeError(f"{at}.value", "must be empty when operator is Exists")
    if not value.get("key") and operator != "Exists":
        raise ShapeError(f"{at}.operator", "must be Exists when key is empty")
    if "tolerationSeconds" in value and value.get("effect") != "NoExecute":
        raise ShapeError(f"{at}.tolerationSeconds", "is allowed only with effect NoExecute")


_OPS = ("In", "NotIn", "Exists", "DoesNotExist")
_NODE_REQ = {"key!": str, "operator!": (*_OPS, "Gt", "Lt"), "values": [str]}
_NODE_REQ["__check__"] = _requirement(("In", "NotIn", "Gt", "Lt"))
_NODE_TERM = {"matchExpressions": [_NODE_REQ], "matchFields": [_NODE_REQ]}
_LABEL_REQ = {"key!": str, "operator!": _OPS, "values": [str], "__check__": _requirement(_OPS[:2])}
_SELECTOR = {"matchLabels": _STRMAP, "matchExpressions": [_LABEL_REQ]}
_POD_TERM = {
    "labelSelector": _SELECTOR,
    "namespaceSelector": _SELECTOR,
    "namespaces": [str],
    "topologyKey!": str,
    "matchLabelKeys": [str],
    "mismatchLabelKeys": [str],
}
_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
_PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"
_POD_AFFINITY = {
    _REQUIRED: [_POD_TERM],
    _PREFERRED: [{"weight!": int, "podAffinityTerm!": _POD_TERM, "__check__": _weight}],
}
AFFINITY: Obj = {
    "nodeAffinity": {
        _REQUIRED: {"nodeSelectorTerms!": [_NODE_TERM]},
        _PREFERRED: [{"weight!": int, "preference!": _NODE_TERM, "__check__": _weight}],
    },
    "podAffinity": _POD_AFFINITY,
    "podAntiAffinity": _POD_AFFINITY,
}
TOLERATION: Obj = {
    "key": str,
    "operator": ("Exists", "Equal"),
    "value": str,
    "effect": ("NoSchedule", "PreferNoSchedule", "NoExecute", ""),
    "tolerationSeconds": int,
    "__check__": _toleration,
}
_PROFILE = {"type!": ("RuntimeDefault", "Unconfined", "Localhost"), "localhostProfile": str}
_SELINUX = {"user": str, "role": str, "type": str, "level": str}
_WINDOWS = {"gmsaCredentialSpecName": str, "gmsaCredentialSpec": str, "runAsUserName": str}
_COMMON = {
    "runAsUser": int,
    "runAsGroup": int,
    "runAsNonRoot": bool,
    "seccompProfile": _PROFILE,
    "appArmorProfile": _PROFILE,
    "seLinuxOptions": _SELINUX,
    "windowsOptions": {**_WINDOWS, "hostProcess": bool},
}
POD_SECURITY_CONTEXT: Obj = {
    **_COMMON,
    "fsGroup": int,
    "fsGroupChangePolicy": ("OnRootMismatch", "Always"),
    "supplementalGroups": [int],
    "supplementalGroupsPolicy": ("Merge", "Strict"),
    "seLinuxChangePolicy": ("MountOption", "Recursive"),
    "sysctls": [{"name!": str, "value!": str}],
}
CONTAINER_SECURITY_CONTEXT: Obj = {
    **_COMMON,
    "allowPrivilegeEscalation": bool,
    "privileged": bool,
    "readOnlyRootFilesystem": bool,
    "procMount": ("Default", "Unmasked"),
    "capabilities": {"add": [str], "drop": [str]},
}
_SCALARS: dict[Any, str] = {bool: "true or false", int: "a whole number", str: "a string"}


def check_shape(value: Any, spec: Any, at: str) -> Any:
    """A copy of `value` if it has the shape `spec` describes, else ShapeError naming the
    first bad field (`at` is the path so far, as the settings file spells it)."""
    if isinstance(spec, type):
        if isinstance(value, spec) and (spec is bool or not isinstance(value, bool)):
            return value
        quote = " (quote it)" if spec is str and isinstance(value, bool | int | float) else ""
        raise ShapeError(at, f"must be {_SCALARS[spec]}{quote}, not {value!r}")
    if isinstance(spec, tuple):
        if value not in spec:
            raise ShapeError(
                at, f"must be one of {', '.join(repr(s) for s in spec)}, not {value!r}"
            )
        return value
    if isinstance(spec, list):
        if not isinstance(value, list):
            raise ShapeError(at, "must be a list")
        return [check_shape(item, spec[0], f"{at}[{i}]") for i, item in enumerate(value)]
    if not isinstance(value, Mapping):
        raise ShapeError(at, "must be a mapping")
    if spec == _STRMAP:
        return {str(k): check_shape(v, str, f"{at}.{k}") for k, v in value.items()}
    known = {name.rstrip("!"): kind for name, kind in spec.items() if name != "__check__"}
    for name in spec:
        if name.endswith("!") and name[:-1] not in value:
            raise ShapeError(f"{at}.{name[:-1]}", "is required")
    checked = {}
    for key, item in value.items():
        if key not in known:
            raise ShapeError(f"{at}.{key}", f"is not a field here; use {', '.join(sorted(known))}")
        checked[str(key)] = check_shape(item, known[key], f"{at}.{key}")
    if "__check__" in spec:
        spec["__check__"](checked, at)
    return checked
