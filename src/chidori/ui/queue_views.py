"""What the queues page shows (capacity, warm drivers, queues, server replicas), and its live
sections: the parts queues_live.js patches in place, rendered by the same partials as the
page, so a patched page equals a reloaded one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment

from chidori.services.admission import AdmissionService
from chidori.services.identity import Actor
from chidori.ui import views

SERVER_ALIVE_SECONDS = 30.0
QUEUE_SECTIONS = {
    "capacity-rows": "_queues_capacity.html",
    "warm-held": "_queues_warm.html",
    "waiting-count": "_queues_waiting.html",
    "queue-rows": "_queues_rows.html",
    "server-rows": "_queues_servers.html",
}
"""Element id on the queues page -> the partial that renders its content."""


def queues_context(admission: AdmissionService, actor: Actor) -> dict[str, Any]:
    """Everything the queues page and its live sections show, read now."""
    capacity = admission.capacity(actor)
    now = datetime.now(UTC)
    scopes = [views.scope_row("All clusters", capacity.total.limit, capacity.total.reserved)]
    scopes += [
        views.scope_row(f"Cluster {name}", scope.limit, scope.reserved)
        for name, scope in capacity.clusters.items()
    ]
    servers = [
        (s, (now - s.heartbeat_at).total_seconds() < SERVER_ALIVE_SECONDS)
        for s in admission.servers(actor)
    ]
    drivers = [d for pool in admission.warm_pools(actor) for d in pool.drivers]
    return {
        "scopes": scopes,
        "waiting": capacity.waiting,
        "queues": admission.queues(actor),
        "servers": servers,
        "warm": views.warm_held(drivers),
        "now": now,
        "age": views.age,
    }


def render_queue_sections(env: Environment, context: dict[str, Any]) -> dict[str, str]:
    """Every live section of the queues page, as the page itself renders it."""
    return {
        element: env.get_template(name).render(context) for element, name in QUEUE_SECTIONS.items()
    }
