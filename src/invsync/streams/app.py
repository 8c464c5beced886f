"""The composition root: builds the Faust app, its topics, tables and agents from settings."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View

from invsync.streams.settings import Settings
from invsync.streams.topics import bootstrap_list


def faust_config(settings: Settings) -> dict[str, Any]:
    """Faust settings derived from ours (DESIGN.md "Running it")."""
    return {
        "id": settings.app_id,
        "broker": [f"kafka://{s}" for s in bootstrap_list(settings.kafka_bootstrap_servers)],
        "store": "memory://",
        "datadir": str(settings.data_dir),
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.topic_replication,
        "topic_allow_declare": True,
        "web_port": settings.web_port,
        "web_bind": settings.web_host,
        "web_in_thread": False,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "table_cleanup_interval": 3600.0,
    }


def raw_topic(app: faust.App, name: str, **kwargs: Any) -> faust.TopicT:
    """A topic carrying bytes: we decode with pydantic/orjson ourselves, never faust.Record."""
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        **kwargs,
    )


def create_app(settings: Settings) -> faust.App:
    app = faust.App(**faust_config(settings))
    stock_events = raw_topic(app, settings.topic_stock_events)
    inventory = raw_topic(app, settings.topic_inventory)

    @app.agent(stock_events, name="inventory")
    async def pass_through(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await inventory.send(key=event.key, value=event.value)

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    return app
