"""`chidori kubernetes rbac`: the RBAC objects a `kubernetes` cluster needs, as YAML to apply.

Read from the cluster's settings in the server's config file (namespace, installation, the
drivers' and executors' service accounts), or given on the command line. Each rule carries a
comment naming the API calls that need it (see docs/kubernetes.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from chidori.backends.kubernetes.rbac import rbac_objects, rbac_yaml
from chidori.cli.args import ArgumentParser
from chidori.cli.output import Output
from chidori.config import ConfigError, load_settings


def add_parser(subparsers: argparse._SubParsersAction[ArgumentParser]) -> None:
    kube = subparsers.add_parser("kubernetes", help="what a kubernetes cluster needs")
    actions = kube.add_subparsers(dest="action", metavar="ACTION", required=True)
    rbac = actions.add_parser(
        "rbac", help="print the service accounts, Roles and bindings to apply (YAML)"
    )
    rbac.add_argument("--cluster", metavar="NAME", help="a kubernetes cluster of the config")
    rbac.add_argument(
        "--config", type=Path, metavar="FILE", help="config file (or $CHIDORI_CONFIG)"
    )
    rbac.add_argument(
        "--namespace", metavar="NS", help="the jobs' namespace (default: the cluster's)"
    )
    rbac.add_argument("--installation", metavar="NAME", help="the installation label's value")
    rbac.add_argument("--driver-account", metavar="SA", help="the drivers' service account")
    rbac.add_argument("--executor-account", metavar="SA", help="the executors' service account")
    rbac.add_argument(
        "--no-node-aware",
        action="store_true",
        help="leave out the read-only ClusterRole (nodes, pods) node-aware admission reads",
    )
    rbac.set_defaults(handler=run_rbac)


def run_rbac(ns: argparse.Namespace, out: Output) -> int:
    namespace, installation = ns.namespace, ns.installation
    driver, executor = ns.driver_account, ns.executor_account
    if ns.cluster:
        try:
            settings = load_settings(os.environ, ns.config)
        except ConfigError as exc:
            out.error(str(exc))
            return 1
        cluster = settings.clusters.get(ns.cluster)
        if cluster is None or cluster.kubernetes is None:
            out.error(f"no kubernetes cluster {ns.cluster!r} in the config")
            return 2
        kube = cluster.kubernetes
        namespace = namespace or kube.namespace
        installation = installation or kube.installation
        driver = driver or kube.driver_service_account
        executor = executor or kube.service_account
    sys.stdout.write(
        rbac_yaml(
            rbac_objects(
                namespace or "default",
                installation or "chidori",
                driver_account=driver,
                executor_account=executor,
                node_aware=not ns.no_node_aware,
            )
        )
    )
    return 0
