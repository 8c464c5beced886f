"""A warehouse + marketplace simulator with its own ground truth (pure: no I/O, no clock).

Keys are (location, SKU) pairs laid out on a grid: key ``i`` is at location ``i % L``
with SKU rank ``i // L``, and is picked with a Zipf-like weight ``1 / (i + 1) ** s``
(s ≈ 1.1), so a few SKUs take most of the traffic, at every location.

What it emits, in order:

* one ``SNAPSHOT`` per key first (the initial on-hand, basis ``ON_HAND``), never
  again; every later event is timed strictly after it (a stock event not after the
  snapshot's ``occurredAt`` is already in it, DESIGN.md "Reservations and snapshots");
  an ``ON_HAND`` snapshot absorbs no reservation, so Increff accepting orders
  changes nothing here;
* ``DELTA`` bursts on one key: GRN receipts scanned unit by unit, cycle-count
  adjustments (+1/-1 runs), ``DAMAGE``;
* ``ORDER_CREATED`` (an Increff create-outward-order body) only for available ATP;
* later (``pick_delay_s`` after the order, so its reservation is surely in place):
  ``CUSTOMER_CANCELLED`` (absolute ``cancelledQuantity``, full or partial) and/or picks,
  negative ``DELTA``s naming the ``orderCode``, which release that order's reservation.

On-hand never goes negative: a decrement is bounded by the ATP, so on-hand stays at or
above the open reservations, and a pick takes at most what its order holds open.

The ground truth mirrors DESIGN.md's rules: per key ``ATP = max(0, onHand - open)``,
where an order line's open quantity is ``max(0, quantity - cancelled - fulfilled)``
(safety stock 0). The caller passes the time (``now``) of every batch.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

Topic = Literal["stock", "orders"]
Fate = Literal["settle", "pick"]


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What to simulate. ``tag`` prefixes every eventId and orderCode (unique per run)."""

    keys: int = 1000
    locations: int = 4
    zipf_s: float = 1.1
    seed: int = 1
    tag: str = "sim"
    pick_delay_s: float = 3.0
    """Delay from an order to its picks or cancellation (lets its RESERVE land first)."""
    burst_mean: float = 8.0
    """Mean length of a GRN scanning burst."""
    w_grn: float = 0.25
    w_adjust: float = 0.15
    w_damage: float = 0.10
    w_order: float = 0.50
    cancel_share: float = 0.15
    partial_cancel_share: float = 0.10
    bulk_order_share: float = 0.03
    """Orders that take a key's whole ATP (stock-outs)."""
    order_rate: float | None = 20.0
    """New orders per second of ``now``; None: orders are one action among the others
    (``w_order``). A worker routes orders one at a time (each waits for Increff), so
    the order flow is paced on its own, apart from the stock events."""

    def __post_init__(self) -> None:
        if self.keys < 1 or self.locations < 1:
            raise ValueError("keys and locations must be >= 1")
        if self.locations > self.keys:
            raise ValueError("need at least one key per location")
        if self.zipf_s <= 0:
            raise ValueError("zipf_s must be > 0")
        if min(self.w_grn, self.w_adjust, self.w_damage, self.w_order) < 0:
            raise ValueError("action weights must be >= 0")
        if self.order_rate is not None and self.order_rate < 0:
            raise ValueError("order_rate must be >= 0")


@dataclass(frozen=True, slots=True)
class Message:
    """One record to produce: ``topic`` is the stock-events or the orders topic."""

    topic: Topic
    key: str
    value: dict[str, Any]


@dataclass(slots=True)
class _Line:
    """One order line at one key (an order names each SKU once)."""

    sku: str
    item_code: str
    quantity: int
    cancelled: int = 0
    fulfilled: int = 0

    @property
    def open(self) -> int:
        return max(0, self.quantity - self.cancelled - self.fulfilled)


@dataclass(slots=True)
class _Order:
    code: str
    location: str
    lines: list[_Line]


