"""`make chart`: render Chidori's Helm chart with Helm itself, lint it, validate every object.

Helm v4 runs as a library (`helm-python-sdk`, import `helm_python`): no `helm` binary. The
chart's RBAC rules come from `chidori.backends.kubernetes.rbac` (the API calls the backend makes)
through `deploy/helm/chidori/files/rbac-rules.yaml`, which this script writes (`--write-rbac`)
and checks is current. Each rendered template goes to `build/chart/<template>.yaml`; each object
is validated with kubernetes-validate in strict mode for every Kubernetes version supported.

    python scripts/chart.py [-f values.yaml] [--out build/chart] [--write-rbac]
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate  # type: ignore[import-untyped]
import yaml

from chidori.backends.kubernetes import rbac

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "deploy" / "helm" / "chidori"
RBAC_RULES = CHART / "files" / "rbac-rules.yaml"
# The newest three versions kubernetes-validate ships schemas for (and Chart.yaml's kubeVersion).
KUBE_VERSIONS = ("1.35.0", "1.36.0", "1.37.0")
# Kinds outside Kubernetes' own schemas (the Prometheus Operator's CRD), left unvalidated.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
LINT_ERROR = 3


def rbac_rules_text() -> str:
    """The chart's RBAC rules file: each rule of rbac.py, under the comment saying why."""
    sections: dict[str, Sequence[rbac.Rule]] = {
        "spark": rbac.SPARK_RULES,
        "events": [rbac.EVENTS_RULE],
        "token": [rbac.TOKEN_RULE],
        "capacity": [rbac.NODES_RULE, rbac.BOUND_PODS_RULE],
    }
    text = (
        "# Generated from src/chidori/backends/kubernetes/rbac.py by `scripts/chart.py"
        " --write-rbac`: do not edit.\n# spark: the drivers' rules (and the server's); events,"
        " token: the server's; capacity: the ClusterRole's.\n"
    )
    for section, rules in sections.items():
        text += f"{section}:\n"
        for rule in rules:
            text += "".join(f"  # {line}\n" for line in textwrap.wrap(rule.why, 94))
            dumped = yaml.safe_dump(
                [rule.to_object()], sort_keys=False, default_flow_style=None, width=1000
            )
            text += textwrap.indent(dumped, "  ")
    return text


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the ConfigMap's config file) as YAML blocks, readable in build/."""


_BlockDumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None
    ),
)


def render(
    values: Mapping[str, Any] | None = None, *, name: str = "chidori", namespace: str = "chidori"
) -> dict[str, list[dict[str, Any]]]:
    """Template path → the objects it renders (empty templates and NOTES.txt left out).
    Helm checks the values against values.schema.json first (HelmValuesError naming the key)."""
    chart = helm_python.Chart.load(CHART)
    try:
        manifests = chart.render(
            dict(values or {}), name=name, namespace=namespace, is_install=True
        )
    finally:
        chart.close()
    rendered: dict[str, list[dict[str, Any]]] = {}
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects = [obj for obj in yaml.safe_load_all(text) if obj]
        if objects:
            rendered[path] = objects
    return rendered


def validation_errors(
    objects: Sequence[Mapping[str, Any]], versions: Sequence[str] = KUBE_VERSIONS
) -> list[str]:
    """What kubernetes-validate --strict says about each object, for each version."""
    errors = []
    for obj in objects:
        if (obj.get("apiVersion"), obj.get("kind")) in CUSTOM_KINDS:
            continue
        plain = json.loads(json.dumps(obj))
        for version in versions:
            try:
                kubernetes_validate.validate(plain, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
                errors.append(f"{where} (Kubernetes {version}): {exc.message}")
    return errors


def lint_errors(values: Mapping[str, Any] | None = None) -> list[str]:
    report = helm_python.lint(CHART, dict(values or {}), strict=True)
    messages = [
        f"{m.get('path')}: {m.get('error')}"
        for m in report.get("messages") or []
        if m.get("severity", 0) >= LINT_ERROR
    ]
    return messages + list(report.get("errors") or [])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--values", type=Path, help="a values file (default: the chart's)")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "chart")
    parser.add_argument("--write-rbac", action="store_true", help="regenerate " + RBAC_RULES.name)
    args = parser.parse_args(argv)
    if args.write_rbac:
        RBAC_RULES.write_text(rbac_rules_text())
    elif RBAC_RULES.read_text() != rbac_rules_text():
        print(f"{RBAC_RULES} differs from rbac.py: run scripts/chart.py --write-rbac")
        return 1
    values = yaml.safe_load(args.values.read_text()) if args.values else {}
    try:
        rendered = render(values)
    except helm_python.HelmError as exc:
        print(f"chart does not render: {exc}")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.yaml"):
        old.unlink()
    for path, objects in rendered.items():
        target = args.out / Path(path).name
        target.write_text(yaml.dump_all(objects, Dumper=_BlockDumper, sort_keys=False))
    problems = lint_errors(values)
    every = [obj for objects in rendered.values() for obj in objects]
    problems += validation_errors(every)
    for problem in problems:
        print(problem)
    print(
        f"{len(every)} objects from {len(rendered)} templates in {args.out}; lint and "
        f"kubernetes-validate --strict ({', '.join(KUBE_VERSIONS)}): "
        + ("ok" if not problems else f"{len(problems)} problems")
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
