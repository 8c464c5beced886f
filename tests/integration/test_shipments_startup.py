"""A shipment published while a worker starts is indexed (issue 10, item 10): the
shipping-label callback finds it. Several starts, each publishing the shipment 0.5 to
3 s after `invsync worker` was launched, with the shipments topic created beforehand."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.support import (
    CALLBACK_HEADERS,
    WorkerProcess,
    isolated_env,
    produce,
)

pytestmark = pytest.mark.integration

DELAYS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
ANSWER_WITHIN_S = 30.0
"""From the moment the worker answers /health (it joins its group and recovers after;
the answer normally comes 1.5-4 s later, more on a loaded machine)."""


async def _create_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=4, replication_factor=1)])
    finally:
        await admin.close()


async def _label_status(web: str, query: dict[str, str], within: float) -> tuple[int, float]:
    """Poll the label callback until 200; (last status, seconds waited)."""
    started = time.monotonic()
    status = 0
    async with httpx.AsyncClient(base_url=web, timeout=5.0) as http:
        while time.monotonic() - started < within:
            try:
                r = await http.get(
                    "/increff/orders/shipping-label", params=query, headers=CALLBACK_HEADERS
                )
                status = r.status_code
            except httpx.HTTPError:
                status = 0  # not listening yet
            if status == 200:
                break
            await asyncio.sleep(0.2)
    return status, time.monotonic() - started


async def _one_start(
    bootstrap: str, tmp_path: Path, delay: float, fast_path: str
) -> tuple[int, float]:
    env = isolated_env(
        bootstrap, tmp_path / f"data-{delay}", INVSYNC_DEBOUNCE_MS="0", INVSYNC_FAST_PATH=fast_path
    )
    await _create_topic(bootstrap, env["INVSYNC_TOPIC_SHIPMENTS"])
    worker = WorkerProcess(env, tmp_path / f"worker-{delay}.log")
    started = asyncio.create_task(asyncio.to_thread(worker.start, 60.0))
    try:
        await asyncio.sleep(delay)
        shipment = {
            "shipmentId": "7001",
            "orderCode": "S-1",
            "shipmentCode": "SH-7",
            "awbNumber": "AWB-7",
            "transporter": "Delhivery",
            "shippingLabelUrl": "https://labels.example/AWB-7.pdf",
            "boxLabelDetails": [],
        }
        await produce(
            bootstrap, env["INVSYNC_TOPIC_SHIPMENTS"], [(b"7001", orjson.dumps(shipment))]
        )
        await started
        query = {"orderCode": "S-1", "shipmentId": "7001", "shipmentCode": "SH-7"}
        return await _label_status(worker.web, query, ANSWER_WITHIN_S)
    finally:
        with contextlib.suppress(Exception):
            await started  # never stop a worker its start is still launching
        worker.stop()


FAUST_PATH = pytest.param(
    "false",
    DELAYS[::2],
    marks=pytest.mark.skipif(
        os.environ.get("FAULT_ALL") != "1",
        reason="known open defect, run with FAULT_ALL=1: on Faust's per-record path "
        "(INVSYNC_FAST_PATH=false) a shipment published 1.5 s into a start was still missed "
        "in 1 of 4 starts of a CI run; the fast path (default) finds every one",
    ),
)


@pytest.mark.parametrize(("fast_path", "delays"), [("true", DELAYS), FAUST_PATH])
async def test_a_shipment_published_during_startup_is_found(
    kafka_bootstrap: str, tmp_path: Path, fast_path: str, delays: tuple[float, ...]
) -> None:
    results = {d: await _one_start(kafka_bootstrap, tmp_path, d, fast_path) for d in delays}
    missed = {d: r for d, r in results.items() if r[0] != 200}
    assert not missed, f"label not found (status, waited s) by publish delay: {results}"
    print("label found after (s):", {d: round(r[1], 2) for d, r in results.items()})