@dataclass(slots=True)
class GroundTruth:
    """On-hand and open reservations per key, updated as messages are emitted."""

    on_hand: dict[tuple[str, str], int] = field(default_factory=dict)
    holds: dict[tuple[str, str], dict[str, _Line]] = field(default_factory=dict)

    def reserved(self, key: tuple[str, str]) -> int:
        return sum(line.open for line in self.holds.get(key, {}).values())

    def atp(self, key: tuple[str, str]) -> int:
        return max(0, self.on_hand.get(key, 0) - self.reserved(key))

    def quantities(self) -> dict[tuple[str, str], int]:
        """Expected marketplace quantity of every key."""
        return {key: self.atp(key) for key in self.on_hand}


def zipf_weights(n: int, s: float) -> list[float]:
    return [1.0 / (rank + 1) ** s for rank in range(n)]


class Simulator:
    """Deterministic for a given config and sequence of ``now`` values."""

    def __init__(self, config: SimConfig, ready: Callable[[str], bool] | None = None) -> None:
        """``ready(orderCode)``: may this order be picked or cancelled yet? (The demo
        waits until Increff has it, so its reservation is surely in place.)"""
        self.config = config
        self._ready = ready
        self._t0: float | None = None
        self._after_snapshots: datetime | None = None
        self.rng = random.Random(config.seed)  # noqa: S311 - a simulation, not crypto
        n, nloc = config.keys, config.locations
        self.locations = [f"WH{i + 1:02d}" for i in range(nloc)]
        self.keys: list[tuple[str, str]] = [
            (self.locations[i % nloc], f"SKU-{i // nloc:05d}") for i in range(n)
        ]
        self.weights = zipf_weights(n, config.zipf_s)
        self._cum: list[float] = []
        total = 0.0
        for w in self.weights:
            total += w
            self._cum.append(total)
        self.truth = GroundTruth()
        self.orders: dict[str, _Order] = {}
        self.stats: Counter[str] = Counter()
        self._due: list[tuple[float, int, str, Fate]] = []
        self._seq = 0
        self._orders_made = 0
        self._started = False
        actions = [
            ("grn", config.w_grn),
            ("adjust", config.w_adjust),
            ("damage", config.w_damage),
            ("order", config.w_order if config.order_rate is None else 0.0),
        ]
        self._actions = [name for name, _ in actions]
        self._action_cum: list[float] = []
        acc = 0.0
        for _, w in actions:
            acc += w
            self._action_cum.append(acc)
        if acc <= 0:
            raise ValueError("at least one action weight must be > 0")

    # --- public --------------------------------------------------------------------

    def pick_index(self) -> int:
        """A key index drawn with Zipf-like popularity."""
        x = self.rng.random() * self._cum[-1]
        return min(bisect.bisect_right(self._cum, x), len(self._cum) - 1)

    def initial(self, now: datetime) -> list[Message]:
        """One SNAPSHOT per key: popular keys hold more stock."""
        if self._started:
            raise RuntimeError("initial() must be called once, first")
        self._started = True
        self._after_snapshots = now + timedelta(microseconds=1)
        out: list[Message] = []
        for i, key in enumerate(self.keys):
            quantity = self.rng.randint(0, 20) + round(300 * self.weights[i])
            self.truth.on_hand[key] = quantity
            out.append(self._stock(key, "SNAPSHOT", quantity, now, "RECONCILIATION"))
        return out

    def next_batch(self, now: datetime, target: int) -> list[Message]:
        """Due picks/cancellations, then new activity until at least ``target`` messages."""
        if self._after_snapshots is None:
            raise RuntimeError("call initial() first")
        # A clock that has not moved on (or stepped back) must not put events into the
        # snapshots: the rules would count them as already in on-hand.
        now = max(now, self._after_snapshots)
        out: list[Message] = []
        at = now.timestamp()
        if self._t0 is None:
            self._t0 = at
        waiting: list[tuple[float, int, str, Fate]] = []
        while self._due and self._due[0][0] <= at:
            item = heapq.heappop(self._due)
            if self._ready is not None and not self._ready(item[2]):
                waiting.append(item)
                continue
            out.extend(self._fate(item[2], item[3], now))
        for _, _, code, fate in waiting:
            self._schedule(code, fate, at + 0.5)
        rate = self.config.order_rate
        if rate is not None:
            while self._orders_made < rate * (at - self._t0):
                out.extend(self._order(self.pick_index(), now))
        while len(out) < target:
            out.extend(self._action(now))
        return out

    @property
    def open_orders(self) -> int:
        return len(self.orders)

    # --- actions -------------------------------------------------------------------

    def _action(self, now: datetime) -> list[Message]:
        x = self.rng.random() * self._action_cum[-1]
        action = self._actions[min(bisect.bisect_right(self._action_cum, x), 3)]
        i = self.pick_index()
        key = self.keys[i]
        if action == "grn":
            return self._grn(key, now)
        if action == "adjust":
            return self._adjust(key, now)
        if action == "damage":
            return self._damage(key, now)
        return self._order(i, now)

    def _grn(self, key: tuple[str, str], now: datetime) -> list[Message]:
        length = 1
        if self.config.burst_mean > 1.0:  # geometric, mean ``burst_mean``
            p = 1.0 / self.config.burst_mean
            draw = math.log(1.0 - self.rng.random()) / math.log(1.0 - p)
            length = min(40, 1 + int(draw))
        out = []
        for _ in range(length):
            out.append(self._delta(key, self.rng.randint(1, 3), now, "GRN"))
        self.stats["grn"] += length
        return out

    def _adjust(self, key: tuple[str, str], now: datetime) -> list[Message]:
        """A cycle count: a run of +1/-1 corrections (often netting out to nothing)."""
        out = []
        for step in range(self.rng.randint(2, 8)):
            up = step % 2 == 0 if self.rng.random() < 0.8 else self.rng.random() < 0.5
            if not up and self.truth.atp(key) == 0:
                continue
            out.append(self._delta(key, 1 if up else -1, now, "ADJUSTMENT"))
        self.stats["adjust"] += len(out)
        return out

    def _damage(self, key: tuple[str, str], now: datetime) -> list[Message]:
        out = []
        for _ in range(self.rng.randint(1, 3)):
            available = self.truth.atp(key)
            if available == 0:
                break
            out.append(self._delta(key, -min(available, self.rng.randint(1, 2)), now, "DAMAGE"))
        self.stats["damage"] += len(out)
        return out

    def _order(self, index: int, now: datetime) -> list[Message]:
        nloc = self.config.locations
        loc = index % nloc
        wanted = 1 + (self.rng.random() < 0.3) + (self.rng.random() < 0.1)
        chosen = [index]
        for _ in range(6 * wanted):
            if len(chosen) >= wanted:
                break
            j = (self.pick_index() // nloc) * nloc + loc
            if j < len(self.keys) and j not in chosen:
                chosen.append(j)
        bulk = self.rng.random() < self.config.bulk_order_share
        self._orders_made += 1
        code = f"{self.config.tag}-O{self._orders_made:07d}"
        lines: list[_Line] = []
        for j in chosen:
            key = self.keys[j]
            available = self.truth.atp(key)
            if available == 0:
                continue
            quantity = available if bulk else min(available, self.rng.randint(1, 3))
            lines.append(_Line(key[1], f"{code}-{len(lines) + 1}", quantity))
        if not lines:
            return []
        location = self.locations[loc]
        order = _Order(code, location, lines)
        self.orders[code] = order
        for line in lines:
            self.truth.holds.setdefault((location, line.sku), {})[code] = line
        self.stats["orders"] += 1
        self._schedule(code, "settle", now.timestamp() + self.config.pick_delay_s)
        payload = {
            "orderCode": code,
            "locationCode": location,
            "orderTime": now.isoformat(),
            "orderType": "SO",
            "paymentMethod": "PREPAID",
            "onHold": False,
            "orderItems": [
                {
                    "channelSkuCode": line.sku,
                    "orderItemCode": line.item_code,
                    "quantity": line.quantity,
                    "sellingPricePerUnit": 499.0,
                }
                for line in lines
            ],
        }
        return [self._order_event(code, "ORDER_CREATED", payload, now)]

    def _fate(self, code: str, fate: Fate, now: datetime) -> list[Message]:
        order = self.orders.get(code)
        if order is None:
            return []
        if fate == "pick":
            return self._pick(order, now)
        x = self.rng.random()
        if x < self.config.cancel_share:
            return self._cancel(order, now, partial=False)
        if x < self.config.cancel_share + self.config.partial_cancel_share:
            out = self._cancel(order, now, partial=True)
            if code in self.orders:
                self._schedule(code, "pick", now.timestamp() + self.config.pick_delay_s)
            return out
        return self._pick(order, now)

    def _cancel(self, order: _Order, now: datetime, *, partial: bool) -> list[Message]:
        items = []
        for line in order.lines:
            if line.open == 0:
                continue
            if partial:
                if line.open < 2:
                    continue
                line.cancelled += self.rng.randint(1, line.open - 1)
            else:
                line.cancelled = line.quantity - line.fulfilled
            items.append(
                {
                    "channelSkuCode": line.sku,
                    "orderItemCode": line.item_code,
                    "cancelledQuantity": line.cancelled,
                }
            )
        if not items:
            return []
        self.stats["cancels"] += 1
        self._forget_closed(order)
        payload = {"orderCode": order.code, "locationCode": order.location, "orderItems": items}
        return [self._order_event(order.code, "CUSTOMER_CANCELLED", payload, now)]

    def _pick(self, order: _Order, now: datetime) -> list[Message]:
        out = []
        for line in order.lines:
            qty = line.open
            if qty == 0:
                continue
            key = (order.location, line.sku)
            line.fulfilled += qty
            out.append(self._delta(key, -qty, now, "PICK", order_code=order.code))
        self.stats["picks"] += len(out)
        self._forget_closed(order)
        return out

    # --- helpers -------------------------------------------------------------------

    def _forget_closed(self, order: _Order) -> None:
        for line in order.lines:
            if line.open == 0:
                held = self.truth.holds.get((order.location, line.sku))
                if held is not None:
                    held.pop(order.code, None)
        if all(line.open == 0 for line in order.lines):
            del self.orders[order.code]

    def _schedule(self, code: str, fate: Fate, at: float) -> None:
        self._seq += 1
        heapq.heappush(self._due, (at, self._seq, code, fate))

    def _next_id(self) -> str:
        self._seq += 1
        return f"{self.config.tag}-E{self._seq:09d}"

    def _delta(
        self,
        key: tuple[str, str],
        quantity: int,
        now: datetime,
        reason: str,
        *,
        order_code: str | None = None,
    ) -> Message:
        on_hand = self.truth.on_hand[key] + quantity
        if on_hand < 0:  # the callers bound decrements; this guards the invariant
            raise AssertionError(f"on-hand of {key} would go negative")
        self.truth.on_hand[key] = on_hand
        return self._stock(key, "DELTA", quantity, now, reason, order_code)

    def _stock(
        self,
        key: tuple[str, str],
        kind: str,
        quantity: int,
        now: datetime,
        reason: str,
        order_code: str | None = None,
    ) -> Message:
        value: dict[str, Any] = {
            "eventId": self._next_id(),
            "type": kind,
            "locationCode": key[0],
            "channelSkuCode": key[1],
            "quantity": quantity,
            "occurredAt": now.isoformat(),
            "reason": reason,
        }
        if order_code is not None:
            value["orderCode"] = order_code
        if kind == "SNAPSHOT":
            value["basis"] = "ON_HAND"  # a physical count: it still holds unpicked orders
        self.stats["stock_events"] += 1
        return Message("stock", f"{key[0]}:{key[1]}", value)

    def _order_event(self, code: str, kind: str, payload: dict[str, Any], now: datetime) -> Message:
        value = {
            "eventId": self._next_id(),
            "type": kind,
            "occurredAt": now.isoformat(),
            "payload": payload,
        }
        self.stats["order_events"] += 1
        return Message("orders", code, value)
