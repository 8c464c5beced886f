"""`streams.kafka.acknowledged`: the batch's send results, in send order (the disk store
records the highest acknowledged offset per partition from them)."""

from __future__ import annotations

import asyncio

import pytest

from streams.kafka import acknowledged


async def test_results_in_send_order_whatever_order_they_complete() -> None:
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in range(3)]
    for i in (2, 0, 1):
        loop.call_soon(futures[i].set_result, f"meta-{i}")
    assert await acknowledged(list(futures)) == ["meta-0", "meta-1", "meta-2"]


async def test_first_failure_raised() -> None:
    loop = asyncio.get_running_loop()
    ok, bad = loop.create_future(), loop.create_future()
    ok.set_result("meta")
    bad.set_exception(RuntimeError("broker said no"))
    with pytest.raises(RuntimeError, match="broker said no"):
        await acknowledged([ok, bad])


async def test_nothing_sent() -> None:
    assert await acknowledged([]) == []
