"""MarketplaceInventoryClient against the real MockMarketplace HTTP server (no Kafka needed)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from connectors.errors import MarketplaceError, TransportError
from connectors.marketplace import MarketplaceInventoryClient
from connectors.retry import Backoff
from invsync.mocks import MockMarketplace

pytestmark = pytest.mark.integration

API_KEY = "mk-key-0c0ffee5a1t"
ATTEMPTS = 3
FAST = Backoff(base=0.01, factor=2, max_delay=0.05, max_attempts=ATTEMPTS)


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def market() -> AsyncIterator[MockMarketplace]:
    async with MockMarketplace(auth_headers={"X-Api-Key": API_KEY}) as mock:
        yield mock


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def client(
    market: MockMarketplace, sleeps: Sleeps
) -> AsyncIterator[MarketplaceInventoryClient]:
    async with MarketplaceInventoryClient(
        f"{market.base_url}/inventory",
        {"X-Api-Key": SecretStr(API_KEY)},
        timeout=5.0,
        backoff=FAST,
        sleep=sleeps,
    ) as c:
        yield c


def _items(n: int, start: int = 0) -> list[tuple[str, int]]:
    return [(f"SKU-{i:04d}", i % 7) for i in range(start, start + n)]


async def test_450_skus_go_in_3_calls_of_at_most_200(
    client: MarketplaceInventoryClient, market: MockMarketplace
) -> None:
    items = _items(450)
    result = await client.push("WH-1", items)
    assert result.ok and result.failed == () and result.errors == ()
    assert list(result.succeeded) == [s for s, _ in items]
    assert [(r.method, r.path, r.status) for r in market.requests] == [
        ("PUT", "/inventory", 200)
    ] * 3
    assert [len(r.body["inventories"]) for r in market.requests] == [200, 200, 50]
    first = market.requests[0]
    assert first.body["locationCode"] == "WH-1"
    assert first.body["inventories"][0] == {"channelSkuCode": "SKU-0000", "quantity": 0}
    assert first.headers["X-Api-Key"] == API_KEY
    assert [(r.channel_sku_code, r.quantity) for r in market.received] == items
    assert [r.seq for r in market.received] == list(range(1, 451))
    assert market.latest == {("WH-1", s): q for s, q in items}


async def test_zero_is_sent_as_zero_and_the_last_quantity_of_a_sku_wins(
    client: MarketplaceInventoryClient, market: MockMarketplace
) -> None:
    result = await client.push("WH-1", [("A", 5), ("B", 0), ("A", 3)])
    assert result.succeeded == ("B", "A")
    assert market.requests[0].body["inventories"] == [
        {"channelSkuCode": "B", "quantity": 0},
        {"channelSkuCode": "A", "quantity": 3},
    ]
    assert market.quantity("WH-1", "A") == 3 and market.quantity("WH-1", "B") == 0


async def test_failure_list_skus_are_reported(
    client: MarketplaceInventoryClient, market: MockMarketplace
) -> None:
    market.fail_skus({"SKU-0005", "SKU-0301"})
    result = await client.push("WH-1", _items(450))
    assert set(result.failed) == {"SKU-0005", "SKU-0301"}
    assert len(result.succeeded) == 448 and not result.ok
    assert result.errors == ()  # a 200 with a failureList is a partial failure, not an error
    assert [r.status for r in market.requests] == [200, 200, 200]
    assert market.quantity("WH-1", "SKU-0005") is None
    assert market.quantity("WH-1", "SKU-0006") == 6


async def test_500_then_success_is_retried_and_applied_once(
    client: MarketplaceInventoryClient, market: MockMarketplace, sleeps: Sleeps
) -> None:
    market.fail_next(1, status=500)
    result = await client.push("WH-1", _items(10))
    assert result.ok and len(result.succeeded) == 10
    assert [r.status for r in market.requests] == [500, 200]
    assert market.calls == 1 and len(market.received) == 10
    assert len(sleeps.waits) == 1


async def test_429_retry_after_is_honoured(
    client: MarketplaceInventoryClient, market: MockMarketplace, sleeps: Sleeps
) -> None:
    market.fail_next(1, status=429, retry_after=2)
    result = await client.push("WH-1", _items(3))
    assert result.ok
    assert sleeps.waits == [2.0]


async def test_400_is_not_retried_and_fails_only_its_batch(
    client: MarketplaceInventoryClient, market: MockMarketplace, sleeps: Sleeps
) -> None:
    market.fail_next(1, status=400, body={"hasError": True, "errorMessage": "bad sku"})
    result = await client.push("WH-1", _items(250))
    assert result.failed == tuple(s for s, _ in _items(200))
    assert result.succeeded == tuple(s for s, _ in _items(50, start=200))
    [err] = result.errors
    assert isinstance(err, MarketplaceError)
    assert (err.status, err.retriable, err.message) == (400, False, "bad sku")
    assert [r.status for r in market.requests] == [400, 200]
    assert sleeps.waits == []


async def test_down_marketplace_fails_the_push_without_trying_every_batch(
    client: MarketplaceInventoryClient, market: MockMarketplace
) -> None:
    market.set_down(True)
    result = await client.push("WH-1", _items(450))
    assert len(result.failed) == 450 and result.succeeded == ()
    [err] = result.errors
    assert err.status == 503 and err.retriable is True
    assert len(market.requests) == ATTEMPTS  # first batch only


async def test_200_with_has_error_fails_the_batch(
    client: MarketplaceInventoryClient, market: MockMarketplace
) -> None:
    market.fail_next(1, status=200, body={"hasError": True, "errorMessage": "locked"})
    result = await client.push("WH-1", _items(2))
    assert len(result.failed) == 2
    assert result.errors[0].message == "locked" and result.errors[0].retriable is False


async def test_stopped_server_gives_transport_error(
    client: MarketplaceInventoryClient, market: MockMarketplace, sleeps: Sleeps
) -> None:
    await market.stop()
    result = await client.push("WH-1", _items(5))
    [err] = result.errors
    assert isinstance(err, TransportError) and err.retriable is True
    assert len(result.failed) == 5
    assert len(sleeps.waits) == ATTEMPTS - 1


async def test_bad_quantities_are_refused_before_any_call(
    client: MarketplaceInventoryClient, market: MockMarketplace
) -> None:
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        await client.push("WH-1", [("A", 1), ("B", -1)])
    with pytest.raises(ValueError, match="integer"):
        await client.push("WH-1", [("A", 1.5)])  # type: ignore[list-item]
    assert market.requests == []


async def test_empty_push_makes_no_call(
    client: MarketplaceInventoryClient, market: MockMarketplace
) -> None:
    result = await client.push("WH-1", [])
    assert result.ok and result.succeeded == () and market.requests == []


async def test_headers_never_in_errors_or_logs(
    market: MockMarketplace, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    market.fail_next(3, status=500, body=f"upstream said {API_KEY}")
    async with MarketplaceInventoryClient(
        f"{market.base_url}/inventory", {"X-Api-Key": SecretStr(API_KEY)}, backoff=FAST
    ) as client:
        result = await client.push("WH-1", _items(1))
    async with MarketplaceInventoryClient(
        f"{market.base_url}/inventory", {"X-Api-Key": "wrong-key-9d9d"}, backoff=FAST
    ) as wrong:
        denied = await wrong.push("WH-1", _items(1))
    assert denied.errors[0].status == 401 and denied.errors[0].retriable is False
    text = caplog.text + "".join(str(e) + repr(e) for e in result.errors + denied.errors)
    text += repr(client) + repr(result)
    assert "upstream said ***" in text
    assert API_KEY not in text and "wrong-key-9d9d" not in text


async def test_chunk_size_is_bounded() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        MarketplaceInventoryClient("http://x.invalid/inventory", chunk_size=201)
