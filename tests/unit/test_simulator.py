"""The demo's simulator: Zipf skew, ground truth vs replays, invariants of its events."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from invsync.demo.promtext import histogram_quantile, parse
from invsync.demo.simulator import Message, SimConfig, Simulator, zipf_weights
from models.events import decode_order_event, decode_stock_event
from models.increff import CustomerCancellation, OutwardOrder
from models.inventory import KeyState, apply_command, apply_stock_event, atp
from models.orders import reservation_commands

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def run(config: SimConfig, ticks: int = 600, per_tick: int = 50) -> tuple[Simulator, list[Message]]:
    sim = Simulator(config)
    msgs = sim.initial(T0)
    for i in range(1, ticks + 1):
        msgs += sim.next_batch(T0 + timedelta(milliseconds=50 * i), per_tick)
    return sim, msgs


def naive_replay(msgs: list[Message]) -> dict[tuple[str, str], int]:
    """Straight from the rules of DESIGN.md, with plain dicts (ON_HAND snapshots only)."""
    on_hand: dict[tuple[str, str], int] = {}
    base_at: dict[tuple[str, str], datetime] = {}
    lines: dict[tuple[str, str, str], list[int]] = {}  # (order, loc, sku) -> [q, c, f]
    for m in msgs:
        v = m.value
        if m.topic == "stock":
            key = (v["locationCode"], v["channelSkuCode"])
            assert v.get("basis", "ON_HAND") == "ON_HAND"
            if v["type"] == "SNAPSHOT":
                on_hand[key] = v["quantity"]
                base_at[key] = datetime.fromisoformat(v["occurredAt"])
            elif datetime.fromisoformat(v["occurredAt"]) > base_at[key]:
                on_hand[key] += v["quantity"]
            assert on_hand[key] >= 0, f"on-hand of {key} went negative"
            line = lines.get((v.get("orderCode", ""), *key))
            if line is not None and v["quantity"] < 0:
                line[2] += min(max(0, line[0] - line[1] - line[2]), -v["quantity"])
            continue
        p = v["payload"]
        for item in p["orderItems"]:
            ref = (p["orderCode"], p["locationCode"], item["channelSkuCode"])
            if v["type"] == "ORDER_CREATED":
                lines[ref] = [item["quantity"], 0, 0]
            else:
                lines[ref][1] = max(lines[ref][1], item["cancelledQuantity"])
    held: Counter[tuple[str, str]] = Counter()
    for (_, loc, sku), (q, c, f) in lines.items():
        held[(loc, sku)] += max(0, q - c - f)
    return {key: max(0, qty - held[key]) for key, qty in on_hand.items()}


def test_zipf_weights_follow_the_power_law() -> None:
    w = zipf_weights(100, 1.1)
    assert w[0] == 1.0
    assert w[1] == pytest.approx(2**-1.1)
    assert all(a > b for a, b in itertools.pairwise(w))


def test_key_popularity_is_zipf_skewed() -> None:
    sim = Simulator(SimConfig(keys=1000, seed=7))
    counts = Counter(sim.pick_index() for _ in range(200_000))
    total = sum(counts.values())
    expected_top10 = sum(zipf_weights(1000, 1.1)[:10]) / sum(zipf_weights(1000, 1.1))
    top10 = sum(counts[i] for i in range(10)) / total
    assert top10 == pytest.approx(expected_top10, abs=0.01)
    assert top10 > 0.4  # ten keys out of a thousand take ~45% of the traffic
    ratio = counts[0] / counts[1]
    assert ratio == pytest.approx(2**1.1, rel=0.08)
    # The emitted DELTAs are skewed too: the most popular key is the busiest.
    _, msgs = run(SimConfig(keys=200, seed=7), ticks=200)
    deltas = Counter(m.key for m in msgs if m.topic == "stock" and m.value["type"] == "DELTA")
    assert deltas.most_common(1)[0][0] == "WH01:SKU-00000"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ground_truth_matches_a_naive_replay(seed: int) -> None:
    sim, msgs = run(SimConfig(keys=300, locations=3, seed=seed, pick_delay_s=1.0))
    assert sim.stats["orders"] > 100
    assert sim.stats["picks"] > 100
    assert sim.stats["cancels"] > 10
    assert naive_replay(msgs) == sim.truth.quantities()


def test_ground_truth_matches_the_workers_rules() -> None:
    """Replay through the real rules (order events become reservation commands)."""
    sim, msgs = run(SimConfig(keys=200, seed=11, pick_delay_s=0.5))
    states: dict[str, KeyState] = {}
    for offset, m in enumerate(msgs):
        raw = orjson.dumps(m.value)
        if m.topic == "stock":
            event = decode_stock_event(m.key.encode(), raw)
            state = states.setdefault(event.key, KeyState())
            apply_stock_event(state, event, "stock/0", offset)
            assert state.on_hand >= 0
        else:
            order = decode_order_event(raw)
            for cmd in reservation_commands(order, m.key):
                state = states.setdefault(cmd.key, KeyState())
                apply_command(state, cmd, "commands/0", offset)
    got = {tuple(k.split(":", 1)): atp(s, 0) for k, s in states.items()}
    assert got == sim.truth.quantities()


def test_events_are_valid_and_ordered_as_promised() -> None:
    _sim, msgs = run(SimConfig(keys=100, seed=5, pick_delay_s=0.5), ticks=300)
    snapshots = [i for i, m in enumerate(msgs) if m.value.get("type") == "SNAPSHOT"]
    assert snapshots == list(range(100)), "one SNAPSHOT per key, first, never again"
    assert {msgs[i].value["basis"] for i in snapshots} == {"ON_HAND"}
    counted_at = datetime.fromisoformat(msgs[0].value["occurredAt"])
    later = [datetime.fromisoformat(m.value["occurredAt"]) for m in msgs[100:]]
    assert all(t > counted_at for t in later), "every later event is after the count"
    ids = [m.value["eventId"] for m in msgs]
    assert len(ids) == len(set(ids))
    created: dict[str, float] = {}
    for m in msgs:
        raw = orjson.dumps(m.value)
        if m.topic == "stock":
            event = decode_stock_event(m.key.encode(), raw)
            if event.orderCode is not None:
                assert event.quantity < 0
                # picks come pick_delay_s after the order (its RESERVE lands first)
                assert event.occurredAt.timestamp() - created[event.orderCode] >= 0.5
            continue
        order = decode_order_event(raw)
        if order.type == "ORDER_CREATED":
            body = OutwardOrder.model_validate(order.payload)
            assert body.orderCode == m.key and body.orderItems
            assert {"orderCode", "locationCode", "orderTime", "orderType"} <= set(order.payload)
            created[body.orderCode] = order.occurredAt.timestamp()
        else:
            assert order.type == "CUSTOMER_CANCELLED"
            CustomerCancellation.model_validate(order.payload)
            assert order.occurredAt.timestamp() - created[m.key] >= 0.5


def test_a_clock_that_has_not_moved_still_times_events_after_the_snapshots() -> None:
    """Events at the snapshots' instant would be in them (the rules ignore them)."""
    sim = Simulator(SimConfig(keys=20, seed=3, pick_delay_s=0.0))
    msgs = sim.initial(T0)
    for i in range(40):
        msgs += sim.next_batch(T0 - timedelta(milliseconds=i), 20)  # stuck, then backwards
    later = [m for m in msgs[20:] if m.topic == "stock"]
    assert later and all(datetime.fromisoformat(m.value["occurredAt"]) > T0 for m in later)
    states: dict[str, KeyState] = {}
    for offset, m in enumerate(msgs):
        if m.topic == "stock":
            event = decode_stock_event(m.key.encode(), orjson.dumps(m.value))
            apply_stock_event(states.setdefault(event.key, KeyState()), event, "s/0", offset)
        else:
            for cmd in reservation_commands(decode_order_event(orjson.dumps(m.value)), m.key):
                apply_command(states.setdefault(cmd.key, KeyState()), cmd, "c/0", offset)
    got = {tuple(k.split(":", 1)): atp(s, 0) for k, s in states.items()}
    assert got == sim.truth.quantities()


