from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from partnerloop.core.clock import utcnow
from partnerloop.integrations.registry import DELIVERY_KINDS
from partnerloop.runtime import Runtime
from partnerloop.sync import service as sync
from partnerloop.web.deps import RuntimeDep
from partnerloop.web.problems import problem

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """200 while the process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
def readyz(runtime: RuntimeDep) -> dict[str, str] | Response:
    """200 when the database answers; 503 otherwise."""
    try:
        with runtime.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        return problem(
            503,
            code="database_unavailable",
            title="Not ready",
            detail="The database does not answer.",
        )
    return {"status": "ready"}


SYNC_GAUGES = (
    ("partnerloop_delivery_backlog", "Messages waiting for an outgoing connector", "backlog"),
    ("partnerloop_delivery_dead", "Dead-lettered messages of an outgoing connector", "dead"),
    (
        "partnerloop_delivery_latency_p50_seconds",
        "Median sync time, event to remote acceptance, last 24 h",
        "latency_p50_ms",
    ),
    (
        "partnerloop_delivery_latency_p95_seconds",
        "95th percentile sync time, event to remote acceptance, last 24 h",
        "latency_p95_ms",
    ),
)


def sync_metrics(runtime: Runtime) -> str:
    """Per-connector sync gauges, read from the database at scrape time (so every
    worker process's deliveries count, not only this process's)."""
    with runtime.sessions() as session:
        stats = sync.destination_stats(
            session, kinds=list(DELIVERY_KINDS), program_id=None, now=utcnow()
        )
    lines = []
    for name, help_text, attribute in SYNC_GAUGES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for item in stats:
            value = getattr(item, attribute)
            if value is None:
                continue
            if attribute.endswith("_ms"):
                value = value / 1000
            labels = f'kind="{item.destination_kind}",connector="{item.destination_id}"'
            lines.append(f"{name}{{{labels}}} {value}")
    return "\n".join(lines) + "\n"


@router.get("/metrics", include_in_schema=False)
def metrics(runtime: RuntimeDep) -> Response:
    body = generate_latest().decode() + sync_metrics(runtime)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
