"""Label selectors, field selectors and node selector terms, as the Kubernetes API documents them.

Label selectors (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/):
equality (`k=v`, `k==v`, `k!=v`), set-based (`k in (a,b)`, `k notin (a,b)`), existence (`k`,
`!k`), and the `k>N` / `k<N` integer comparisons that `labels.Parse` also accepts; a comma is
AND. `!=` and `notin` also match objects without the key, as documented.

Field selectors (https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/):
`field=value`, `field==value`, `field!=value`, comma = AND, backslash escapes. Which fields a
kind supports is the caller's list (see `resources.py`); an unknown one is an error, as on the
real server.

Node selector terms (pod `spec.affinity.nodeAffinity.requiredDuringScheduling...`): OR over
terms, AND over a term's `matchExpressions` (In, NotIn, Exists, DoesNotExist, Gt, Lt) and
`matchFields` (only `metadata.name`, as in Kubernetes).

Not modelled: label key/value syntax validation beyond the characters the tokenizer accepts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(r"\s*(!=|==|=|!|\(|\)|,|>|<|[A-Za-z0-9._/\-]+)")


class SelectorError(ValueError):
    """The selector does not parse; the API server answers 400 BadRequest with this text."""


@dataclass(frozen=True)
class Requirement:
    """One label requirement: `op` is one of =, !=, in, notin, exists, !, gt, lt."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        if self.op in ("=", "in"):
            return has and value in self.values
        if self.op in ("!=", "notin"):
            return not has or value not in self.values
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in ("gt", "lt"):
            try:
                number = int(value or "")
            except ValueError:
                return False
            bound = int(self.values[0])
            return number > bound if self.op == "gt" else number < bound
        raise AssertionError(self.op)


@dataclass(frozen=True)
class LabelSelector:
    """A parsed label selector; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        return all(r.matches(labels or {}) for r in self.requirements)


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        found = _TOKEN.match(text, pos)
        if found is None:
            raise SelectorError(f"unable to parse requirement: found '{text[pos:]}'")
        out.append(found.group(1))
        pos = found.end()
    return out


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse a `labelSelector` query value."""
    tokens = _tokens(text or "")
    reqs: list[Requirement] = []
    i = 0

    def take() -> str:
        nonlocal i
        if i >= len(tokens):
            raise SelectorError(f"unable to parse requirement: unexpected end in {text!r}")
        i += 1
        return tokens[i - 1]

    while i < len(tokens):
        token = take()
        if token == "!":
            reqs.append(Requirement(take(), "!"))
        else:
            key = token
            nxt = tokens[i] if i < len(tokens) else ","
            if nxt == ",":
                reqs.append(Requirement(key, "exists"))
            elif nxt in ("=", "==", "!="):
                take()
                value = tokens[i] if i < len(tokens) and tokens[i] != "," else ""
                if value:
                    take()
                reqs.append(Requirement(key, "!=" if nxt == "!=" else "=", (value,)))
            elif nxt in ("in", "notin"):
                take()
                if take() != "(":
                    raise SelectorError(f"unable to parse requirement: expected '(' in {text!r}")
                values: list[str] = []
                while True:
                    item = take()
                    if item == ")":
                        break
                    if item != ",":
                        values.append(item)
                reqs.append(Requirement(key, nxt, tuple(values)))
            elif nxt in (">", "<"):
                take()
                bound = take()
                if not bound.lstrip("-").isdigit():
                    raise SelectorError(f"unable to parse requirement: {bound!r} is not an integer")
                reqs.append(Requirement(key, "gt" if nxt == ">" else "lt", (bound,)))
            else:
                raise SelectorError(f"unable to parse requirement: found '{nxt}' in {text!r}")
        if i < len(tokens):
            if tokens[i] != ",":
                raise SelectorError(f"found '{tokens[i]}', expected: ',' or 'end of string'")
            i += 1
    return LabelSelector(tuple(reqs))