def test_orders_only_for_available_stock() -> None:
    sim = Simulator(SimConfig(keys=50, seed=9, bulk_order_share=0.5))
    sim.initial(T0)
    for i in range(1, 400):
        for m in sim.next_batch(T0 + timedelta(milliseconds=50 * i), 20):
            if m.value.get("type") == "ORDER_CREATED":
                for item in m.value["payload"]["orderItems"]:
                    assert item["quantity"] >= 1
        for key in sim.truth.on_hand:
            assert sim.truth.on_hand[key] >= sim.truth.reserved(key) >= 0
    assert any(qty == 0 for qty in sim.truth.quantities().values()), "stock-outs happen"


def test_deterministic_for_a_seed() -> None:
    a, ma = run(SimConfig(keys=100, seed=4), ticks=50)
    b, mb = run(SimConfig(keys=100, seed=4), ticks=50)
    assert ma == mb
    assert a.truth.quantities() == b.truth.quantities()


def test_histogram_quantile_from_metrics_text() -> None:
    text = "\n".join(
        [
            "# TYPE x histogram",
            'x_bucket{le="0.1"} 50.0',
            'x_bucket{le="0.5"} 90.0',
            'x_bucket{le="1.0"} 100.0',
            'x_bucket{le="+Inf"} 100.0',
            'c_total{type="A"} 3.0',
            'c_total{type="B"} 4.0',
        ]
    )
    samples = parse(text)
    assert samples.total("c_total") == 7.0
    assert samples.quantile("x", 0.5) == pytest.approx(0.1)
    assert samples.quantile("x", 0.7) == pytest.approx(0.3)
    assert samples.quantile("x", 0.99) == pytest.approx(0.95)
    assert histogram_quantile(0.5, []) is None
