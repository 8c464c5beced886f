"""JSON Schemas of every topic's messages, generated from the wire models.

`docs/schemas/` holds what `topic_schemas()` returns (`make docs` writes it, a test
checks it), so integrators read the same definitions the worker validates with. Pure:
no I/O, imports only `models`. The prose contract is `docs/integrating.md`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from models.consolidation import ConsolidatedUpdate
from models.events import DeadLetter, InventoryCommand, InventoryUpdate, OrderEvent, StockEvent
from models.messages import ORDER_EVENT_PAYLOADS, ORDER_UPDATE_PAYLOADS, OrderUpdate, Shipment

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class TopicContract:
    """One topic as an integrator sees it: name, setting, key, and its message model."""

    name: str
    setting: str
    direction: Literal["input", "output", "internal"]
    key: str
    model: type[BaseModel]
    summary: str
    compacted: bool = False
    payloads: Mapping[str, tuple[type[BaseModel], ...]] = field(default_factory=dict)

    @property
    def mode(self) -> JsonSchemaMode:
        """Inputs are described as the worker validates them, outputs as it writes them."""
        return "serialization" if self.direction == "output" else "validation"

    @property
    def file(self) -> str:
        return f"{self.name.replace('{app id}-', '')}.json"


INVENTORY_KEY = "locationCode:channelSkuCode (UTF-8), e.g. WH1:SKU-42"

TOPICS: tuple[TopicContract, ...] = (
    TopicContract(
        name="warehouse.stock-events",
        setting="INVSYNC_TOPIC_STOCK_EVENTS",
        direction="input",
        key=INVENTORY_KEY + "; must match the value, or the event is dead-lettered",
        model=StockEvent,
        summary="Stock changes from warehouse systems: DELTA (signed change of on-hand) or "
        "SNAPSHOT (absolute figure). Produce with Kafka's default (murmur2) partitioner.",
    ),
    TopicContract(
        name="marketplace.orders",
        setting="INVSYNC_TOPIC_ORDERS",
        direction="input",
        key="orderCode (returnOrderCode for returns)",
        model=OrderEvent,
        summary="Order lifecycle from the marketplace OMS; the payload is the Increff "
        "request body of the event's type.",
        payloads=ORDER_EVENT_PAYLOADS,
    ),
    TopicContract(
        name="marketplace.shipments",
        setting="INVSYNC_TOPIC_SHIPMENTS",
        direction="input",
        key="shipmentId",
        model=Shipment,
        compacted=True,
        summary="Shipments from the marketplace's logistics service once a carrier is "
        "allocated; they answer Increff's shipping-label and invoice requests.",
    ),
    TopicContract(
        name="marketplace.inventory",
        setting="INVSYNC_TOPIC_INVENTORY",
        direction="output",
        key=INVENTORY_KEY,
        model=InventoryUpdate,
        compacted=True,
        summary="Absolute, versioned available-to-promise per key: quantity = "
        "max(0, onHand - reserved - safetyStock). Keep the highest version per key, "
        "never the last offset; read from the start to get every key.",
    ),
    TopicContract(
        name="marketplace.inventory-consolidated",
        setting="INVSYNC_TOPIC_INVENTORY_CONSOLIDATED",
        direction="output",
        key="channelSkuCode (UTF-8), e.g. SKU-42",
        model=ConsolidatedUpdate,
        compacted=True,
        summary="With INVSYNC_CONSOLIDATED=true: absolute, versioned available-to-promise "
        "per SKU over all its locations: quantity = the sum of locations, each the quantity "
        "of that key's newest marketplace.inventory record. Coalesced, versioned and read "
        "like marketplace.inventory: keep the highest version per key.",
    ),
    TopicContract(
        name="marketplace.order-updates",
        setting="INVSYNC_TOPIC_ORDER_UPDATES",
        direction="output",
        key="orderCode (the forward order's, else returnOrderCode)",
        model=OrderUpdate,
        summary="What Increff did with the marketplace's orders (its callbacks), and "
        "orders Increff refused (INCREFF_REJECTED). Deduplicate on eventId.",
        payloads={k: (v,) for k, v in ORDER_UPDATE_PAYLOADS.items()},
    ),
    TopicContract(
        name="invsync.dead-letters",
        setting="INVSYNC_TOPIC_DEAD_LETTERS",
        direction="output",
        key="the original message's key (empty when it had none)",
        model=DeadLetter,
        summary="Every message that could not be applied, with where it came from and why.",
    ),
    TopicContract(
        name="{app id}-inventory-commands",
        setting="INVSYNC_APP_ID (prefix)",
        direction="internal",
        key=INVENTORY_KEY,
        model=InventoryCommand,
        summary="Internal: reservation commands derived from order events and callbacks, "
        "co-partitioned with warehouse.stock-events. Read-only for integrators.",
    ),
    TopicContract(
        name="{app id}-inventory-by-sku",
        setting="INVSYNC_APP_ID (prefix)",
        direction="internal",
        key="channelSkuCode (UTF-8)",
        model=InventoryUpdate,
        summary="Internal (INVSYNC_CONSOLIDATED=true): marketplace.inventory's records, "
        "unchanged, keyed by channelSkuCode for the consolidation. Not compacted (a SKU's "
        "key carries every location's records). Read-only for integrators.",
    ),
)


def drop_property_titles(node: Any) -> Any:
    """Pydantic titles every property after its name ("Eventid"): noise for readers."""
    if isinstance(node, dict):
        out = {k: drop_property_titles(v) for k, v in node.items()}
        props = out.get("properties")
        if isinstance(props, dict):
            for prop in props.values():
                if isinstance(prop, dict):
                    prop.pop("title", None)
        return out
    if isinstance(node, list):
        return [drop_property_titles(v) for v in node]
    return node


def _payload_rules(
    refs: Mapping[str, list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    rules = []
    for type_name, schemas in refs.items():
        payload = schemas[0] if len(schemas) == 1 else {"allOf": schemas}
        rules.append(
            {
                "if": {"properties": {"type": {"const": type_name}}, "required": ["type"]},
                "then": {"properties": {"payload": payload}},
            }
        )
    return rules


def topic_schema(topic: TopicContract) -> dict[str, Any]:
    """A standalone JSON Schema (2020-12) of one topic's values."""
    mode = topic.mode
    payload_models = [m for models in topic.payloads.values() for m in models]
    keys, defs = models_json_schema(
        [(topic.model, mode), *((m, mode) for m in payload_models)],
        ref_template="#/$defs/{model}",
    )
    all_defs: dict[str, Any] = dict(defs.get("$defs", {}))
    root_name = keys[(topic.model, mode)]["$ref"].rsplit("/", 1)[1]
    root = dict(all_defs.pop(root_name))
    root.pop("description", None)  # written for developers; the summary is for readers
    refs = {
        type_name: [keys[(m, mode)] for m in models] for type_name, models in topic.payloads.items()
    }
    rules = _payload_rules(refs)
    if rules:
        root["allOf"] = [*root.get("allOf", []), *rules]
    root.pop("title", None)
    schema: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"urn:invsync:topic:{topic.name}",
        "title": topic.name,
        "description": topic.summary,
        "x-kafka": {
            "topic": topic.name,
            "setting": topic.setting,
            "direction": topic.direction,
            "key": topic.key,
            "compacted": topic.compacted,
        },
        **root,
    }
    if all_defs:
        schema["$defs"] = all_defs
    result: dict[str, Any] = drop_property_titles(schema)
    return result


def topic_schemas() -> dict[str, dict[str, Any]]:
    """File name under `docs/schemas/` → schema, for every topic."""
    return {topic.file: topic_schema(topic) for topic in TOPICS}
