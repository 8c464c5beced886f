"""Topic declarations: names from settings, created up front with the right configs.

Faust does not create source topics, and a broker's auto-creation would give them
the wrong partition count (tables must be co-partitioned with their source), so the
worker creates every topic it uses before it starts consuming.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.settings import Settings

log = logging.getLogger(__name__)

COMPACTED = {"cleanup.policy": "compact"}


class TopicError(RuntimeError):
    """A topic could not be created."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic invsync reads or writes (DESIGN.md "Topics")."""
    n = settings.topic_partitions
    return [
        TopicSpec(settings.topic_stock_events, n),
        TopicSpec(settings.topic_commands, n),
        TopicSpec(settings.topic_orders, n),
        TopicSpec(settings.topic_shipments, n, COMPACTED),
        TopicSpec(settings.topic_inventory, n, COMPACTED),
        TopicSpec(settings.topic_order_updates, n),
        TopicSpec(settings.topic_dead_letters, n),
    ]


def bootstrap_list(servers: str) -> list[str]:
    return [s.strip() for s in servers.split(",") if s.strip()]


async def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics; return the names created. Existing ones are left alone."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_list(settings.kafka_bootstrap_servers),
        request_timeout_ms=int(timeout_s * 1000),
    )
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        existing = set(await admin.list_topics())
        wanted = [s for s in topic_specs(settings) if s.name not in existing]
        created: list[str] = []
        if wanted:
            response = await admin.create_topics(
                [
                    NewTopic(
                        s.name, s.partitions, settings.topic_replication, topic_configs=s.configs
                    )
                    for s in wanted
                ]
            )
            for name, code, *rest in response.topic_errors:
                if code == 0:
                    created.append(name)
                elif code != TopicAlreadyExistsError.errno:
                    detail = rest[0] if rest and rest[0] else f"error code {code}"
                    raise TopicError(f"could not create topic {name!r}: {detail}")
        if created:
            log.info("created topics: %s", ", ".join(created))
        return created
    finally:
        await admin.close()