def selector_from_match(match_labels: Mapping[str, str], expressions: Iterable[Any]) -> str:
    """The query form of a `LabelSelector` object (`matchLabels` + `matchExpressions`)."""
    parts = [f"{k}={v}" for k, v in match_labels.items()]
    for e in expressions:
        op = str(e.get("operator", ""))
        values = ",".join(e.get("values") or [])
        key = e["key"]
        parts.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})"}.get(op)
            or (key if op == "Exists" else f"!{key}")
        )
    return ",".join(parts)


# ---- field selectors -------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSelector:
    """A parsed field selector: (field, op, value) triples, op '=' or '!='."""

    terms: tuple[tuple[str, str, str], ...] = ()

    def fields(self) -> list[str]:
        return [t[0] for t in self.terms]

    def matches(
        self, obj: Mapping[str, Any], value_of: Callable[[Mapping[str, Any], str], str]
    ) -> bool:
        for field, op, value in self.terms:
            actual = value_of(obj, field)
            if (actual == value) != (op == "="):
                return False
        return True


def _split_unescaped(text: str, sep: str) -> list[str]:
    out, cur, escaped = [], "", False
    for ch in text:
        if escaped:
            cur += ch
            escaped = False
        elif ch == "\\":
            cur += ch
            escaped = True
        elif ch == sep:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_field_selector(text: str | None) -> FieldSelector:
    """Parse a `fieldSelector` query value."""
    terms: list[tuple[str, str, str]] = []
    for part in _split_unescaped(text or "", ","):
        if not part.strip():
            continue
        for op in ("!=", "==", "="):
            pieces = _split_op(part, op)
            if pieces is not None:
                terms.append((pieces[0].strip(), "!=" if op == "!=" else "=", _unescape(pieces[1])))
                break
        else:
            raise SelectorError(f"invalid selector: '{part}'; can't understand '{part}'")
    return FieldSelector(tuple(terms))


def _split_op(part: str, op: str) -> tuple[str, str] | None:
    i = 0
    while i < len(part):
        if part[i] == "\\":
            i += 2
            continue
        if part.startswith(op, i):
            if op == "=" and (part[i - 1 : i] == "!" or part[i + 1 : i + 2] == "="):
                return None
            return part[:i], part[i + len(op) :]
        i += 1
    return None


def field_value(obj: Mapping[str, Any], field: str) -> str:
    """The string a field selector compares: dotted path, booleans as true/false, missing = ''."""
    if field == "source":  # events: source means source.component
        field = "source.component"
    cur: Any = obj
    for part in field.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


# ---- node selector terms ---------------------------------------------------------------------


def _expression_matches(expr: Mapping[str, Any], values_of: Mapping[str, str]) -> bool:
    key = str(expr.get("key", ""))
    op = str(expr.get("operator", ""))
    wanted = [str(v) for v in expr.get("values") or []]
    has = key in values_of
    value = values_of.get(key, "")
    if op == "In":
        return has and value in wanted
    if op == "NotIn":
        return not has or value not in wanted
    if op == "Exists":
        return has
    if op == "DoesNotExist":
        return not has
    if op in ("Gt", "Lt") and has and wanted:
        try:
            number, bound = int(value), int(wanted[0])
        except ValueError:
            return False
        return number > bound if op == "Gt" else number < bound
    return False


def node_selector_terms_match(terms: Iterable[Mapping[str, Any]], node: Mapping[str, Any]) -> bool:
    """Whether `node` satisfies any of `terms` (an empty term matches nothing, as documented)."""
    labels = node.get("metadata", {}).get("labels") or {}
    fields = {"metadata.name": str(node.get("metadata", {}).get("name", ""))}
    for term in terms:
        exprs = list(term.get("matchExpressions") or [])
        field_exprs = list(term.get("matchFields") or [])
        if not exprs and not field_exprs:
            continue
        if all(_expression_matches(e, labels) for e in exprs) and all(
            _expression_matches(e, fields) for e in field_exprs
        ):
            return True
    return False
