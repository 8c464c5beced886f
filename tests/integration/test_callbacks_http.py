"""Increff's callbacks over a real socket, as a real network delivers them: bodies in
segments with pauses, chunked, slow, cut off, at and beyond the size limit, malformed
heads, `Expect: 100-continue`; against a real worker on the real broker."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.fixtures import INCREFF_SAMPLES
from tests.integration.inventory_support import read_all
from tests.integration.support import CALLBACK_HEADERS, WorkerProcess, isolated_env

pytestmark = pytest.mark.integration

TOKEN = CALLBACK_HEADERS["x-increff-token"]
LIMIT = 1_048_576
AUTH = "".join(f"{k}: {v}\r\n" for k, v in CALLBACK_HEADERS.items())


@pytest.fixture(scope="module")
def worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("callbacks-http")
    env = isolated_env(
        kafka_bootstrap,
        tmp / "data",
        INVSYNC_CALLBACK_HEADER_TIMEOUT_S="2",
        INVSYNC_CALLBACK_BODY_TIMEOUT_S="3",
    )
    proc = WorkerProcess(env, tmp / "worker.log")
    proc.start(ready=True)
    yield proc
    proc.stop()


def pack(order: str, shipment: int, pad: int = 0) -> bytes:
    body = json.loads((INCREFF_SAMPLES / "pack-order.json").read_text())["request"]
    body |= {"orderCode": order, "shipmentId": shipment}
    raw = orjson.dumps(body)
    if pad:
        raw = orjson.dumps(body | {"pad": ""})
        raw = orjson.dumps(body | {"pad": "x" * (pad - len(raw))})
    return raw


def port(worker: WorkerProcess) -> int:
    return int(worker.env["INVSYNC_WEB_PORT"])


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response (interim 1xx answers included as their own)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return status, headers, body


async def exchange(
    worker: WorkerProcess,
    head: str,
    parts: list[bytes] = [],  # noqa: B006 - never mutated
    *,
    pause: float = 0.0,
    timeout: float = 15.0,
) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port(worker))
    try:
        writer.write(head.encode("latin-1") if isinstance(head, str) else head)
        await writer.drain()
        for part in parts:
            await asyncio.sleep(pause)
            writer.write(part)
            await writer.drain()
        return await asyncio.wait_for(read_answer(reader), timeout)
    finally:
        writer.close()


def request_head(method: str, path: str, length: int | None, extra: str = AUTH) -> str:
    size = f"Content-Length: {length}\r\n" if length is not None else ""
    kind = "Content-Type: application/json\r\n"
    return f"{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}{size}{kind}\r\n"


def chunked(data: bytes, size: int) -> list[bytes]:
    parts = [
        f"{len(data[i : i + size]):x}\r\n".encode() + data[i : i + size] + b"\r\n"
        for i in range(0, len(data), size)
    ]
    return [*parts, b"0\r\n\r\n"]


async def packed(bootstrap: str, worker: WorkerProcess, quiet_s: float = 2.0) -> dict[str, int]:
    recs = await read_all(
        bootstrap, worker.env["INVSYNC_TOPIC_ORDER_UPDATES"], quiet_s=quiet_s, timeout=30
    )
    counts: dict[str, int] = {}
    for r in recs:
        update = orjson.loads(r.value)
        if update["type"] == "ORDER_PACKED":
            order = update["payload"]["orderCode"]
            counts[order] = counts.get(order, 0) + 1
    return counts


async def test_bodies_split_chunked_and_slow_are_read_whole(
    worker: WorkerProcess, kafka_bootstrap: str
) -> None:
    body = pack("SEG-1", 9001)
    thirds = [body[: len(body) // 3], body[len(body) // 3 : -5], body[-5:]]
    status, headers, answer = await exchange(
        worker, request_head("POST", "/increff/orders/pack", len(body)), thirds, pause=0.4
    )
    assert (status, orjson.loads(answer)["hasError"]) == (200, False), answer
    assert headers["content-type"].startswith("application/json")

    atp = orjson.dumps(
        {
            "locationCode": "WH-SEG",
            "inventories": [{"channelSkuCode": f"S{i}", "quantity": i} for i in range(200)],
        }
    )
    head = request_head("PUT", "/increff/inventory", None, AUTH + "Transfer-Encoding: chunked\r\n")
    status, _, answer = await exchange(worker, head, chunked(atp, 1000), pause=0.02)
    assert status == 200, answer
    assert len(orjson.loads(answer)["successList"]) == 200

    slow = pack("SLOW-1", 9002)
    drips = [slow[i : i + 40] for i in range(0, len(slow), 40)]
    pause = 2.0 / len(drips)  # about 2 s in all, under the 3 s body timeout
    status, _, answer = await exchange(
        worker, request_head("POST", "/increff/orders/pack", len(slow)), drips, pause=pause
    )
    assert status == 200, answer
    counts = await packed(kafka_bootstrap, worker)
    assert counts.get("SEG-1") == 1
    assert counts.get("SLOW-1") == 1


async def test_a_body_that_never_arrives_whole_publishes_nothing(
    worker: WorkerProcess, kafka_bootstrap: str
) -> None:
    body = pack("CUT-1", 9101)
    # The client promises more than it sends, then aborts.
    _, writer = await asyncio.open_connection("127.0.0.1", port(worker))
    writer.write(request_head("POST", "/increff/orders/pack", len(body) + 50).encode() + body)
    await writer.drain()
    await asyncio.sleep(0.5)
    writer.transport.abort()
    # ... or promises more and falls silent: 408 after the body timeout, nothing acted on.
    started = time.monotonic()
    status, headers, answer = await exchange(
        worker,
        request_head("POST", "/increff/orders/pack", len(body) + 50),
        [pack("CUT-2", 9102)],
    )
    assert status == 408, answer
    assert 2.5 < time.monotonic() - started < 10
    assert orjson.loads(answer)["hasError"] is True
    assert headers["content-type"].startswith("application/json")
    counts = await packed(kafka_bootstrap, worker, quiet_s=3.0)
    assert "CUT-1" not in counts
    assert "CUT-2" not in counts


async def test_size_limit_exactly_at_and_beyond(worker: WorkerProcess) -> None:
    at_limit = pack("BIG-1", 9201, pad=LIMIT)
    assert len(at_limit) == LIMIT
    head = request_head("POST", "/increff/orders/pack", LIMIT)
    parts = [at_limit[i : i + 65536] for i in range(0, LIMIT, 65536)]
    status, _, answer = await exchange(worker, head, parts, pause=0.01)
    assert status == 200, answer

    over = pack("BIG-2", 9202, pad=LIMIT + 1)
    status, _, answer = await exchange(
        worker, request_head("POST", "/increff/orders/pack", LIMIT + 1)
    )
    assert status == 413, answer  # refused on its Content-Length, before any body byte
    assert orjson.loads(answer)["hasError"] is True

    chunked_head = request_head(
        "POST", "/increff/orders/pack", None, AUTH + "Transfer-Encoding: chunked\r\n"
    )
    status, _, answer = await exchange(worker, chunked_head, chunked(over, 65536))
    assert status == 413, answer
    # 8 MB chunked: answered once the limit is passed, long before the client is done.
    reader, writer = await asyncio.open_connection("127.0.0.1", port(worker))
    writer.write(chunked_head.encode())
    sent = 0
    answer_task = asyncio.create_task(read_answer(reader))
    try:
        while sent < 8_000_000 and not answer_task.done():
            writer.write(chunked(b"x" * 65536, 65536)[0])
            await writer.drain()
            sent += 65536
            await asyncio.sleep(0.002)
        status, _, answer = await asyncio.wait_for(answer_task, 10)
    except (ConnectionError, asyncio.IncompleteReadError):
        status, _, answer = await asyncio.wait_for(answer_task, 10)
    finally:
        writer.close()
    assert status == 413, answer
    assert sent < 4_000_000


async def test_every_layer_answers_the_contract_body_and_never_echoes_the_token(
    worker: WorkerProcess,
) -> None:
    body = pack("ERR-1", 9301)
    start = "POST /increff/orders/pack HTTP/1.1\r\nHost: t\r\n"
    cases = [
        # a malformed header line carrying the token (aiohttp's parser refuses it)
        (f"{start}x-increff-token {TOKEN}\r\n\r\n", 400),
        (
            f"{start}x-increff-token: {TOKEN}\x01\r\n\r\n",
            400,
        ),
        (request_head("OPTIONS", "/increff/orders/pack", 0), 405),
        (request_head("TRACE", "/increff/orders/pack", 0), 405),
        (request_head("POST", "/increff/nowhere", 0), 404),
        (request_head("POST", "/health", 0), 405),
        (request_head("POST", "/increff/orders/pack", 0, ""), 401),
    ]
    for head, want in cases:
        status, headers, answer = await exchange(worker, head)
        assert status == want, (head, status, answer)
        assert headers["content-type"].startswith("application/json"), head
        assert orjson.loads(answer)["hasError"] is True
        assert TOKEN not in answer.decode("latin-1")
    # A non-UTF-8 byte in the auth header: refused as unauthorized, not a 500.
    raw = request_head("POST", "/increff/orders/pack", len(body), "").encode()
    raw = raw.replace(b"Host: t\r\n", b"Host: t\r\nx-increff-token: cb-\xff\xfe\r\n")
    status, _, answer = await exchange(worker, raw.decode("latin-1"), [body])
    assert status == 401, answer
    # Corrupt gzip: 401 without auth (before the body is touched), 400 with it.
    gz = "Content-Encoding: gzip\r\n"
    status, _, _ = await exchange(
        worker, request_head("POST", "/increff/orders/pack", 20, gz), [b"\x1f\x8b" + b"x" * 18]
    )
    assert status == 401
    status, headers, answer = await exchange(
        worker,
        request_head("POST", "/increff/orders/pack", 20, AUTH + gz),
        [b"\x1f\x8b" + b"x" * 18],
    )
    assert status == 400, answer
    assert headers["content-type"].startswith("application/json")
    await asyncio.sleep(0.5)
    assert TOKEN not in worker.log_path.read_text(errors="replace")


async def test_expect_100_continue_only_after_auth(worker: WorkerProcess) -> None:
    body = pack("EXP-1", 9401)
    expect = "Expect: 100-continue\r\n"
    status, _, answer = await exchange(
        worker, request_head("POST", "/increff/orders/pack", len(body), expect)
    )
    assert status == 401, answer  # final answer at once: no 100 Continue before auth
    reader, writer = await asyncio.open_connection("127.0.0.1", port(worker))
    try:
        writer.write(
            request_head("POST", "/increff/orders/pack", len(body), AUTH + expect).encode()
        )
        await writer.drain()
        interim, _, _ = await asyncio.wait_for(read_answer(reader), 5)
        assert interim == 100
        writer.write(body)
        status, _, answer = await asyncio.wait_for(read_answer(reader), 10)
        assert status == 200, answer
    finally:
        writer.close()


async def test_a_head_that_never_ends_is_timed_out(worker: WorkerProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port(worker))
    started = time.monotonic()
    try:
        writer.write(b"POST /increff/orders/pack HTTP/1.1\r\nHost: t\r\n")
        for _ in range(40):  # a header byte every 0.25 s, never the blank line
            await asyncio.sleep(0.25)
            writer.write(b"X")
            await writer.drain()
            if reader.at_eof():
                break
        closed = await asyncio.wait_for(reader.read(), 5)
    except ConnectionError:
        closed = b""
    finally:
        writer.close()
    assert closed == b""
    assert time.monotonic() - started < 6  # the 2 s header timeout, not aiohttp's hour


async def test_a_huge_array_does_not_stall_the_loop(worker: WorkerProcess) -> None:
    # 500,000 elements that each fail validation: the costliest body under 1 MiB.
    huge = b'{"orders": [' + b"0," * 499_999 + b"0]}"
    gaps: list[float] = []

    async def probe(http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            await http.get("/health")
            gaps.append(time.monotonic() - started)
            await asyncio.sleep(0.01)

    async with httpx.AsyncClient(base_url=worker.web, timeout=30) as http:
        stop = asyncio.Event()
        prober = asyncio.create_task(probe(http, stop))
        started = time.monotonic()
        answer = await http.put(
            "/increff/orders/acknowledge", content=huge, headers=CALLBACK_HEADERS
        )
        took = time.monotonic() - started
        await asyncio.sleep(0.2)
        stop.set()
        await prober
    assert answer.status_code == 400
    print(f"500,000-element array: answered in {took:.2f} s, /health worst {max(gaps):.3f} s")
    assert max(gaps) < 1.0


async def test_a_1_mib_acknowledgement_in_one_go(
    worker: WorkerProcess, kafka_bootstrap: str
) -> None:
    orders = [{"locationCode": "WH1", "orderCode": f"ACK-{i:06d}"} for i in range(18_000)]
    body = orjson.dumps({"orders": orders, "consolidationType": "NONE"})
    assert len(body) <= LIMIT
    async with httpx.AsyncClient(base_url=worker.web, timeout=120) as http:
        started = time.monotonic()
        answer = await http.put(
            "/increff/orders/acknowledge", content=body, headers=CALLBACK_HEADERS
        )
        took = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["successOrders"]) == 18_000
    print(f"18,000-order acknowledgement ({len(body)} bytes): {took:.2f} s")
    recs = await read_all(
        kafka_bootstrap,
        worker.env["INVSYNC_TOPIC_ORDER_UPDATES"],
        until=lambda r: sum(1 for x in r if b"ACK-" in (x.key or b"")) >= 18_000,
        quiet_s=1.0,
        timeout=60,
    )
    acked = {x.key for x in recs if b"ACK-" in (x.key or b"")}
    assert len(acked) == 18_000


def test_open_callbacks_only_when_said_so(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = isolated_env(kafka_bootstrap, tmp_path / "data", INVSYNC_CALLBACK_AUTH="none")
    env["INVSYNC_CALLBACK_HEADERS"] = ""
    proc = WorkerProcess(env, tmp_path / "worker.log")
    proc.start()
    try:
        log = proc.log_path.read_text(errors="replace")
        assert "INVSYNC_CALLBACK_AUTH=none" in log
        answer = httpx.post(f"{proc.web}/increff/orders/pack", content=pack("OPEN-1", 9501))
        assert answer.status_code == 200, answer.text
    finally:
        proc.stop()
