"""Consolidated ATP per SKU (`INVSYNC_CONSOLIDATED`) on the real broker with a real worker:
the newest consolidated record of a SKU is the sum of its locations' newest per-location
records, through the consolidated ATP push, changes, and a SIGKILL in the middle."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.inventory_support import (
    latest_by_key,
    order_created,
    read_all,
    stock,
    versions_increase,
)
from tests.integration.support import CALLBACK_HEADERS, WorkerProcess, isolated_env, produce

pytestmark = pytest.mark.integration

LOCATIONS = ["WH1", "WH2", "W:H"]


def at(event_id: str, location: str, sku: str, quantity: int, kind: str = "DELTA") -> Any:
    """A stock event (a location code may hold ':', so the key alone cannot say)."""
    _, value = stock(event_id, f"L:{sku}", quantity, kind=kind)
    body = {**orjson.loads(value), "locationCode": location}
    return f"{location}:{sku}".encode(), orjson.dumps(body)


def consolidated_env(bootstrap: str, data: Path, **extra: str) -> dict[str, str]:
    env = isolated_env(bootstrap, data, INVSYNC_CONSOLIDATED="true", **extra)
    env["INVSYNC_TOPIC_INVENTORY_CONSOLIDATED"] = f"consolidated-{env['INVSYNC_APP_ID']}"
    return env


def by_sku(per_location: dict[str, dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Each SKU's newest quantity per location, from the per-location topic."""
    out: dict[str, dict[str, int]] = {}
    for value in per_location.values():
        out.setdefault(value["channelSkuCode"], {})[value["locationCode"]] = value["quantity"]
    return out


def locations_of(records: list[Any]) -> dict[str, dict[str, int]]:
    return {sku: value["locations"] for sku, value in latest_by_key(records).items()}


async def settled(
    bootstrap: str, env: dict[str, str], want: dict[str, dict[str, int]] | None = None
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, Any]], list[Any]]:
    """(newest per-location quantities by SKU, newest consolidated record by SKU, the
    consolidated topic's records) once the consolidated topic agrees with ``want`` (by
    default with the per-location topic) and went quiet."""
    deadline = time.monotonic() + 90
    while True:
        locations = by_sku(latest_by_key(await read_all(bootstrap, env["INVSYNC_TOPIC_INVENTORY"])))
        expected = want if want is not None else locations
        records = await read_all(
            bootstrap,
            env["INVSYNC_TOPIC_INVENTORY_CONSOLIDATED"],
            until=lambda r, want=expected: locations_of(r) == want,
            quiet_s=1.5,
            timeout=20,
        )
        newest = latest_by_key(records)
        if {
            k: v["locations"] for k, v in newest.items()
        } == expected or time.monotonic() > deadline:
            return locations, newest, records


