"""The pre-order lookup (`POST /inventories/search-sku`) against real workers and the
real broker: reservations and unpublished changes counted, unknown SKUs, auth, bad
bodies; two workers of one group each answering for every location."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from invsync.localkafka import free_port
from tests.integration.inventory_support import order_created, read_all, stock
from tests.integration.support import CALLBACK_HEADERS, WorkerProcess, isolated_env, produce

pytestmark = pytest.mark.integration

PATH = "/inventories/search-sku"
PEER_PATH = "/internal/inventories/search-sku"


def _search(web: str, skus: list[str], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        web + PATH,
        json={"channelSkuCodes": skus},
        headers=CALLBACK_HEADERS if headers is None else headers,
        timeout=10,
    )


def _locations(answer: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {
        item["channelSkuCode"]: {i["locationCode"]: i["quantity"] for i in item["inventories"]}
        for item in answer["successList"]
    }


def _until(check: Any, timeout: float = 60.0) -> Any:
    """Poll `check()` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"not reached within {timeout}s (last: {last!r})")


@pytest.fixture
def worker(kafka_bootstrap: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    env = isolated_env(
        kafka_bootstrap,
        tmp_path / "data",
        # Ten minutes of debounce: nothing is published during the test.
        INVSYNC_DEBOUNCE_MS="600000",
        INVSYNC_MAX_DELAY_MS="600000",
        INVSYNC_SAFETY_STOCK_OVERRIDES='{"WH3": 1}',
    )
    proc = WorkerProcess(env, tmp_path / "worker.log")
    proc.start(ready=True)
    yield proc
    proc.stop()


def test_the_lookup_answers_current_atp_with_reservations_and_unpublished_changes(
    worker: WorkerProcess, kafka_bootstrap: str
) -> None:
    env = worker.env
    asyncio.run(
        produce(
            kafka_bootstrap,
            env["INVSYNC_TOPIC_STOCK_EVENTS"],
            [
                stock("s1", "WH1:SKU-1", 10, kind="SNAPSHOT"),
                stock("s2", "WH2:SKU-1", 5, kind="SNAPSHOT"),
                stock("s3", "WH3:SKU-1", 8, kind="SNAPSHOT"),
                stock("s4", "WH1:SKU-2", 3, kind="SNAPSHOT"),
                stock("d1", "WH2:SKU-1", -1),
            ],
        )
    )
    asyncio.run(
        produce(
            kafka_bootstrap,
            env["INVSYNC_TOPIC_ORDERS"],
            [order_created("o1", "ORD-1", "WH1", [("SKU-1", 4)])],
        )
    )

    def settled() -> dict[str, Any] | None:
        r = _search(worker.web, ["SKU-1", "SKU-2", "NOPE", "SKU-1"])
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer if _locations(answer).get("SKU-1", {}).get("WH1") == 6 else None

    answer = _until(settled)
    # WH1: 10 - 4 reserved; WH2: 5 - 1; WH3: 8 - safety stock 1.
    assert _locations(answer) == {"SKU-1": {"WH1": 6, "WH2": 4, "WH3": 7}, "SKU-2": {"WH1": 3}}
    assert [i["channelSkuCode"] for i in answer["successList"]] == ["SKU-1", "SKU-2"]
    assert answer["successList"][0]["totalQuantity"] == 17
    assert answer["failureList"] == ["NOPE"]
    # None of it was published yet: the lookup read the live state, not the topic.
    published = asyncio.run(
        read_all(kafka_bootstrap, env["INVSYNC_TOPIC_INVENTORY"], quiet_s=0.5, timeout=5)
    )
    assert published == []


def test_the_lookup_refuses_without_auth_and_bad_bodies(worker: WorkerProcess) -> None:
    web = worker.web
    for headers in ({}, {"x-increff-token": "wrong"}):
        refused = _search(web, ["SKU-1"], headers=headers)
        assert refused.status_code == 401
        assert refused.json() == {"hasError": True, "errorMessage": "unauthorized"}
        assert "cb-test-token" not in refused.text
    peer = httpx.post(web + PEER_PATH, json={"channelSkuCodes": ["A"], "generation": 1})
    assert peer.status_code == 401
    bodies: list[bytes] = [
        b"{not json",
        b'{"channelSkuCodes": []}',
        b'{"channelSkuCodes": [7]}',
        orjson.dumps({"channelSkuCodes": [f"S{i}" for i in range(1001)]}),
    ]
    for body in bodies:
        bad = httpx.post(web + PATH, content=body, headers=CALLBACK_HEADERS, timeout=10)
        assert bad.status_code == 400, (body[:40], bad.text)
        assert bad.json()["hasError"] is True and bad.json()["errorMessage"]
    huge = httpx.post(web + PATH, content=b"x" * 1_048_577, headers=CALLBACK_HEADERS, timeout=10)
    assert huge.status_code == 413 and huge.json()["hasError"] is True
    wrong_method = httpx.get(web + PATH, headers=CALLBACK_HEADERS)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["hasError"] is True
    ok = _search(web, ["A"])
    assert ok.status_code == 200 and ok.json() == {"successList": [], "failureList": ["A"]}
    metrics = httpx.get(web + "/metrics").text
    assert re.search(
        r'invsync_callbacks_total\{path="/inventories/search-sku",status="401"\} 2', metrics
    )


# --- two workers -----------------------------------------------------------------------


def _part(web: str, generation: int) -> httpx.Response:
    body = {"channelSkuCodes": ["SKU-9"], "generation": generation}
    return httpx.post(web + PEER_PATH, json=body, headers=CALLBACK_HEADERS, timeout=10)


def _partitions(web: str) -> set[int] | None:
    """The partitions a worker answers for (asks its peer path in its own generation)."""
    probe = _part(web, -1)
    found = re.search(r"generation (\d+), asked", probe.json().get("errorMessage", ""))
    if probe.status_code != 503 or found is None:
        return None
    answer = _part(web, int(found.group(1)))
    return set(answer.json()["partitions"]) if answer.status_code == 200 else None


def test_two_workers_each_answer_for_every_location(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = isolated_env(kafka_bootstrap, tmp_path / "a", INVSYNC_DEBOUNCE_MS="600000")
    env["INVSYNC_MAX_DELAY_MS"] = "600000"
    locations = [f"LOC{i}" for i in range(12)]  # spread over the four partitions
    expected = {loc: i + 1 for i, loc in enumerate(locations)}
    a = WorkerProcess(env, tmp_path / "a.log")
    b_env = {**env, "INVSYNC_WEB_PORT": str(free_port()), "INVSYNC_DATA_DIR": str(tmp_path / "b")}
    b = WorkerProcess(b_env, tmp_path / "b.log")
    try:
        a.start(ready=True)  # creates the topics
        asyncio.run(
            produce(
                kafka_bootstrap,
                env["INVSYNC_TOPIC_STOCK_EVENTS"],
                [
                    stock(f"s{i}", f"{loc}:SKU-9", i + 1, kind="SNAPSHOT")
                    for i, loc in enumerate(locations)
                ],
            )
        )
        b.start(ready=True)

        def split() -> tuple[set[int], set[int]] | None:
            pa, pb = _partitions(a.web), _partitions(b.web)
            return (pa, pb) if pa and pb else None

        held_a, held_b = _until(split, timeout=90)
        assert held_a | held_b == {0, 1, 2, 3} and not held_a & held_b
        for proc in (a, b):

            def complete(web: str = proc.web) -> dict[str, Any] | None:
                r = _search(web, ["SKU-9", "SKU-0"])
                if r.status_code != 200:
                    return None
                answer: dict[str, Any] = r.json()
                return answer if _locations(answer).get("SKU-9") == expected else None

            answer = _until(complete, timeout=60)
            assert answer["failureList"] == ["SKU-0"]
            assert answer["successList"][0]["totalQuantity"] == sum(expected.values())
        # A peer that does not answer: 503 naming it, never a partial list.
        assert b.proc is not None
        os.killpg(b.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            r = _search(a.web, ["SKU-9"])
            assert r.status_code == 503, r.text
            assert time.monotonic() - started < 8
            assert r.headers["Retry-After"] == "1"
            message = r.json()["errorMessage"]
            assert message.startswith("lookup incomplete") and b.web in message, message
        finally:
            os.killpg(b.proc.pid, signal.SIGCONT)
        _until(lambda: _search(a.web, ["SKU-9"]).status_code == 200, timeout=60)
    finally:
        b.stop()
        a.stop()
