"""The worker's own pages: liveness, readiness and metrics (DESIGN.md path table)."""

from __future__ import annotations

from typing import Protocol

import faust
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from streams.metrics import render


class Readiness(Protocol):
    async def not_ready(self) -> str | None:
        """Why the worker is not ready, or None."""


def install_views(app: faust.App, registry: CollectorRegistry, readiness: Readiness) -> None:
    @app.page("/health")
    class Health(View):
        """Liveness: the process and its event loop answer."""

        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    @app.page("/ready")
    class Ready(View):
        """Readiness: broker reachable, partitions assigned, tables restored."""

        async def get(self, request: Request) -> Response:
            reason = await readiness.not_ready()
            if reason is None:
                return self.json({"status": "ready"})
            return self.json({"status": "not ready", "reason": reason}, status=503)

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            body, content_type = render(registry)
            return self.bytes(body, content_type=content_type)