async def test_a_sku_in_several_locations_ends_exact_across_a_sigkill(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = consolidated_env(
        kafka_bootstrap, tmp_path / "data", INVSYNC_DEBOUNCE_MS="50", INVSYNC_MAX_DELAY_MS="300"
    )
    stock_topic = env["INVSYNC_TOPIC_STOCK_EVENTS"]
    worker = WorkerProcess(env, tmp_path / "worker.log")
    await asyncio.get_running_loop().run_in_executor(None, lambda: worker.start(ready=True))
    try:
        await produce(
            kafka_bootstrap,
            stock_topic,
            [
                at("a1", "WH1", "A", 10, kind="SNAPSHOT"),
                at("a2", "WH2", "A", 5, kind="SNAPSHOT"),
                at("a3", "W:H", "A", 3, kind="SNAPSHOT"),
                at("b1", "WH1", "B", 2, kind="SNAPSHOT"),
            ],
        )
        push = {
            "consolidationType": "ALL",
            "inventories": [
                {"channelSkuCode": "A", "locationCode": "STORE-9", "quantity": 4,
                 "consolidatedQuantity": 22, "listingId": 7, "consolidationType": "ALL"},
                {"channelSkuCode": "B", "locationCode": "WH2", "quantity": 0,
                 "consolidatedQuantity": 2, "listingId": 8, "consolidationType": "ALL"},
            ],
        }  # fmt: skip
        async with httpx.AsyncClient(base_url=worker.web, timeout=10) as http:
            r = await http.put(
                "/increff/inventory/consolidated", json=push, headers=CALLBACK_HEADERS
            )
        assert r.status_code == 200, r.text
        assert [i["channelSkuCode"] for i in r.json()["successList"]] == ["A", "B"]
        first = {"A": {"WH1": 10, "WH2": 5, "W:H": 3, "STORE-9": 4}, "B": {"WH1": 2, "WH2": 0}}
        _, newest, _ = await settled(kafka_bootstrap, env, first)
        assert {k: v["locations"] for k, v in newest.items()} == first, worker.log_tail()
        assert (newest["A"]["quantity"], newest["B"]["quantity"]) == (22, 2)
        print("\nconsolidated record of A:", orjson.dumps(newest["A"]).decode())

        # Changes to some locations (a pick, an order's reservation), then a stream of
        # changes with a SIGKILL in the middle.
        await produce(kafka_bootstrap, stock_topic, [at("a4", "WH1", "A", -4)])
        await produce(
            kafka_bootstrap,
            env["INVSYNC_TOPIC_ORDERS"],
            [order_created("o1", "O-1", "WH2", [("A", 2)])],
        )
        rng = random.Random(13)
        skus = ["A", "B", "C"]
        events = [
            at(f"r{n}", rng.choice(LOCATIONS), rng.choice(skus), rng.randint(-2, 4))
            for n in range(600)
        ]
        await produce(kafka_bootstrap, stock_topic, events[:300])
        await asyncio.sleep(0.5)
        worker.kill9()
        await produce(kafka_bootstrap, stock_topic, events[300:450])
        await asyncio.get_running_loop().run_in_executor(None, worker.start)
        await produce(kafka_bootstrap, stock_topic, events[450:])

        locations, newest, records = await settled(kafka_bootstrap, env)
        assert set(newest) == {"A", "B", "C"}
        for sku, quantities in locations.items():
            assert newest[sku]["locations"] == quantities, (sku, worker.log_tail())
            assert newest[sku]["quantity"] == sum(quantities.values()), sku
        assert versions_increase(records)
        print("consolidated record of A after the run:", orjson.dumps(newest["A"]).decode())
    finally:
        worker.stop()


async def test_a_stock_out_is_published_at_once_other_changes_wait(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    debounce = 4.0
    env = consolidated_env(
        kafka_bootstrap, tmp_path / "data", INVSYNC_DEBOUNCE_MS="4000", INVSYNC_MAX_DELAY_MS="20000"
    )
    stock_topic = env["INVSYNC_TOPIC_STOCK_EVENTS"]
    topic = env["INVSYNC_TOPIC_INVENTORY_CONSOLIDATED"]
    worker = WorkerProcess(env, tmp_path / "worker.log")
    await asyncio.get_running_loop().run_in_executor(None, lambda: worker.start(ready=True))

    async def records(count: int) -> list[dict[str, Any]]:
        got = await read_all(kafka_bootstrap, topic, until=lambda r: len(r) >= count, quiet_s=0.1)
        return [orjson.loads(r.value) for r in got]

    try:
        start = time.monotonic()
        await produce(
            kafka_bootstrap,
            stock_topic,
            [stock("s1", "WH1:S", 2, kind="SNAPSHOT"), stock("s2", "WH2:S", 1, kind="SNAPSHOT")],
        )
        [stocked] = await records(1)
        assert (stocked["quantity"], stocked["locations"]) == (3, {"WH1": 2, "WH2": 1})
        assert time.monotonic() - start >= debounce  # held for the window (at each stage)
        await produce(kafka_bootstrap, stock_topic, [stock("s3", "WH1:S", -2)])  # total 1
        await asyncio.sleep(0.5)
        start = time.monotonic()
        await produce(kafka_bootstrap, stock_topic, [stock("s4", "WH2:S", -1)])  # total 0
        after = await records(2)
        took = time.monotonic() - start
        assert len(after) == 2, after  # the total of 1 waited, then the stock-out replaced it
        assert (after[1]["quantity"], after[1]["locations"]) == (0, {"WH1": 0, "WH2": 0})
        assert took < debounce / 2, f"stock-out published after {took:.1f}s"
        # What the re-key stage cannot read is dead-lettered, never dropped.
        await produce(kafka_bootstrap, env["INVSYNC_TOPIC_INVENTORY"], [(b"WH1:S", b"{oops")])
        letters = await read_all(
            kafka_bootstrap,
            env["INVSYNC_TOPIC_DEAD_LETTERS"],
            until=lambda r: len(r) >= 1,
            quiet_s=0.2,
        )
        [letter] = [orjson.loads(r.value) for r in letters]
        assert letter["sourceTopic"] == env["INVSYNC_TOPIC_INVENTORY"]
        assert (letter["key"], letter["value"]) == ("WH1:S", "{oops")
    finally:
        worker.stop()


async def test_without_the_setting_nothing_is_consolidated(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = isolated_env(kafka_bootstrap, tmp_path / "data", INVSYNC_DEBOUNCE_MS="0")
    env["INVSYNC_TOPIC_INVENTORY_CONSOLIDATED"] = f"consolidated-{env['INVSYNC_APP_ID']}"
    worker = WorkerProcess(env, tmp_path / "worker.log")
    await asyncio.get_running_loop().run_in_executor(None, lambda: worker.start(ready=True))
    try:
        await produce(
            kafka_bootstrap,
            env["INVSYNC_TOPIC_STOCK_EVENTS"],
            [stock("s1", "WH1:A", 4, kind="SNAPSHOT"), stock("s2", "WH2:A", 1, kind="SNAPSHOT")],
        )
        out = await read_all(
            kafka_bootstrap,
            env["INVSYNC_TOPIC_INVENTORY"],
            until=lambda r: len(latest_by_key(r)) == 2,
        )
        assert by_sku(latest_by_key(out)) == {"A": {"WH1": 4, "WH2": 1}}
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            topics = set(await admin.list_topics())
            offsets = await admin.list_consumer_group_offsets(env["INVSYNC_APP_ID"])
        finally:
            await admin.close()
        app_id = env["INVSYNC_APP_ID"]
        assert env["INVSYNC_TOPIC_INVENTORY_CONSOLIDATED"] not in topics
        assert not {
            t for t in topics if t.startswith(app_id) and ("by-sku" in t or "consolidated" in t)
        }
        assert env["INVSYNC_TOPIC_INVENTORY"] not in {tp.topic for tp in offsets}  # not read back
    finally:
        worker.stop()
