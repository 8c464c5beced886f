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

from models.errors import InvsyncError
from streams.kafka import KafkaUnavailable, aiokafka_kwargs, check_connection
from streams.kafka import bootstrap_list as bootstrap_list
from streams.settings import Settings

log = logging.getLogger(__name__)

COMPACTED = {"cleanup.policy": "compact"}


class TopicError(InvsyncError, RuntimeError):
    """A topic could not be created."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


TABLES = ("inventory-state", "pushed-versions", "orders-retry", "shipments", "callback-results")
"""The worker's Faust tables; each has a compacted `{app id}-{table}-changelog` topic."""
CONSOLIDATION_TABLE = "consolidated-state"
"""The consolidation stage's table (with `INVSYNC_CONSOLIDATED`)."""


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic invsync reads or writes (DESIGN.md "Topics").

    The tables' changelog topics are created here too, before Faust starts: created by
    Faust's producer just before the first assignment, a changelog missing from the
    leader's metadata was left out of the assignment ("Ignoring missing topic") and the
    worker could hang before it was ever ready.
    """
    n = settings.topic_partitions
    tables = [*TABLES, CONSOLIDATION_TABLE] if settings.consolidated else TABLES
    changelogs = [TopicSpec(f"{settings.app_id}-{t}-changelog", n, COMPACTED) for t in tables]
    consolidation = (
        [
            # Not compacted: it carries every location's records under the SKU's key.
            TopicSpec(settings.topic_inventory_by_sku, n),
            TopicSpec(settings.topic_inventory_consolidated, n, COMPACTED),
        ]
        if settings.consolidated
        else []
    )
    return [
        *changelogs,
        *consolidation,
        TopicSpec(settings.topic_stock_events, n),
        TopicSpec(settings.topic_commands, n),
        TopicSpec(settings.topic_orders, n),
        TopicSpec(settings.topic_shipments, n, COMPACTED),
        TopicSpec(settings.topic_inventory, n, COMPACTED),
        TopicSpec(settings.topic_order_updates, n),
        TopicSpec(settings.topic_dead_letters, n),
    ]


async def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics; return the names created. Existing ones are left alone.

    Checks the connection first: the worker's first contact with Kafka, so a broker
    it cannot reach stops it with one line (`KafkaUnavailable`).
    """
    await check_connection(settings)
    admin = AIOKafkaAdminClient(
        **aiokafka_kwargs(settings), request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        try:
            await asyncio.wait_for(admin.start(), timeout_s)
        except TimeoutError:
            raise KafkaUnavailable(
                f"Kafka at {settings.kafka_bootstrap_servers} answered, but the brokers it "
                f"advertises did not within {timeout_s:g} s (their advertised.listeners?)"
            ) from None
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
